// Original file: src/api/policy.proto

import type {
  RateLimitOverride as _trellis_policy_v1_RateLimitOverride,
  RateLimitOverride__Output as _trellis_policy_v1_RateLimitOverride__Output,
} from '../../../trellis/policy/v1/RateLimitOverride.ts';

/**
 * Inbound rate limits of one Server (after linkerd's HTTPLocalRateLimitPolicy): requests over a
 * limit are answered 429 (gRPC: RESOURCE_EXHAUSTED) before they reach the app. Each limit is a
 * token bucket holding one second of requests. Clients without an identity share one bucket.
 */
export interface RateLimit {
  /**
   * "<namespace>/<name>" of the HTTPLocalRateLimitPolicy.
   */
  name?: string;
  /**
   * All requests to the Server together; 0: no limit.
   */
  totalRps?: number;
  /**
   * Each client identity; 0: no limit.
   */
  identityRps?: number;
  /**
   * Limits for listed identities instead of identity_rps, each shared by its identities.
   */
  overrides?: _trellis_policy_v1_RateLimitOverride[];
}

/**
 * Inbound rate limits of one Server (after linkerd's HTTPLocalRateLimitPolicy): requests over a
 * limit are answered 429 (gRPC: RESOURCE_EXHAUSTED) before they reach the app. Each limit is a
 * token bucket holding one second of requests. Clients without an identity share one bucket.
 */
export interface RateLimit__Output {
  /**
   * "<namespace>/<name>" of the HTTPLocalRateLimitPolicy.
   */
  name: string;
  /**
   * All requests to the Server together; 0: no limit.
   */
  totalRps: number;
  /**
   * Each client identity; 0: no limit.
   */
  identityRps: number;
  /**
   * Limits for listed identities instead of identity_rps, each shared by its identities.
   */
  overrides: _trellis_policy_v1_RateLimitOverride__Output[];
}
