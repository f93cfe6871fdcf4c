// Original file: src/api/destination.proto

import type {
  TcpAddress as _trellis_destination_v1_TcpAddress,
  TcpAddress__Output as _trellis_destination_v1_TcpAddress__Output,
} from '../../../trellis/destination/v1/TcpAddress.ts';

export interface RemoveSet {
  addresses?: _trellis_destination_v1_TcpAddress[];
}

export interface RemoveSet__Output {
  addresses: _trellis_destination_v1_TcpAddress__Output[];
}
