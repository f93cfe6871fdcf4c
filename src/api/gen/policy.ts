import type * as grpc from '@grpc/grpc-js';
import type { MessageTypeDefinition } from '@grpc/proto-loader';

import type {
  Authorization as _trellis_policy_v1_Authorization,
  Authorization__Output as _trellis_policy_v1_Authorization__Output,
} from './trellis/policy/v1/Authorization.ts';
import type {
  HttpRoute as _trellis_policy_v1_HttpRoute,
  HttpRoute__Output as _trellis_policy_v1_HttpRoute__Output,
} from './trellis/policy/v1/HttpRoute.ts';
import type {
  InboundPolicy as _trellis_policy_v1_InboundPolicy,
  InboundPolicy__Output as _trellis_policy_v1_InboundPolicy__Output,
} from './trellis/policy/v1/InboundPolicy.ts';
import type {
  InboundRequest as _trellis_policy_v1_InboundRequest,
  InboundRequest__Output as _trellis_policy_v1_InboundRequest__Output,
} from './trellis/policy/v1/InboundRequest.ts';
import type {
  PolicyClient as _trellis_policy_v1_PolicyClient,
  PolicyDefinition as _trellis_policy_v1_PolicyDefinition,
} from './trellis/policy/v1/Policy.ts';
import type {
  RateLimit as _trellis_policy_v1_RateLimit,
  RateLimit__Output as _trellis_policy_v1_RateLimit__Output,
} from './trellis/policy/v1/RateLimit.ts';
import type {
  RateLimitOverride as _trellis_policy_v1_RateLimitOverride,
  RateLimitOverride__Output as _trellis_policy_v1_RateLimitOverride__Output,
} from './trellis/policy/v1/RateLimitOverride.ts';
import type {
  Server as _trellis_policy_v1_Server,
  Server__Output as _trellis_policy_v1_Server__Output,
} from './trellis/policy/v1/Server.ts';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new (...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
  trellis: {
    policy: {
      v1: {
        Authorization: MessageTypeDefinition<
          _trellis_policy_v1_Authorization,
          _trellis_policy_v1_Authorization__Output
        >;
        HttpRoute: MessageTypeDefinition<_trellis_policy_v1_HttpRoute, _trellis_policy_v1_HttpRoute__Output>;
        InboundPolicy: MessageTypeDefinition<
          _trellis_policy_v1_InboundPolicy,
          _trellis_policy_v1_InboundPolicy__Output
        >;
        InboundRequest: MessageTypeDefinition<
          _trellis_policy_v1_InboundRequest,
          _trellis_policy_v1_InboundRequest__Output
        >;
        Policy: SubtypeConstructor<typeof grpc.Client, _trellis_policy_v1_PolicyClient> & {
          service: _trellis_policy_v1_PolicyDefinition;
        };
        RateLimit: MessageTypeDefinition<_trellis_policy_v1_RateLimit, _trellis_policy_v1_RateLimit__Output>;
        RateLimitOverride: MessageTypeDefinition<
          _trellis_policy_v1_RateLimitOverride,
          _trellis_policy_v1_RateLimitOverride__Output
        >;
        Server: MessageTypeDefinition<_trellis_policy_v1_Server, _trellis_policy_v1_Server__Output>;
      };
    };
  };
}
