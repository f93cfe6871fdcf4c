// Original file: src/api/policy.proto

import type {
  Server as _trellis_policy_v1_Server,
  Server__Output as _trellis_policy_v1_Server__Output,
} from '../../../trellis/policy/v1/Server.ts';

export interface InboundPolicy {
  /**
   * The servers that select this workload, in name order.
   */
  servers?: _trellis_policy_v1_Server[];
}

export interface InboundPolicy__Output {
  /**
   * The servers that select this workload, in name order.
   */
  servers: _trellis_policy_v1_Server__Output[];
}
