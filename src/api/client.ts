// The proxy's side of the control-plane APIs: gRPC client constructors for Destination.Watch,
// Policy.WatchInbound, Routes.Watch and Identity.Certify, built on @grpc/grpc-js with the generated wire codecs
// (src/api/gen/codecs/, see scripts/gen-api.ts) instead of @grpc/proto-loader. Loading the
// .proto files at run time with protobufjs reflection cost ~9.5 MB of memory in every proxy;
// these constructors cost next to nothing. The control plane keeps load.ts (proto-loader), and
// test/unit/api-codecs.test.ts checks both sides agree: same method paths and streaming kinds,
// same messages byte for byte in meaning.
//
// Nothing here may import @grpc/proto-loader or protobufjs at run time (type imports are erased).
import * as grpc from '@grpc/grpc-js';
import type { BackoffSettings } from '../core/backoff.ts';
import * as destination from './gen/codecs/destination.ts';
import * as identity from './gen/codecs/identity.ts';
import * as policy from './gen/codecs/policy.ts';
import * as route from './gen/codecs/route.ts';
import type { DestinationClient } from './gen/trellis/destination/v1/Destination.ts';
import type { IdentityClient } from './gen/trellis/identity/v1/Identity.ts';
import type { PolicyClient } from './gen/trellis/policy/v1/Policy.ts';
import type { RoutesClient } from './gen/trellis/route/v1/Routes.ts';

export type { DestinationClient } from './gen/trellis/destination/v1/Destination.ts';
export type { IdentityClient } from './gen/trellis/identity/v1/Identity.ts';
export type { PolicyClient } from './gen/trellis/policy/v1/Policy.ts';
export type { RoutesClient } from './gen/trellis/route/v1/Routes.ts';
export type { RouteSet__Output as ApiRouteSetOutput } from './gen/trellis/route/v1/RouteSet.ts';
export type { Update__Output as ApiUpdateOutput } from './gen/trellis/destination/v1/Update.ts';
export type { Endpoint__Output as ApiEndpointOutput } from './gen/trellis/destination/v1/Endpoint.ts';
export type { InboundPolicy__Output as ApiInboundPolicyOutput } from './gen/trellis/policy/v1/InboundPolicy.ts';
export type { RateLimit__Output as ApiRateLimitOutput } from './gen/trellis/policy/v1/RateLimit.ts';
export type { CertifyResponse__Output as ApiCertifyResponseOutput } from './gen/trellis/identity/v1/CertifyResponse.ts';

/**
 * Channel options that keep grpc-js's own reconnect backoff (default 1 s .. 120 s) within ours, so
 * that a retry we schedule does not wait for the channel long after the server is back.
 */
export function reconnectBackoffOptions(backoff: BackoffSettings): grpc.ChannelOptions {
  return {
    'grpc.initial_reconnect_backoff_ms': backoff.initialMs,
    'grpc.max_reconnect_backoff_ms': backoff.maxMs,
  };
}

interface Codec<In, Out> {
  encode(message: In): Buffer;
  decode(bytes: Uint8Array): Out;
}

/**
 * One method as grpc-js wants it. The server-side halves are filled in too, so that the
 * definition is complete (and comparable with proto-loader's in the tests). `originalName` is the
 * camelCase alias proto-loader also defines (client.watch as well as client.Watch).
 */
function method<Req, ReqOut, Res, ResOut>(
  path: string,
  originalName: string,
  responseStream: boolean,
  request: Codec<Req, ReqOut>,
  response: Codec<Res, ResOut>,
): grpc.MethodDefinition<Req, Res> & { originalName: string } {
  return {
    path,
    requestStream: false,
    responseStream,
    requestSerialize: (message: Req) => request.encode(message),
    requestDeserialize: (bytes: Buffer) => request.decode(bytes) as unknown as Req,
    responseSerialize: (message: Res) => response.encode(message),
    responseDeserialize: (bytes: Buffer) => response.decode(bytes) as unknown as Res,
    originalName,
  };
}

/** The service definitions, as grpc.loadPackageDefinition would give them from proto-loader. */
export const destinationService: grpc.ServiceDefinition = {
  Watch: method(
    '/trellis.destination.v1.Destination/Watch',
    'watch',
    true,
    { encode: destination.encodeGetDestination, decode: destination.decodeGetDestination },
    { encode: destination.encodeUpdate, decode: destination.decodeUpdate },
  ),
};

export const policyService: grpc.ServiceDefinition = {
  WatchInbound: method(
    '/trellis.policy.v1.Policy/WatchInbound',
    'watchInbound',
    true,
    { encode: policy.encodeInboundRequest, decode: policy.decodeInboundRequest },
    { encode: policy.encodeInboundPolicy, decode: policy.decodeInboundPolicy },
  ),
};

export const routeService: grpc.ServiceDefinition = {
  Watch: method(
    '/trellis.route.v1.Routes/Watch',
    'watch',
    true,
    { encode: route.encodeRouteTarget, decode: route.decodeRouteTarget },
    { encode: route.encodeRouteSet, decode: route.decodeRouteSet },
  ),
};

export const identityService: grpc.ServiceDefinition = {
  Certify: method(
    '/trellis.identity.v1.Identity/Certify',
    'certify',
    false,
    { encode: identity.encodeCertifyRequest, decode: identity.decodeCertifyRequest },
    { encode: identity.encodeCertifyResponse, decode: identity.decodeCertifyResponse },
  ),
};

/** A client class: `new Destination(address, credentials, options)`. */
export type ClientConstructor<Client> = (new (
  address: string,
  credentials: grpc.ChannelCredentials,
  options?: grpc.ClientOptions,
) => Client) & { service: grpc.ServiceDefinition };

export const Destination = grpc.makeGenericClientConstructor(
  destinationService,
  'trellis.destination.v1.Destination',
) as unknown as ClientConstructor<DestinationClient>;

export const Policy = grpc.makeGenericClientConstructor(
  policyService,
  'trellis.policy.v1.Policy',
) as unknown as ClientConstructor<PolicyClient>;

export const Identity = grpc.makeGenericClientConstructor(
  identityService,
  'trellis.identity.v1.Identity',
) as unknown as ClientConstructor<IdentityClient>;

export const Routes = grpc.makeGenericClientConstructor(
  routeService,
  'trellis.route.v1.Routes',
) as unknown as ClientConstructor<RoutesClient>;
