// The inbound stack of the HTTP paths, read top to bottom. A connection reaches it from the
// inbound listener (inbound/accept.ts: the threat model, mesh termination, detection) with the
// client's verified identity when it came over the mesh; each layer is built once per proxy.
//
// 1. target: the workload's own app, only (runtime.ts routeRequest, routeAuthority).
// 2. policy: the client-identity header set by the proxy alone, and authorization per request
//    (mesh/inbound-policy.ts: the HTTP/1 gate; mesh/inbound-h2.ts: the HTTP/2 stream hook; the
//    mesh's own HTTP/2-to-HTTP/1 streams are gated in mesh/inbound-h2h1.ts).
// 3. endpoint: a pooled plain connection to the app on loopback.
import type { ProxyRuntime } from '../runtime.ts';
import type { H1Context } from '../http/h1-context.ts';
import type { H1Connect } from '../http/h1-client.ts';
import type { H2ProxyOptions } from '../http/h2-proxy.ts';
import type { InboundStreamHook } from '../policy/inbound-hooks.ts';
import { connectBalanced } from '../outbound/balance.ts';

/** The inbound HTTP/1 path's context (one per proxy). */
export function inboundH1(rt: ProxyRuntime): H1Context {
  const { config, mesh } = rt;
  const plain: H1Connect = (pick, _upgrade, owner, cb) => rt.pool.acquire(pick.address, owner, cb);
  return {
    ...rt.h1Shared('inbound'),
    // target
    route: (head, connTarget) => rt.routeRequest('inbound', head, connTarget),
    // policy (none to apply: no authorizer and no identity header)
    gate: mesh.authorizer !== null || config.mesh.clientIdHeader !== '' ? mesh.policy : null,
    routes: null,
    mirrors: null,
    // endpoint
    discovery: rt.discovery,
    connect: plain,
    connectTunnel: (target, cb) => connectBalanced(rt.discovery, target, config.timeouts.connectMs, cb, null),
  };
}

/** The inbound HTTP/2 (and gRPC) forwarder's options, with the policy's stream hook. */
export function inboundH2(rt: ProxyRuntime, streamHook: InboundStreamHook): H2ProxyOptions {
  return {
    ...rt.h2Shared('inbound'),
    // target
    route: (authority, connTarget) => rt.routeAuthority('inbound', authority, connTarget),
    // policy
    streamHook,
    // endpoint
    discovery: rt.discovery,
  };
}
