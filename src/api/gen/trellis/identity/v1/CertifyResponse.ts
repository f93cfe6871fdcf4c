// Original file: src/api/identity.proto

import type { Long } from '@grpc/proto-loader';

export interface CertifyResponse {
  /**
   * DER X.509 leaf certificate for the CSR's key, URI SAN `identity`.
   */
  leafCertificate?: Buffer | Uint8Array | string;
  /**
   * DER certificates from the leaf's issuer up to (not including) a trust anchor.
   */
  intermediateCertificates?: (Buffer | Uint8Array | string)[];
  /**
   * The leaf's notAfter, in milliseconds since the Unix epoch.
   */
  validUntilMs?: number | string | Long;
  /**
   * Every trust anchor proxies must accept, PEM, concatenated (more than one during a rotation).
   */
  trustAnchorsPem?: string;
}

export interface CertifyResponse__Output {
  /**
   * DER X.509 leaf certificate for the CSR's key, URI SAN `identity`.
   */
  leafCertificate: Buffer;
  /**
   * DER certificates from the leaf's issuer up to (not including) a trust anchor.
   */
  intermediateCertificates: Buffer[];
  /**
   * The leaf's notAfter, in milliseconds since the Unix epoch.
   */
  validUntilMs: number;
  /**
   * Every trust anchor proxies must accept, PEM, concatenated (more than one during a rotation).
   */
  trustAnchorsPem: string;
}
