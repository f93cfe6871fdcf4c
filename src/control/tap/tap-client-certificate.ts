// The control plane's own client certificate, for tapping proxies over mutual TLS (their tap
// listener, src/proxy/admin/tap-listener.ts, lets in only the control plane's identity): the
// control plane runs the certificate authority, so it issues itself a leaf for its SPIFFE ID
// (src/core/spiffe.ts controlPlaneId) for a fresh ECDSA P-256 key that never leaves the process
// (no CSR: CertificateAuthority.issueToKey). Renewed, with a new key, at 70% of the lifetime left
// when it came, as proxies renew theirs; a failure keeps the current leaf and retries in a minute.
//
// `tlsOptions()` is what a tap connection needs: the key and chain to present, and the trust
// anchors to verify the proxy with (read from the authority at each call, so a proxy renewed under
// a new anchor during a rotation is trusted as soon as the authority publishes it). Only new
// connections see a renewed leaf; open taps keep theirs.
import { generateKeyPairSync, X509Certificate, type KeyObject } from 'node:crypto';
import tls from 'node:tls';
import { systemTimers, type TimerHandle, type Timers } from '../../core/clock.ts';
import { silentLogger, type Logger } from '../../core/log.ts';
import type { IssuedCertificate } from '../identity/ca.ts';

/** What issues the leaf: the control plane's CertificateAuthority. */
export interface LeafIssuer {
  issueToKey(publicKey: KeyObject, identity: string): IssuedCertificate;
  readonly trustAnchorsPem: string;
}

export interface TapClientCertificateOptions {
  readonly issuer: LeafIssuer;
  /** The SPIFFE ID to present. */
  readonly id: string;
  readonly log?: Logger;
  /** Wall-clock ms since the epoch (certificates' times); default Date.now. */
  readonly now?: () => number;
  readonly timers?: Timers;
}

/** The TLS settings of one tap connection to a proxy. */
export interface TapClientTls {
  /** Our key, chain and the trust anchors, as one context. */
  readonly secureContext: tls.SecureContext;
  /** The SPIFFE ID we present. */
  readonly id: string;
}

const RETRY_MS = 60_000;
/** The share of a leaf's remaining lifetime after which it is renewed. */
const RENEW_AT = 0.7;

interface Leaf {
  readonly keyPem: string;
  readonly chainPem: string;
  readonly notAfterMs: number;
}

export class TapClientCertificate {
  readonly id: string;
  readonly #issuer: LeafIssuer;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #timers: Timers;
  #leaf: Leaf | null = null;
  #context: { leaf: Leaf; anchorsPem: string; tls: TapClientTls } | null = null;
  #timer: TimerHandle | null = null;
  #closed = false;
  /** Leaves issued to the control plane so far. */
  issued = 0;

  constructor(options: TapClientCertificateOptions) {
    this.id = options.id;
    this.#issuer = options.issuer;
    this.#log = (options.log ?? silentLogger).child({ component: 'tap-client-certificate' });
    this.#now = options.now ?? Date.now;
    this.#timers = options.timers ?? systemTimers;
    this.#renew();
  }

  /** The settings of a new tap connection; null while there is no valid leaf. */
  tlsOptions(): TapClientTls | null {
    const leaf = this.#leaf;
    if (leaf === null || leaf.notAfterMs <= this.#now()) return null;
    const anchorsPem = this.#issuer.trustAnchorsPem;
    const cached = this.#context;
    if (cached !== null && cached.leaf === leaf && cached.anchorsPem === anchorsPem) return cached.tls;
    const secureContext = tls.createSecureContext({
      key: leaf.keyPem,
      cert: leaf.chainPem,
      ca: anchorsPem,
      minVersion: 'TLSv1.3',
    });
    this.#context = { leaf, anchorsPem, tls: { secureContext, id: this.id } };
    return this.#context.tls;
  }

  /** The current leaf's notAfter (ms since the epoch), or null. */
  get expiresAtMs(): number | null {
    return this.#leaf?.notAfterMs ?? null;
  }

  close(): void {
    this.#closed = true;
    this.#timer?.cancel();
    this.#timer = null;
  }

  #renew(): void {
    if (this.#closed) return;
    let next: number;
    try {
      this.#leaf = this.#issue();
      this.issued++;
      const now = this.#now();
      next = (this.#leaf.notAfterMs - now) * RENEW_AT;
      this.#log.debug('issued the control plane its tap client certificate', {
        id: this.id,
        notAfter: new Date(this.#leaf.notAfterMs).toISOString(),
      });
    } catch (error) {
      this.#log.error('cannot issue the control plane its tap client certificate; retrying in a minute', {
        id: this.id,
        error,
      });
      next = RETRY_MS;
    }
    this.#timer = this.#timers.setTimeout(() => this.#renew(), next);
  }

  #issue(): Leaf {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const issued = this.#issuer.issueToKey(publicKey, this.id);
    const leaf = new X509Certificate(issued.leafDer);
    const chain = [leaf, ...issued.intermediatesDer.map((der) => new X509Certificate(der))];
    return {
      keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
      chainPem: chain.map((c) => c.toString()).join(''),
      notAfterMs: leaf.validToDate.getTime(),
    };
  }
}
