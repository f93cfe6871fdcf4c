// Original file: src/api/policy.proto

import type * as grpc from '@grpc/grpc-js';
import type { MethodDefinition } from '@grpc/proto-loader';
import type {
  InboundPolicy as _trellis_policy_v1_InboundPolicy,
  InboundPolicy__Output as _trellis_policy_v1_InboundPolicy__Output,
} from '../../../trellis/policy/v1/InboundPolicy.ts';
import type {
  InboundRequest as _trellis_policy_v1_InboundRequest,
  InboundRequest__Output as _trellis_policy_v1_InboundRequest__Output,
} from '../../../trellis/policy/v1/InboundRequest.ts';

export interface PolicyClient extends grpc.Client {
  WatchInbound(
    argument: _trellis_policy_v1_InboundRequest,
    metadata: grpc.Metadata,
    options?: grpc.CallOptions,
  ): grpc.ClientReadableStream<_trellis_policy_v1_InboundPolicy__Output>;
  WatchInbound(
    argument: _trellis_policy_v1_InboundRequest,
    options?: grpc.CallOptions,
  ): grpc.ClientReadableStream<_trellis_policy_v1_InboundPolicy__Output>;
  watchInbound(
    argument: _trellis_policy_v1_InboundRequest,
    metadata: grpc.Metadata,
    options?: grpc.CallOptions,
  ): grpc.ClientReadableStream<_trellis_policy_v1_InboundPolicy__Output>;
  watchInbound(
    argument: _trellis_policy_v1_InboundRequest,
    options?: grpc.CallOptions,
  ): grpc.ClientReadableStream<_trellis_policy_v1_InboundPolicy__Output>;
}

export interface PolicyHandlers extends grpc.UntypedServiceImplementation {
  WatchInbound: grpc.handleServerStreamingCall<
    _trellis_policy_v1_InboundRequest__Output,
    _trellis_policy_v1_InboundPolicy
  >;
}

export interface PolicyDefinition extends grpc.ServiceDefinition {
  WatchInbound: MethodDefinition<
    _trellis_policy_v1_InboundRequest,
    _trellis_policy_v1_InboundPolicy,
    _trellis_policy_v1_InboundRequest__Output,
    _trellis_policy_v1_InboundPolicy__Output
  >;
}
