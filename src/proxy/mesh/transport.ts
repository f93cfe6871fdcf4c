// The mTLS transport's classes in one module, loaded (by startProxy) only by a proxy that has an
// identity: they bring node:tls and node:http2 (~14 MB of resident memory) that a proxy without
// one must not pay, as with the HTTP/2 forwarder (runtime.ts) and gRPC (the resolvers).
export { MeshCredentials } from './credentials.ts';
export { MeshInbound } from './inbound.ts';
export { MeshOutbound } from './outbound.ts';
