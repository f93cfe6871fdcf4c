// The outbound stack of the HTTP paths, read top to bottom at the levels of linkerd2-proxy. Each
// level is built once per proxy (here, when the runtime starts: nothing below is made per request)
// and used by HTTP/1 (http/h1-session.ts, h1-client.ts) and HTTP/2 and gRPC (http/h2-exchange.ts)
// alike; opaque TCP and CONNECT tunnels go through the same backend and endpoint levels
// (outbound/balance.ts connectBalanced, from listener.ts).
//
// 1. logical: the service and port the app asked for, from the absolute-form URI, Host,
//    :authority or the connection's own destination, never one of the proxy's own listeners
//    (runtime.ts routeRequest, routeAuthority, isLoop).
// 2. route: the Gateway API rule that matched (outbound/routes.ts): filters, timeouts, retries with
//    their budget, faults, mirrors (outbound/mirror.ts); the protocols apply it per exchange
//    (http/h1-route-rule.ts, h2-exchange.ts).
// 3. backend: a concrete service with its weight, balanced per request over its endpoints with
//    circuit breaking (outbound/discovery.ts, balance/), and one retry of a failed connect on
//    another endpoint (outbound/balance.ts).
// 4. endpoint: how an endpoint is reached: a pooled plain connection, or over the mesh (mTLS to
//    the peer proxy; HTTP/1 as streams of one HTTP/2 connection: mesh/outbound.ts).
import type { ProxyRuntime } from '../runtime.ts';
import type { H1Context } from '../http/h1-context.ts';
import type { H1Connect } from '../http/h1-client.ts';
import type { H2ProxyOptions } from '../http/h2-proxy.ts';
import type { H2UpstreamPool } from '../http/h2-upstream-pool.ts';
import { connectBalanced } from './balance.ts';

/** The outbound HTTP/1 path's context (one per proxy). */
export function outboundH1(rt: ProxyRuntime): H1Context {
  const mesh = rt.mesh.outbound;
  const connectMs = rt.config.timeouts.connectMs;
  const plain: H1Connect = (pick, _upgrade, owner, cb) => rt.pool.acquire(pick.address, owner, cb);
  return {
    ...rt.h1Shared('outbound'),
    // logical
    route: (head, connTarget) => rt.routeRequest('outbound', head, connTarget),
    // route
    routes: rt.routes,
    mirrors: rt.mirrors,
    // backend
    discovery: rt.discovery,
    // endpoint (with an identity, meshed endpoints are reached over mTLS)
    connect: mesh !== null ? mesh.connectH1 : plain,
    connectTunnel: (target, cb) => connectBalanced(rt.discovery, target, connectMs, cb, mesh),
    gate: null,
  };
}

/** The outbound HTTP/2 (and gRPC) forwarder's options; `pool`: the upstream sessions (meshed or not). */
export function outboundH2(rt: ProxyRuntime, pool: H2UpstreamPool): H2ProxyOptions {
  return {
    ...rt.h2Shared('outbound'),
    // logical
    route: (authority, connTarget) => rt.routeAuthority('outbound', authority, connTarget),
    // route
    ...(rt.routes !== null ? { routes: rt.routes, mirrors: rt.mirrors } : {}),
    // backend
    discovery: rt.discovery,
    // endpoint
    pool,
    mesh: rt.mesh.outbound !== null,
  };
}
