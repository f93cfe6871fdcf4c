// Original file: src/api/destination.proto

import type {
  AddSet as _trellis_destination_v1_AddSet,
  AddSet__Output as _trellis_destination_v1_AddSet__Output,
} from '../../../trellis/destination/v1/AddSet.ts';
import type {
  RemoveSet as _trellis_destination_v1_RemoveSet,
  RemoveSet__Output as _trellis_destination_v1_RemoveSet__Output,
} from '../../../trellis/destination/v1/RemoveSet.ts';
import type {
  NoEndpoints as _trellis_destination_v1_NoEndpoints,
  NoEndpoints__Output as _trellis_destination_v1_NoEndpoints__Output,
} from '../../../trellis/destination/v1/NoEndpoints.ts';

export interface Update {
  add?: _trellis_destination_v1_AddSet | null;
  remove?: _trellis_destination_v1_RemoveSet | null;
  noEndpoints?: _trellis_destination_v1_NoEndpoints | null;
  /**
   * With `add`: this set replaces everything the receiver knows (always true on the first message).
   */
  reset?: boolean;
  update?: 'add' | 'remove' | 'noEndpoints';
}

export interface Update__Output {
  add?: _trellis_destination_v1_AddSet__Output | null;
  remove?: _trellis_destination_v1_RemoveSet__Output | null;
  noEndpoints?: _trellis_destination_v1_NoEndpoints__Output | null;
  /**
   * With `add`: this set replaces everything the receiver knows (always true on the first message).
   */
  reset: boolean;
  update?: 'add' | 'remove' | 'noEndpoints';
}
