// Original file: src/api/route.proto

import type * as grpc from '@grpc/grpc-js';
import type { MethodDefinition } from '@grpc/proto-loader';
import type {
  RouteSet as _trellis_route_v1_RouteSet,
  RouteSet__Output as _trellis_route_v1_RouteSet__Output,
} from '../../../trellis/route/v1/RouteSet.ts';
import type {
  RouteTarget as _trellis_route_v1_RouteTarget,
  RouteTarget__Output as _trellis_route_v1_RouteTarget__Output,
} from '../../../trellis/route/v1/RouteTarget.ts';

export interface RoutesClient extends grpc.Client {
  Watch(
    argument: _trellis_route_v1_RouteTarget,
    metadata: grpc.Metadata,
    options?: grpc.CallOptions,
  ): grpc.ClientReadableStream<_trellis_route_v1_RouteSet__Output>;
  Watch(
    argument: _trellis_route_v1_RouteTarget,
    options?: grpc.CallOptions,
  ): grpc.ClientReadableStream<_trellis_route_v1_RouteSet__Output>;
  watch(
    argument: _trellis_route_v1_RouteTarget,
    metadata: grpc.Metadata,
    options?: grpc.CallOptions,
  ): grpc.ClientReadableStream<_trellis_route_v1_RouteSet__Output>;
  watch(
    argument: _trellis_route_v1_RouteTarget,
    options?: grpc.CallOptions,
  ): grpc.ClientReadableStream<_trellis_route_v1_RouteSet__Output>;
}

export interface RoutesHandlers extends grpc.UntypedServiceImplementation {
  Watch: grpc.handleServerStreamingCall<_trellis_route_v1_RouteTarget__Output, _trellis_route_v1_RouteSet>;
}

export interface RoutesDefinition extends grpc.ServiceDefinition {
  Watch: MethodDefinition<
    _trellis_route_v1_RouteTarget,
    _trellis_route_v1_RouteSet,
    _trellis_route_v1_RouteTarget__Output,
    _trellis_route_v1_RouteSet__Output
  >;
}
