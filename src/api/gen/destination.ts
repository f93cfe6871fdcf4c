import type * as grpc from '@grpc/grpc-js';
import type { MessageTypeDefinition } from '@grpc/proto-loader';

import type {
  AddSet as _trellis_destination_v1_AddSet,
  AddSet__Output as _trellis_destination_v1_AddSet__Output,
} from './trellis/destination/v1/AddSet.ts';
import type {
  DestinationClient as _trellis_destination_v1_DestinationClient,
  DestinationDefinition as _trellis_destination_v1_DestinationDefinition,
} from './trellis/destination/v1/Destination.ts';
import type {
  Endpoint as _trellis_destination_v1_Endpoint,
  Endpoint__Output as _trellis_destination_v1_Endpoint__Output,
} from './trellis/destination/v1/Endpoint.ts';
import type {
  GetDestination as _trellis_destination_v1_GetDestination,
  GetDestination__Output as _trellis_destination_v1_GetDestination__Output,
} from './trellis/destination/v1/GetDestination.ts';
import type {
  NoEndpoints as _trellis_destination_v1_NoEndpoints,
  NoEndpoints__Output as _trellis_destination_v1_NoEndpoints__Output,
} from './trellis/destination/v1/NoEndpoints.ts';
import type {
  RemoveSet as _trellis_destination_v1_RemoveSet,
  RemoveSet__Output as _trellis_destination_v1_RemoveSet__Output,
} from './trellis/destination/v1/RemoveSet.ts';
import type {
  TcpAddress as _trellis_destination_v1_TcpAddress,
  TcpAddress__Output as _trellis_destination_v1_TcpAddress__Output,
} from './trellis/destination/v1/TcpAddress.ts';
import type {
  Update as _trellis_destination_v1_Update,
  Update__Output as _trellis_destination_v1_Update__Output,
} from './trellis/destination/v1/Update.ts';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new (...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
  trellis: {
    destination: {
      v1: {
        AddSet: MessageTypeDefinition<_trellis_destination_v1_AddSet, _trellis_destination_v1_AddSet__Output>;
        Destination: SubtypeConstructor<typeof grpc.Client, _trellis_destination_v1_DestinationClient> & {
          service: _trellis_destination_v1_DestinationDefinition;
        };
        Endpoint: MessageTypeDefinition<
          _trellis_destination_v1_Endpoint,
          _trellis_destination_v1_Endpoint__Output
        >;
        GetDestination: MessageTypeDefinition<
          _trellis_destination_v1_GetDestination,
          _trellis_destination_v1_GetDestination__Output
        >;
        NoEndpoints: MessageTypeDefinition<
          _trellis_destination_v1_NoEndpoints,
          _trellis_destination_v1_NoEndpoints__Output
        >;
        RemoveSet: MessageTypeDefinition<
          _trellis_destination_v1_RemoveSet,
          _trellis_destination_v1_RemoveSet__Output
        >;
        TcpAddress: MessageTypeDefinition<
          _trellis_destination_v1_TcpAddress,
          _trellis_destination_v1_TcpAddress__Output
        >;
        Update: MessageTypeDefinition<_trellis_destination_v1_Update, _trellis_destination_v1_Update__Output>;
      };
    };
  };
}
