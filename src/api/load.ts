// Loads the control-plane protos at runtime with @grpc/proto-loader, typed with the generated
// types in src/api/gen/ (scripts/gen-api.ts). The control plane (server side) uses this; the
// proxy's clients use src/api/client.ts, which needs neither proto-loader nor protobufjs. The
// loader options here must match the generator's: camelCase fields, 64-bit numbers as JS numbers,
// enums as their names, defaults filled in, and a virtual field naming the member set in each
// oneof (the generated codecs decode to exactly this shape).
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { fileURLToPath } from 'node:url';
import type { ProtoGrpcType as DestinationProto } from './gen/destination.ts';
import type { ProtoGrpcType as IdentityProto } from './gen/identity.ts';
import type { ProtoGrpcType as PolicyProto } from './gen/policy.ts';
import type { ProtoGrpcType as RouteProto } from './gen/route.ts';

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

export type { IdentityClient, IdentityHandlers } from './gen/trellis/identity/v1/Identity.ts';
export type {
  CertifyRequest as ApiCertifyRequest,
  CertifyRequest__Output as ApiCertifyRequestOutput,
} from './gen/trellis/identity/v1/CertifyRequest.ts';
export type {
  CertifyResponse as ApiCertifyResponse,
  CertifyResponse__Output as ApiCertifyResponseOutput,
} from './gen/trellis/identity/v1/CertifyResponse.ts';
export type { PolicyClient, PolicyHandlers } from './gen/trellis/policy/v1/Policy.ts';
export type {
  InboundRequest as ApiInboundRequest,
  InboundRequest__Output as ApiInboundRequestOutput,
} from './gen/trellis/policy/v1/InboundRequest.ts';
export type {
  InboundPolicy as ApiInboundPolicy,
  InboundPolicy__Output as ApiInboundPolicyOutput,
} from './gen/trellis/policy/v1/InboundPolicy.ts';
export type {
  Server as ApiServer,
  Server__Output as ApiServerOutput,
} from './gen/trellis/policy/v1/Server.ts';
export type {
  Authorization as ApiAuthorization,
  Authorization__Output as ApiAuthorizationOutput,
} from './gen/trellis/policy/v1/Authorization.ts';
export type {
  RateLimit as ApiRateLimit,
  RateLimit__Output as ApiRateLimitOutput,
} from './gen/trellis/policy/v1/RateLimit.ts';
export type {
  HttpRoute as ApiHttpRoute,
  HttpRoute__Output as ApiHttpRouteOutput,
} from './gen/trellis/policy/v1/HttpRoute.ts';

export type { RoutesClient, RoutesHandlers } from './gen/trellis/route/v1/Routes.ts';
export type {
  RouteTarget as ApiRouteTarget,
  RouteTarget__Output as ApiRouteTargetOutput,
} from './gen/trellis/route/v1/RouteTarget.ts';
export type {
  RouteSet as ApiRouteSet,
  RouteSet__Output as ApiRouteSetOutput,
} from './gen/trellis/route/v1/RouteSet.ts';
export type { Route as ApiRoute, Route__Output as ApiRouteOutput } from './gen/trellis/route/v1/Route.ts';

// The proxy's clients (src/api/client.ts) need this without proto-loader; kept here for callers.
export { reconnectBackoffOptions } from './client.ts';

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

let identity: IdentityProto['trellis']['identity']['v1'] | null = null;

/** The trellis.identity.v1 package: the Identity client constructor and its service. */
export function loadIdentityApi(): IdentityProto['trellis']['identity']['v1'] {
  if (identity === null) {
    const definition = protoLoader.loadSync(protoPath('identity.proto'), LOADER_OPTIONS);
    identity = (grpc.loadPackageDefinition(definition) as unknown as IdentityProto).trellis.identity.v1;
  }
  return identity;
}

let policy: PolicyProto['trellis']['policy']['v1'] | null = null;

/** The trellis.policy.v1 package: the Policy client constructor and its service. */
export function loadPolicyApi(): PolicyProto['trellis']['policy']['v1'] {
  if (policy === null) {
    const definition = protoLoader.loadSync(protoPath('policy.proto'), LOADER_OPTIONS);
    policy = (grpc.loadPackageDefinition(definition) as unknown as PolicyProto).trellis.policy.v1;
  }
  return policy;
}

let route: RouteProto['trellis']['route']['v1'] | null = null;

/** The trellis.route.v1 package: the Routes client constructor and its service. */
export function loadRouteApi(): RouteProto['trellis']['route']['v1'] {
  if (route === null) {
    const definition = protoLoader.loadSync(protoPath('route.proto'), LOADER_OPTIONS);
    route = (grpc.loadPackageDefinition(definition) as unknown as RouteProto).trellis.route.v1;
  }
  return route;
}
