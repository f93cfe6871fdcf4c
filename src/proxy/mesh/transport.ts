// The mTLS transport's classes in one module, loaded (by startProxy) only by a proxy that has an
// identity: they bring node:tls (and the own HTTP/2 connection) that a proxy without one must
// not pay, as with the HTTP/2 forwarder (runtime.ts: node:http2) and gRPC (the resolvers).
export { MeshCredentials } from './credentials.ts';
export { MeshInbound } from './inbound.ts';
export { MeshOutbound } from './outbound.ts';
export { MeshH2H1Inbound } from './inbound-h2h1.ts';
