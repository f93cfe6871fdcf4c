// The certificate authority of the control plane: trust anchor(s) -> issuer -> workload leaves.
//
// It lives in a folder of PEM files (files.ts), created on first start or supplied by the
// operator, or only in memory. It issues leaves (`issue`, synchronous and fast: csr.ts + leaf.ts),
// renews its own issuer once 2/3 of the issuer's lifetime has passed (new key, same anchor), and
// rotates its trust anchor without downtime in three timed steps (`startRotation`):
//
//   1. anchor-added     a new anchor joins the bundle; proxies learn it at their next renewal
//   2. issuer-replaced  one leaf lifetime later (every proxy trusts both anchors), the issuer is
//                       replaced by one the new anchor signs
//   3. idle             one more leaf lifetime later (every leaf of the old issuer has expired),
//                       the old anchor leaves the bundle
//
// `tick()` does whatever is due and says when to call it next; the identity component calls it on
// a timer (component.ts), tests call it with a fake clock. When the operator supplied the issuer
// (no anchor key in the folder) the authority cannot renew it: it warns as expiry nears.
import type { KeyObject } from 'node:crypto';
import { join } from 'node:path';
import { silentLogger, type Logger } from '../../core/log.ts';
import {
  CLOCK_SKEW_MS,
  DEFAULT_ANCHOR_LIFETIME_MS,
  DEFAULT_ISSUER_LIFETIME_MS,
  DEFAULT_LEAF_LIFETIME_MS,
  loadCaKeyPair,
  makeAnchor,
  makeIssuer,
  type CaCert,
  type CaKeyPair,
} from './ca-certs.ts';
import { checkCsr, CsrError, type CheckedCsr } from './csr.ts';
import { IdentityError } from './errors.ts';
import { FILES, removeFiles, writePair } from './files.ts';
import { writeAtomically } from '../discovery/state-file-io.ts';
import { leafTemplate, signLeaf, type LeafTemplate } from './leaf.ts';
import { readAuthorityFolder, signedBy, type RotationState } from './ca-load.ts';

export type RotationPhase = 'idle' | RotationState['phase'];

export interface CertificateAuthorityOptions {
  /** The folder of the authority's files; null: in memory only (gone at exit). */
  readonly dir: string | null;
  readonly trustDomain: string;
  readonly leafLifetimeMs?: number;
  readonly issuerLifetimeMs?: number;
  readonly anchorLifetimeMs?: number;
  /** Where the current bundle is published on every change (`<state>/trust-anchor.pem`). */
  readonly bundlePath?: string;
  /** Wall-clock time in ms since the epoch (injectable for tests). */
  readonly now?: () => number;
  readonly log?: Logger;
}

export interface IssuedCertificate {
  readonly leafDer: Buffer;
  readonly intermediatesDer: Buffer[];
  /** The leaf's notAfter (whole seconds), ms since the epoch. */
  readonly validUntilMs: number;
  readonly trustAnchorsPem: string;
}

export interface AuthorityStatus {
  readonly trustDomain: string;
  readonly anchors: { subject: string; notAfter: string; fingerprint: string; signsIssuer: boolean }[];
  readonly issuer: { subject: string; notAfter: string; renewsAt: string | null };
  /** Whether the authority holds an anchor key (generated) or the operator supplied the issuer. */
  readonly managed: boolean;
  readonly rotation: { phase: RotationPhase; nextStepAt: string | null };
  readonly leafLifetimeMs: number;
  readonly issued: number;
}

/** Thrown by startRotation when it cannot start (one is running, or no anchor key is held). */
export class RotationError extends Error {
  readonly busy: boolean;
  constructor(message: string, busy: boolean) {
    super(message);
    this.name = 'RotationError';
    this.busy = busy;
  }
}

const HOUR_MS = 3600_000;

export class CertificateAuthority {
  readonly trustDomain: string;
  readonly leafLifetimeMs: number;
  readonly issuerLifetimeMs: number;
  readonly anchorLifetimeMs: number;
  issued = 0;
  readonly #dir: string | null;
  readonly #bundlePath: string | null;
  readonly #now: () => number;
  readonly #log: Logger;
  #anchors: CaCert[] = [];
  #anchor: CaKeyPair | null = null;
  #next: CaKeyPair | null = null;
  #issuer!: CaKeyPair;
  #template!: LeafTemplate;
  #rotation: RotationState | null = null;
  #bundlePem = '';
  /** Serializes the steps that change the authority (tick, startRotation). */
  #busy: Promise<unknown> = Promise.resolve();

  private constructor(options: CertificateAuthorityOptions) {
    this.trustDomain = options.trustDomain;
    this.leafLifetimeMs = options.leafLifetimeMs ?? DEFAULT_LEAF_LIFETIME_MS;
    this.issuerLifetimeMs = options.issuerLifetimeMs ?? DEFAULT_ISSUER_LIFETIME_MS;
    this.anchorLifetimeMs = options.anchorLifetimeMs ?? DEFAULT_ANCHOR_LIFETIME_MS;
    this.#dir = options.dir;
    this.#bundlePath = options.bundlePath ?? null;
    this.#now = options.now ?? Date.now;
    this.#log = (options.log ?? silentLogger).child({ component: 'identity-ca' });
  }

  /** Loads the authority from its folder, generating what is missing (see files.ts). */
  static async open(options: CertificateAuthorityOptions): Promise<CertificateAuthority> {
    const ca = new CertificateAuthority(options);
    const now = ca.#now();
    const found = options.dir === null ? null : await readAuthorityFolder(options.dir);
    if (options.dir === null) {
      ca.#log.warn(
        'no identity folder: the trust anchor and issuer live in memory only and change at every start',
      );
    }
    if (found === null || (found.issuer === null && found.anchor === null && found.anchors.length === 0)) {
      ca.#anchor = loadCaKeyPair(await makeAnchor(ca.trustDomain, ca.anchorLifetimeMs, now), 'new anchor');
      ca.#anchors = [ca.#anchor.cert];
      ca.#log.info('generated a new trust anchor', { fingerprint: ca.#anchor.cert.fingerprint });
      if (options.dir !== null)
        await writePair(options.dir, FILES.anchor, FILES.anchorKey, pairOf(ca.#anchor));
    } else {
      ca.#anchors = found.anchors;
      ca.#anchor = found.anchor;
      ca.#next = found.next;
      ca.#rotation = found.rotation;
    }
    if (found?.issuer) ca.#useIssuer(found.issuer);
    else await ca.#renewIssuer(now);
    await ca.#publishBundle();
    return ca;
  }

  /** The trust bundle, PEM (several anchors during a rotation). */
  get trustAnchorsPem(): string {
    return this.#bundlePem;
  }

  get rotationPhase(): RotationPhase {
    return this.#rotation?.phase ?? 'idle';
  }

  get issuerCert(): CaCert {
    return this.#issuer.cert;
  }

  get anchorCerts(): readonly CaCert[] {
    return this.#anchors;
  }

  /**
   * A leaf for the CSR's key naming `identity` (already authorized by the caller). Throws
   * IdentityError: INVALID_ARGUMENT for a bad CSR, UNAVAILABLE when the issuer has expired.
   */
  issue(csrDer: Uint8Array, identity: string): IssuedCertificate {
    this.#checkIssuer();
    let csr;
    try {
      csr = checkCsr(csrDer, identity);
    } catch (error) {
      if (error instanceof CsrError) throw new IdentityError('INVALID_ARGUMENT', error.message);
      throw error;
    }
    return this.#signLeaf(csr, identity);
  }

  /**
   * A leaf naming `identity` for a key of this process (an ECDSA P-256 public key): the control
   * plane's own tap client certificate (src/control/tap/tap-client-certificate.ts), which has no
   * CSR to check. Throws IdentityError UNAVAILABLE when the issuer has expired.
   */
  issueToKey(publicKey: KeyObject, identity: string): IssuedCertificate {
    this.#checkIssuer();
    const jwk = publicKey.export({ format: 'jwk' });
    if (jwk.crv !== 'P-256' || jwk.x === undefined || jwk.y === undefined) {
      throw new IdentityError('INVALID_ARGUMENT', 'the key must be an ECDSA P-256 public key');
    }
    // The uncompressed point, as a CSR carries it (the subject key identifier is its hash).
    const point = Buffer.concat([
      Buffer.from([4]),
      Buffer.from(jwk.x, 'base64url'),
      Buffer.from(jwk.y, 'base64url'),
    ]);
    return this.#signLeaf(
      { spki: publicKey.export({ type: 'spki', format: 'der' }), publicKey: point },
      identity,
    );
  }

  #checkIssuer(): void {
    const issuer = this.#issuer.cert;
    if (this.#now() >= issuer.notAfterMs) {
      throw new IdentityError(
        'UNAVAILABLE',
        `the issuer certificate expired at ${new Date(issuer.notAfterMs).toISOString()}`,
      );
    }
  }

  #signLeaf(csr: CheckedCsr, identity: string): IssuedCertificate {
    const now = this.#now();
    const issuer = this.#issuer.cert;
    // Certificate times are whole seconds: round up, so a leaf lives at least its lifetime
    // (the issuer's notAfter is whole seconds already).
    const notAfterMs = Math.min(Math.ceil((now + this.leafLifetimeMs) / 1000) * 1000, issuer.notAfterMs);
    const leafDer = signLeaf(this.#template, {
      spki: csr.spki,
      publicKey: csr.publicKey,
      uri: identity,
      notBeforeMs: Math.max(now - CLOCK_SKEW_MS, issuer.notBeforeMs),
      notAfterMs,
    });
    this.issued++;
    return {
      leafDer,
      intermediatesDer: [issuer.der],
      validUntilMs: notAfterMs,
      trustAnchorsPem: this.#bundlePem,
    };
  }

  /** Does whatever is due (issuer renewal, a rotation step); resolves with when to call again. */
  tick(): Promise<number> {
    return this.#exclusive(async () => {
      let now = this.#now();
      if (this.#rotation !== null && now >= this.#rotation.nextStepAtMs) {
        await this.#advanceRotation(now);
        now = this.#now();
      }
      let next = now + HOUR_MS;
      if (this.#rotation !== null) next = Math.min(next, this.#rotation.nextStepAtMs);
      const issuer = this.#issuer.cert;
      const renewAt = issuer.notBeforeMs + ((issuer.notAfterMs - issuer.notBeforeMs) * 2) / 3;
      if (now >= renewAt) {
        if (this.#anchor === null) {
          this.#log.warn(
            'the issuer certificate is near expiry and its anchor key is not here: replace issuer.pem and issuer.key.pem',
            {
              notAfter: new Date(issuer.notAfterMs).toISOString(),
            },
          );
        } else if (
          Math.min(now + this.issuerLifetimeMs, this.#anchor.cert.notAfterMs) >
          issuer.notAfterMs + 1000
        ) {
          await this.#renewIssuer(now);
          const renewed = this.#issuer.cert;
          next = Math.min(next, renewed.notBeforeMs + ((renewed.notAfterMs - renewed.notBeforeMs) * 2) / 3);
        } else {
          this.#log.warn(
            'the trust anchor expires before a renewed issuer would: rotate it (trellis identity rotate)',
            {
              anchorNotAfter: new Date(this.#anchor.cert.notAfterMs).toISOString(),
            },
          );
        }
      } else {
        next = Math.min(next, renewAt);
      }
      return next;
    });
  }

  /** Starts an anchor rotation (step 1 now); RotationError when one runs or no anchor key is held. */
  startRotation(): Promise<RotationPhase> {
    return this.#exclusive(async () => {
      if (this.#rotation !== null) {
        throw new RotationError(
          `an anchor rotation is already running (phase ${this.#rotation.phase})`,
          true,
        );
      }
      if (this.#anchor === null) {
        throw new RotationError(
          'the anchor key is not in the identity folder (operator-supplied issuer): rotate by replacing the files',
          false,
        );
      }
      const now = this.#now();
      this.#next = loadCaKeyPair(
        await makeAnchor(this.trustDomain, this.anchorLifetimeMs, now),
        'new anchor',
      );
      if (this.#dir !== null)
        await writePair(this.#dir, FILES.nextAnchor, FILES.nextAnchorKey, pairOf(this.#next));
      this.#anchors = [...this.#anchors, this.#next.cert];
      await this.#publishBundle();
      await this.#saveRotation({
        phase: 'anchor-added',
        startedAtMs: now,
        nextStepAtMs: now + this.leafLifetimeMs,
        retiring: this.#anchor.cert.fingerprint,
      });
      this.#log.info('anchor rotation: new anchor added to the bundle', {
        fingerprint: this.#next.cert.fingerprint,
      });
      return this.rotationPhase;
    });
  }

  status(): AuthorityStatus {
    const issuer = this.#issuer.cert;
    const iso = (ms: number) => new Date(ms).toISOString();
    return {
      trustDomain: this.trustDomain,
      anchors: this.#anchors.map((a) => ({
        subject: a.subject,
        notAfter: iso(a.notAfterMs),
        fingerprint: a.fingerprint,
        signsIssuer: signedBy(issuer, a),
      })),
      issuer: {
        subject: issuer.subject,
        notAfter: iso(issuer.notAfterMs),
        renewsAt:
          this.#anchor === null
            ? null
            : iso(issuer.notBeforeMs + ((issuer.notAfterMs - issuer.notBeforeMs) * 2) / 3),
      },
      managed: this.#anchor !== null,
      rotation: {
        phase: this.rotationPhase,
        nextStepAt: this.#rotation === null ? null : iso(this.#rotation.nextStepAtMs),
      },
      leafLifetimeMs: this.leafLifetimeMs,
      issued: this.issued,
    };
  }

  async #advanceRotation(now: number): Promise<void> {
    const rotation = this.#rotation!;
    if (rotation.phase === 'anchor-added') {
      const next = this.#next!;
      await this.#renewIssuer(now, next);
      this.#anchor = next;
      if (this.#dir !== null) await writePair(this.#dir, FILES.anchor, FILES.anchorKey, pairOf(next));
      await this.#saveRotation({
        ...rotation,
        phase: 'issuer-replaced',
        nextStepAtMs: now + this.leafLifetimeMs,
      });
      if (this.#dir !== null) await removeFiles(this.#dir, FILES.nextAnchor, FILES.nextAnchorKey);
      this.#next = null;
      this.#log.info('anchor rotation: issuer replaced by one the new anchor signs');
    } else {
      this.#anchors = this.#anchors.filter((a) => a.fingerprint !== rotation.retiring);
      await this.#publishBundle();
      await this.#saveRotation(null);
      this.#log.info('anchor rotation: done, old anchor removed from the bundle', {
        removed: rotation.retiring,
      });
    }
  }

  async #renewIssuer(now: number, anchor: CaKeyPair | null = this.#anchor): Promise<void> {
    if (anchor === null) throw new Error('cannot make an issuer without the anchor key');
    const pair = await makeIssuer(anchor, this.trustDomain, this.issuerLifetimeMs, now);
    if (this.#dir !== null) await writePair(this.#dir, FILES.issuer, FILES.issuerKey, pair);
    this.#useIssuer(loadCaKeyPair(pair, 'new issuer'));
    this.#log.info('new issuer certificate', {
      notAfter: new Date(this.#issuer.cert.notAfterMs).toISOString(),
    });
  }

  #useIssuer(issuer: CaKeyPair): void {
    this.#issuer = issuer;
    this.#template = leafTemplate(issuer.key, issuer.cert.subjectDer, issuer.cert.keyId);
  }

  async #publishBundle(): Promise<void> {
    this.#bundlePem = this.#anchors.map((a) => a.pem).join('');
    if (this.#dir !== null) await writeAtomically(join(this.#dir, FILES.bundle), this.#bundlePem);
    if (this.#bundlePath !== null) await writeAtomically(this.#bundlePath, this.#bundlePem);
  }

  async #saveRotation(state: RotationState | null): Promise<void> {
    this.#rotation = state;
    if (this.#dir === null) return;
    if (state === null) await removeFiles(this.#dir, FILES.rotation);
    else await writeAtomically(join(this.#dir, FILES.rotation), JSON.stringify(state, null, 2) + '\n');
  }

  #exclusive<T>(step: () => Promise<T>): Promise<T> {
    const run = this.#busy.then(step, step);
    this.#busy = run.catch(() => {});
    return run;
  }
}

function pairOf(pair: CaKeyPair): { certPem: string; keyPem: string } {
  return { certPem: pair.cert.pem, keyPem: pair.keyPem };
}
