// The proxy's own mTLS credentials as the mesh transport uses them: the WorkloadIdentity (file
// or Identity API) plus what is derived from each CertifiedKey once and then reused: the client
// tls.SecureContext (outbound) and whatever the inbound side builds per key (its tls.Server).
// Building a SecureContext parses PEM and keys (~1 ms); a connection only looks it up. When the
// identity changes (renewal, a new trust anchor) new connections get the new key's context;
// established connections keep the one they were made with, and nothing is dropped.
import tls from 'node:tls';
import type { CertifiedKey, WorkloadIdentity } from '../identity/provider.ts';

export class MeshCredentials {
  readonly identity: WorkloadIdentity;
  private readonly clientContexts = new WeakMap<CertifiedKey, tls.SecureContext>();
  private readonly unsubscribe: () => void;
  private readonly changeListeners = new Set<(key: CertifiedKey) => void>();

  constructor(identity: WorkloadIdentity) {
    this.identity = identity;
    this.unsubscribe = identity.onChange((key) => {
      for (const l of this.changeListeners) l(key);
    });
  }

  /** The SPIFFE ID this proxy presents. */
  get id(): string {
    return this.identity.id;
  }

  /** The credentials for a new connection, or null until the first certificate is in. */
  current(): CertifiedKey | null {
    return this.identity.current();
  }

  /** Called with each new CertifiedKey; returns a function that unsubscribes. */
  onChange(listener: (key: CertifiedKey) => void): () => void {
    this.changeListeners.add(listener);
    return () => this.changeListeners.delete(listener);
  }

  /** The outbound (client) context of a key: our certificate, the trust anchors as the only CAs. */
  clientContext(key: CertifiedKey): tls.SecureContext {
    let ctx = this.clientContexts.get(key);
    if (ctx === undefined) {
      ctx = tls.createSecureContext({
        key: key.keyPem,
        cert: key.chainPem,
        ca: key.trustAnchorsPem,
        minVersion: 'TLSv1.3',
      });
      this.clientContexts.set(key, ctx);
    }
    return ctx;
  }

  /**
   * Resolves with the current credentials as soon as there are some, or with null when none came
   * within `timeoutMs` (the caller then fails with `no-identity`).
   */
  whenReady(timeoutMs: number): Promise<CertifiedKey | null> {
    const now = this.current();
    if (now !== null) return Promise.resolve(now);
    return new Promise((resolve) => {
      let done = false;
      const finish = (): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve(this.current());
      };
      // No connect timeout configured (0): wait for as long as the identity takes.
      const timer = timeoutMs > 0 ? setTimeout(finish, timeoutMs) : undefined;
      this.identity.ready().then(finish, finish);
    });
  }

  close(): void {
    this.unsubscribe();
    this.changeListeners.clear();
  }
}
