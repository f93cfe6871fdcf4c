// Original file: src/api/policy.proto

export interface RateLimitOverride {
  requestsPerSecond?: number;
  /**
   * Exact SPIFFE IDs.
   */
  identities?: string[];
}

export interface RateLimitOverride__Output {
  requestsPerSecond: number;
  /**
   * Exact SPIFFE IDs.
   */
  identities: string[];
}
