// Original file: src/api/identity.proto

export interface CertifyRequest {
  /**
   * The SPIFFE ID asked for: "spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>".
   */
  identity?: string;
  /**
   * The workload's token: issued by `trellis run` on one machine; an audience-bound
   * ServiceAccount token on Kubernetes.
   */
  token?: Buffer | Uint8Array | string;
  /**
   * A DER-encoded PKCS#10 request signed with the proxy's key; its only SAN is the URI `identity`.
   */
  certificateSigningRequest?: Buffer | Uint8Array | string;
}

export interface CertifyRequest__Output {
  /**
   * The SPIFFE ID asked for: "spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>".
   */
  identity: string;
  /**
   * The workload's token: issued by `trellis run` on one machine; an audience-bound
   * ServiceAccount token on Kubernetes.
   */
  token: Buffer;
  /**
   * A DER-encoded PKCS#10 request signed with the proxy's key; its only SAN is the URI `identity`.
   */
  certificateSigningRequest: Buffer;
}
