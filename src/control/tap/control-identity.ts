// The control plane's own mTLS identity, for tapping proxies on Kubernetes: proxies accept a tap
// from a non-loopback peer only over mutual TLS on their admin listener, from this identity
// (src/proxy/admin/admin-tls.ts, docs/security.md "Who may tap a proxy"). The control plane makes
// a P-256 key in memory, has its own authority sign a leaf for
// spiffe://TRUST-DOMAIN/ns/NAMESPACE/sa/trellis-control, and renews it at 70% of its lifetime (a
// failed renewal is retried in a minute; the old leaf serves until it expires).
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { silentLogger, type Logger } from '../../core/log.ts';
import { toPem } from '../identity/pem.ts';
import type { IssuedCertificate } from '../identity/ca.ts';
import type { TapCredentials } from './proxy-tap.ts';

/** The service account of the control plane (deploy manifests: src/cli/install-manifests.ts). */
export const CONTROL_SERVICE_ACCOUNT = 'trellis-control';
const RETRY_MS = 60_000;

export interface ControlIdentityOptions {
  readonly identity: string;
  /** Signs a CSR for `identity` (IdentityComponent.issueOwn). */
  readonly issue: (csrDer: Uint8Array, identity: string) => IssuedCertificate;
  /** A DER PKCS#10 request for the key naming the URI (src/proxy/identity/csr.ts createCsr). */
  readonly createCsr: (keyPair: { privateKey: KeyObject; publicKey: KeyObject }, uri: string) => Buffer;
  readonly now?: () => number;
  readonly log?: Logger;
}

export class ControlIdentity {
  private readonly opts: ControlIdentityOptions;
  private current: TapCredentials | null = null;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(opts: ControlIdentityOptions) {
    this.opts = opts;
    this.renew();
  }

  /** The credentials to present, or null when none could be issued yet. */
  credentials(): TapCredentials | null {
    return this.current;
  }

  private renew(): void {
    if (this.closed) return;
    const now = (this.opts.now ?? Date.now)();
    let next = RETRY_MS;
    try {
      const keyPair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const issued = this.opts.issue(this.opts.createCsr(keyPair, this.opts.identity), this.opts.identity);
      this.current = {
        keyPem: keyPair.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
        chainPem: [issued.leafDer, ...issued.intermediatesDer].map((d) => toPem(d)).join(''),
        trustAnchorsPem: issued.trustAnchorsPem,
      };
      next = Math.max(1000, (issued.validUntilMs - now) * 0.7);
    } catch (error) {
      (this.opts.log ?? silentLogger).warn('cannot issue the control plane its tap identity; retrying', {
        error,
      });
    }
    this.timer = setTimeout(() => this.renew(), Math.min(next, 2 ** 31 - 1));
    this.timer.unref();
  }

  close(): void {
    this.closed = true;
    if (this.timer !== null) clearTimeout(this.timer);
  }
}
