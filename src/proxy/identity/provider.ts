// The proxy's own identity, as the mesh transport (src/proxy/mesh/) uses it: the current key and
// certificate chain for TLS, the trust anchors peers' chains must lead to, and a signal when they
// change (renewal, a new trust anchor). Two sources implement it: the control plane's Identity API
// (identity-client.ts: key made in memory, renewed at ~70% of the lifetime) and a folder of PEM
// files (file.ts: tests, benchmarks, operators with their own PKI).
//
// A connection takes the credentials current when it starts and keeps them: rotation never
// touches an established connection.
import type tls from 'node:tls';

export interface CertifiedKey {
  /** PKCS#8 PEM of the private key. */
  readonly keyPem: string;
  /** PEM certificates, leaf first, then its issuers up to (not including) a trust anchor. */
  readonly chainPem: string;
  /** PEM trust anchors (one or more) that peers' chains must lead to. */
  readonly trustAnchorsPem: string;
  /** The leaf's notBefore and notAfter, in ms since the Unix epoch. */
  readonly notBeforeMs: number;
  readonly expiresAtMs: number;
}

/**
 * The options of a TLS server that presents `key` and admits only TLS 1.3 clients whose
 * certificates lead to its trust anchors (the mesh's inbound listener and the mTLS tap listener).
 */
export function mutualTlsServerOptions(key: CertifiedKey, handshakeTimeoutMs: number): tls.TlsOptions {
  return {
    key: key.keyPem,
    cert: key.chainPem,
    ca: key.trustAnchorsPem,
    minVersion: 'TLSv1.3',
    requestCert: true,
    rejectUnauthorized: true,
    handshakeTimeout: handshakeTimeoutMs,
  };
}

export interface WorkloadIdentity {
  /** The SPIFFE ID this proxy presents ("spiffe://cluster.local/ns/default/sa/web"). */
  readonly id: string;
  /** The credentials to use for a new connection, or null until the first certificate is in. */
  current(): CertifiedKey | null;
  /** Resolves when current() is first non-null; rejects only when closed before that. */
  ready(): Promise<void>;
  /** Called with the new credentials after each change; returns a function that unsubscribes. */
  onChange(listener: (key: CertifiedKey) => void): () => void;
  /** Stops renewing. */
  close(): void;
}
