// The outbound stack, every protocol, read top to bottom at the levels of linkerd2-proxy. Each
// level is built once per proxy (here, when the runtime starts: nothing below is made per request
// or per connection). The listener (listener.ts) accepts, applies the connection limits and
// detects the protocol; then a connection takes one of the paths of outboundPaths:
//
// - HTTP/1 (http/h1-session.ts, h1-client.ts; outboundH1) and HTTP/2 and gRPC
//   (http/h2-exchange.ts; outboundH2): per request, through all four levels below;
// - opaque TCP, and TLS passed through as it is: per connection, logical (the connection's own
//   destination) -> backend -> endpoint (tcp/forward.ts forwardTcp);
// - CONNECT (http/h1-tunnel.ts): the tunnel is connected at the backend and endpoint levels
//   (outboundH1 tunnels); its contents are detected again (listener.ts dispatch) and take the paths
//   above, the HTTP in it routed per request (tunnel).
//
// 1. logical: the service and port the app asked for, from the absolute-form URI, Host,
//    :authority or the connection's own destination, never one of the proxy's own listeners
//    (outbound/logical.ts, transport/loop-guard.ts).
// 2. route: the Gateway API rule that matched (outbound/routes.ts): filters, timeouts, retries with
//    their budget, faults, mirrors (outbound/mirror.ts); the protocols apply it per exchange
//    (http/h1-route-rule.ts, h2-exchange.ts). HTTP only: opaque bytes have no routes.
// 3. backend: a concrete service with its weight, balanced per request (per connection for TCP)
//    over its endpoints with circuit breaking (outbound/discovery.ts, balance/), and one retry of
//    a failed connect on another endpoint (outbound/balance.ts).
// 4. endpoint: how an endpoint is reached: a pooled plain connection, or over the mesh (mTLS to
//    the peer proxy; HTTP/1 as streams of one HTTP/2 connection, opaque bytes and CONNECT tunnels
//    through the opaque transport: mesh/outbound.ts).
import type net from 'node:net';
import type { ProxyRuntime } from '../runtime.ts';
import type { Target } from '../../core/target.ts';
import type { DetectedProtocol } from '../telemetry/metrics.ts';
import type { H1Context } from '../http/h1-context.ts';
import type { H1Connect } from '../http/h1-client.ts';
import type { H2ProxyOptions } from '../http/h2-proxy.ts';
import type { H2UpstreamPool } from '../http/h2-upstream-pool.ts';
import { forwardTcp, splice, type ForwardOptions } from '../tcp/forward.ts';
import { isMeshSocket } from '../mesh/protocol.ts';
import { connectBalanced, type BalancedConnectFailure } from './balance.ts';
import { LogicalTargets } from './logical.ts';
import { dispatch } from '../listener.ts';

/** The outbound paths of a connection whose protocol is known (listener.ts detects it). */
export interface OutboundPaths {
  /** HTTP/1: a session on the connection, each request through the stack (outboundH1). */
  http1(socket: net.Socket, target: Target | null, initial: Buffer | null): void;
  /** HTTP/2 and gRPC: each stream through the stack (outboundH2). */
  h2(socket: net.Socket, target: Target | null, initial: Buffer | null): void;
  /** Opaque TCP and passed-through TLS: the connection goes to an endpoint of its destination. */
  tcp(socket: net.Socket, target: Target | null, initial: Buffer | null): void;
  /**
   * Inside a CONNECT tunnel, once its protocol is known: `upstream` is the connection already made
   * to target (to `upstreamAddress`, the endpoint picked when target is logical).
   */
  tunnel(
    socket: net.Socket,
    target: Target | null,
    protocol: DetectedProtocol,
    initial: Buffer | null,
    upstream: net.Socket,
    upstreamAddress: Target | null,
  ): void;
}

/** The outbound paths by protocol (one per proxy). */
export function outboundPaths(rt: ProxyRuntime): OutboundPaths {
  const { metrics } = rt;
  const idleMs = rt.config.timeouts.idleMs;
  // logical: the connection's destination; backend: an endpoint discovery picks, another one once
  // when the connect fails; endpoint: plain, or the mesh's mTLS opaque transport when meshed.
  const toEndpoint: ForwardOptions = {
    connectTimeoutMs: rt.config.timeouts.connectMs,
    idleTimeoutMs: idleMs,
    discovery: rt.discovery,
    mesh: rt.mesh.outbound,
  };
  const connectFailed = (reason: BalancedConnectFailure): void => metrics.proxyError('outbound', reason);
  const paths: OutboundPaths = {
    http1: (socket, target, initial) => rt.startH1('outbound', socket, target, initial, null),
    h2: (socket, target, initial) => rt.startH2('outbound', socket, target, initial ?? Buffer.alloc(0), null),
    tcp(socket, target, initial) {
      if (target === null) {
        metrics.proxyError('outbound', 'unknown-destination');
        socket.destroy();
        return;
      }
      forwardTcp(socket, target, initial, toEndpoint, connectFailed);
    },
    tunnel(socket, target, protocol, initial, upstream, upstreamAddress) {
      if (protocol === 'tls' || protocol === 'opaque') {
        splice(socket, upstream, initial, null, idleMs);
        return;
      }
      // HTTP/1 reuses the tunnel's connection from the pool (pooled under the endpoint it goes
      // to, where per-request balancing will look for it); HTTP/2 makes its own sessions. A tunnel
      // to a meshed endpoint is the mesh's opaque transport: HTTP inside it is routed again
      // instead, per request, over the mesh's own HTTP/2 sessions.
      if (target !== null && protocol === 'http1' && !isMeshSocket(upstream))
        rt.pool.adopt(upstreamAddress ?? target, upstream);
      else upstream.destroy();
      if (protocol === 'http1') paths.http1(socket, target, initial);
      else paths.h2(socket, target, initial);
    },
  };
  return paths;
}

/** The outbound HTTP/1 path's context (one per proxy). */
export function outboundH1(rt: ProxyRuntime): H1Context {
  const mesh = rt.mesh.outbound;
  const connectMs = rt.config.timeouts.connectMs;
  const logical = new LogicalTargets(rt.loops);
  const plain: H1Connect = (pick, _upgrade, owner, cb) => rt.pool.acquire(pick.address, owner, cb);
  return {
    ...rt.h1Shared('outbound'),
    // logical
    route: (head, connTarget) => logical.request(head, connTarget),
    // route
    routes: rt.routes,
    mirrors: rt.mirrors,
    // backend
    discovery: rt.discovery,
    // endpoint (with an identity, meshed endpoints are reached over mTLS)
    connect: mesh !== null ? mesh.connectH1 : plain,
    // CONNECT: the tunnel is connected at the backend and endpoint levels, then its contents are
    // detected again (listener.ts dispatch) and take outboundPaths.tunnel
    tunnels: {
      isLoop: (target) => rt.loops.isLoop(target),
      connect: (target, cb) => connectBalanced(rt.discovery, target, connectMs, cb, mesh),
      handOver: (socket, target, initial, upstream, upstreamAddress) => {
        rt.trackAgain(socket);
        dispatch(rt, 'connect', socket, target, 'auto', initial, upstream, upstreamAddress);
      },
    },
    gate: null,
  };
}

/** The outbound HTTP/2 (and gRPC) forwarder's options; `pool`: the upstream sessions (meshed or not). */
export function outboundH2(rt: ProxyRuntime, pool: H2UpstreamPool): H2ProxyOptions {
  const logical = new LogicalTargets(rt.loops);
  return {
    ...rt.h2Shared('outbound'),
    // logical
    route: (authority, connTarget) => logical.authority(authority, connTarget),
    // route
    ...(rt.routes !== null ? { routes: rt.routes, mirrors: rt.mirrors } : {}),
    // backend
    discovery: rt.discovery,
    // endpoint
    pool,
    mesh: rt.mesh.outbound !== null,
  };
}
