// Original file: src/api/destination.proto

import type {
  TcpAddress as _trellis_destination_v1_TcpAddress,
  TcpAddress__Output as _trellis_destination_v1_TcpAddress__Output,
} from '../../../trellis/destination/v1/TcpAddress.ts';

// Original file: src/api/destination.proto

export const _trellis_destination_v1_Endpoint_ProtocolHint = {
  /**
   * Detect the protocol as usual.
   */
  UNKNOWN: 'UNKNOWN',
  /**
   * A Trellis proxy is in front of the endpoint: HTTP may be carried as HTTP/2.
   */
  H2: 'H2',
  /**
   * The port's protocol cannot be detected: forward as opaque TCP.
   */
  OPAQUE: 'OPAQUE',
} as const;

export type _trellis_destination_v1_Endpoint_ProtocolHint =
  /**
   * Detect the protocol as usual.
   */
  | 'UNKNOWN'
  | 0
  /**
   * A Trellis proxy is in front of the endpoint: HTTP may be carried as HTTP/2.
   */
  | 'H2'
  | 1
  /**
   * The port's protocol cannot be detected: forward as opaque TCP.
   */
  | 'OPAQUE'
  | 2;

export type _trellis_destination_v1_Endpoint_ProtocolHint__Output =
  (typeof _trellis_destination_v1_Endpoint_ProtocolHint)[keyof typeof _trellis_destination_v1_Endpoint_ProtocolHint];

export interface Endpoint {
  address?: _trellis_destination_v1_TcpAddress | null;
  /**
   * Relative share of traffic; 0 is read as 1.
   */
  weight?: number;
  /**
   * Metadata for metrics: namespace, service, workload, zone (and more as sources provide).
   */
  labels?: { [key: string]: string };
  /**
   * True when a Trellis proxy runs beside the endpoint (connect with mTLS).
   */
  meshed?: boolean;
  /**
   * The SPIFFE ID the endpoint's certificate must carry; empty when unknown or not meshed.
   */
  identity?: string;
  protocolHint?: _trellis_destination_v1_Endpoint_ProtocolHint;
}

export interface Endpoint__Output {
  address: _trellis_destination_v1_TcpAddress__Output | null;
  /**
   * Relative share of traffic; 0 is read as 1.
   */
  weight: number;
  /**
   * Metadata for metrics: namespace, service, workload, zone (and more as sources provide).
   */
  labels: { [key: string]: string };
  /**
   * True when a Trellis proxy runs beside the endpoint (connect with mTLS).
   */
  meshed: boolean;
  /**
   * The SPIFFE ID the endpoint's certificate must carry; empty when unknown or not meshed.
   */
  identity: string;
  protocolHint: _trellis_destination_v1_Endpoint_ProtocolHint__Output;
}
