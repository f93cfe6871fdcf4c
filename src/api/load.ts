// Loads the control-plane protos at runtime with @grpc/proto-loader, typed with the generated
// types in src/api/gen/ (scripts/gen-api.ts). The loader options here must match the generator's:
// camelCase fields, 64-bit numbers as JS numbers, enums as their names, defaults filled in, and a
// virtual field naming the member set in each oneof.
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { fileURLToPath } from 'node:url';
import type { ProtoGrpcType as DestinationProto } from './gen/destination.ts';

export type { DestinationClient, DestinationHandlers } from './gen/trellis/destination/v1/Destination.ts';
export type {
  Update as ApiUpdate,
  Update__Output as ApiUpdateOutput,
} from './gen/trellis/destination/v1/Update.ts';
export type {
  Endpoint as ApiEndpoint,
  Endpoint__Output as ApiEndpointOutput,
} from './gen/trellis/destination/v1/Endpoint.ts';
export type { TcpAddress as ApiTcpAddress } from './gen/trellis/destination/v1/TcpAddress.ts';
export type { GetDestination as ApiGetDestination } from './gen/trellis/destination/v1/GetDestination.ts';

export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
};

function protoPath(name: string): string {
  return fileURLToPath(new URL(`./${name}`, import.meta.url));
}

let destination: DestinationProto['trellis']['destination']['v1'] | null = null;

/** The trellis.destination.v1 package: the Destination client constructor and its service. */
export function loadDestinationApi(): DestinationProto['trellis']['destination']['v1'] {
  if (destination === null) {
    const definition = protoLoader.loadSync(protoPath('destination.proto'), LOADER_OPTIONS);
    const loaded = grpc.loadPackageDefinition(definition) as unknown as DestinationProto;
    destination = loaded.trellis.destination.v1;
  }
  return destination;
}
