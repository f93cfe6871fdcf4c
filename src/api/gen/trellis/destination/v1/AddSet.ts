// Original file: src/api/destination.proto

import type {
  Endpoint as _trellis_destination_v1_Endpoint,
  Endpoint__Output as _trellis_destination_v1_Endpoint__Output,
} from '../../../trellis/destination/v1/Endpoint.ts';

export interface AddSet {
  endpoints?: _trellis_destination_v1_Endpoint[];
}

export interface AddSet__Output {
  endpoints: _trellis_destination_v1_Endpoint__Output[];
}
