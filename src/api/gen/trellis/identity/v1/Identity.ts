// Original file: src/api/identity.proto

import type * as grpc from '@grpc/grpc-js';
import type { MethodDefinition } from '@grpc/proto-loader';
import type {
  CertifyRequest as _trellis_identity_v1_CertifyRequest,
  CertifyRequest__Output as _trellis_identity_v1_CertifyRequest__Output,
} from '../../../trellis/identity/v1/CertifyRequest.ts';
import type {
  CertifyResponse as _trellis_identity_v1_CertifyResponse,
  CertifyResponse__Output as _trellis_identity_v1_CertifyResponse__Output,
} from '../../../trellis/identity/v1/CertifyResponse.ts';

export interface IdentityClient extends grpc.Client {
  /**
   * Issues a leaf certificate for the CSR's public key, naming `identity`.
   */
  Certify(
    argument: _trellis_identity_v1_CertifyRequest,
    metadata: grpc.Metadata,
    options: grpc.CallOptions,
    callback: grpc.requestCallback<_trellis_identity_v1_CertifyResponse__Output>,
  ): grpc.ClientUnaryCall;
  Certify(
    argument: _trellis_identity_v1_CertifyRequest,
    metadata: grpc.Metadata,
    callback: grpc.requestCallback<_trellis_identity_v1_CertifyResponse__Output>,
  ): grpc.ClientUnaryCall;
  Certify(
    argument: _trellis_identity_v1_CertifyRequest,
    options: grpc.CallOptions,
    callback: grpc.requestCallback<_trellis_identity_v1_CertifyResponse__Output>,
  ): grpc.ClientUnaryCall;
  Certify(
    argument: _trellis_identity_v1_CertifyRequest,
    callback: grpc.requestCallback<_trellis_identity_v1_CertifyResponse__Output>,
  ): grpc.ClientUnaryCall;
  /**
   * Issues a leaf certificate for the CSR's public key, naming `identity`.
   */
  certify(
    argument: _trellis_identity_v1_CertifyRequest,
    metadata: grpc.Metadata,
    options: grpc.CallOptions,
    callback: grpc.requestCallback<_trellis_identity_v1_CertifyResponse__Output>,
  ): grpc.ClientUnaryCall;
  certify(
    argument: _trellis_identity_v1_CertifyRequest,
    metadata: grpc.Metadata,
    callback: grpc.requestCallback<_trellis_identity_v1_CertifyResponse__Output>,
  ): grpc.ClientUnaryCall;
  certify(
    argument: _trellis_identity_v1_CertifyRequest,
    options: grpc.CallOptions,
    callback: grpc.requestCallback<_trellis_identity_v1_CertifyResponse__Output>,
  ): grpc.ClientUnaryCall;
  certify(
    argument: _trellis_identity_v1_CertifyRequest,
    callback: grpc.requestCallback<_trellis_identity_v1_CertifyResponse__Output>,
  ): grpc.ClientUnaryCall;
}

export interface IdentityHandlers extends grpc.UntypedServiceImplementation {
  /**
   * Issues a leaf certificate for the CSR's public key, naming `identity`.
   */
  Certify: grpc.handleUnaryCall<
    _trellis_identity_v1_CertifyRequest__Output,
    _trellis_identity_v1_CertifyResponse
  >;
}

export interface IdentityDefinition extends grpc.ServiceDefinition {
  Certify: MethodDefinition<
    _trellis_identity_v1_CertifyRequest,
    _trellis_identity_v1_CertifyResponse,
    _trellis_identity_v1_CertifyRequest__Output,
    _trellis_identity_v1_CertifyResponse__Output
  >;
}
