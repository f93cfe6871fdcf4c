// Original file: src/api/destination.proto

import type * as grpc from '@grpc/grpc-js';
import type { MethodDefinition } from '@grpc/proto-loader';
import type {
  GetDestination as _trellis_destination_v1_GetDestination,
  GetDestination__Output as _trellis_destination_v1_GetDestination__Output,
} from '../../../trellis/destination/v1/GetDestination.ts';
import type {
  Update as _trellis_destination_v1_Update,
  Update__Output as _trellis_destination_v1_Update__Output,
} from '../../../trellis/destination/v1/Update.ts';

export interface DestinationClient extends grpc.Client {
  /**
   * Streams the endpoints of `path` and every later change to them.
   */
  Watch(
    argument: _trellis_destination_v1_GetDestination,
    metadata: grpc.Metadata,
    options?: grpc.CallOptions,
  ): grpc.ClientReadableStream<_trellis_destination_v1_Update__Output>;
  Watch(
    argument: _trellis_destination_v1_GetDestination,
    options?: grpc.CallOptions,
  ): grpc.ClientReadableStream<_trellis_destination_v1_Update__Output>;
  /**
   * Streams the endpoints of `path` and every later change to them.
   */
  watch(
    argument: _trellis_destination_v1_GetDestination,
    metadata: grpc.Metadata,
    options?: grpc.CallOptions,
  ): grpc.ClientReadableStream<_trellis_destination_v1_Update__Output>;
  watch(
    argument: _trellis_destination_v1_GetDestination,
    options?: grpc.CallOptions,
  ): grpc.ClientReadableStream<_trellis_destination_v1_Update__Output>;
}

export interface DestinationHandlers extends grpc.UntypedServiceImplementation {
  /**
   * Streams the endpoints of `path` and every later change to them.
   */
  Watch: grpc.handleServerStreamingCall<
    _trellis_destination_v1_GetDestination__Output,
    _trellis_destination_v1_Update
  >;
}

export interface DestinationDefinition extends grpc.ServiceDefinition {
  Watch: MethodDefinition<
    _trellis_destination_v1_GetDestination,
    _trellis_destination_v1_Update,
    _trellis_destination_v1_GetDestination__Output,
    _trellis_destination_v1_Update__Output
  >;
}
