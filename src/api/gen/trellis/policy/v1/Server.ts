// Original file: src/api/policy.proto

import type {
  Authorization as _trellis_policy_v1_Authorization,
  Authorization__Output as _trellis_policy_v1_Authorization__Output,
} from '../../../trellis/policy/v1/Authorization.ts';
import type {
  RateLimit as _trellis_policy_v1_RateLimit,
  RateLimit__Output as _trellis_policy_v1_RateLimit__Output,
} from '../../../trellis/policy/v1/RateLimit.ts';

export interface Server {
  /**
   * "<namespace>/<name>" of the Server resource.
   */
  name?: string;
  /**
   * The workload port it selects (the port the app listens on).
   */
  port?: number;
  /**
   * detect | http1 | http2 | grpc | opaque
   */
  protocol?: string;
  authorizations?: _trellis_policy_v1_Authorization[];
  /**
   * The HTTPLocalRateLimitPolicy that targets this Server, if any (the first by name).
   */
  rateLimit?: _trellis_policy_v1_RateLimit | null;
}

export interface Server__Output {
  /**
   * "<namespace>/<name>" of the Server resource.
   */
  name: string;
  /**
   * The workload port it selects (the port the app listens on).
   */
  port: number;
  /**
   * detect | http1 | http2 | grpc | opaque
   */
  protocol: string;
  authorizations: _trellis_policy_v1_Authorization__Output[];
  /**
   * The HTTPLocalRateLimitPolicy that targets this Server, if any (the first by name).
   */
  rateLimit: _trellis_policy_v1_RateLimit__Output | null;
}
