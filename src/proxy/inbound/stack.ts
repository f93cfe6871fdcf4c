// The inbound stack, every protocol, read top to bottom; each layer is built once per proxy. A
// connection reaches it from the inbound listener: inboundAccept below is the inbound threat model
// (inbound/accept.ts: mesh termination, detection, late detection for server-first apps), which
// hands each connection, with the client's verified identity when it came over the mesh, to one
// of three paths:
//
// - HTTP/1 (inboundH1) and HTTP/2 and gRPC (inboundH2): per request, through the levels below;
//   the mesh's own HTTP/2-to-HTTP/1 streams take the same levels in mesh/inbound-h2h1.ts;
// - opaque bytes (inboundTcp): per connection, policy admits the connection first (accept.ts
//   forwardRaw, connectEarly), then it is spliced to the app.
//
// 1. target: the workload's own app, only: the connection's destination, never one a request
//    names (outbound/logical.ts, without loop guard: inbound has no logical names).
// 2. policy: the client-identity header set by the proxy alone, and authorization per request
//    (mesh/inbound-policy.ts: the HTTP/1 gate; mesh/inbound-h2.ts: the HTTP/2 stream hook; the
//    mesh's own HTTP/2-to-HTTP/1 streams are gated in mesh/inbound-h2h1.ts) or per connection for
//    opaque bytes (admitConnection, admitsAny).
// 3. endpoint: the app on loopback: a pooled plain connection (HTTP/1), node:http2 sessions
//    (HTTP/2), or a connection of its own (opaque: tcp/forward.ts connectForClient, no discovery,
//    never the mesh).
import type net from 'node:net';
import type { ProxyRuntime } from '../runtime.ts';
import type { H1Context } from '../http/h1-context.ts';
import type { H1Connect } from '../http/h1-client.ts';
import type { H2ProxyOptions } from '../http/h2-proxy.ts';
import type { InboundStreamHook } from '../policy/inbound-hooks.ts';
import type { BalancedConnectFailure } from '../outbound/balance.ts';
import { LogicalTargets } from '../outbound/logical.ts';
import { connectForClient, splice, type ForwardOptions } from '../tcp/forward.ts';
import { InboundAcceptor, type InboundTcp } from './accept.ts';

/** The inbound listener's connections, from accept to one of the paths below (one per proxy). */
export function inboundAccept(rt: ProxyRuntime): InboundAcceptor {
  const { config, mesh } = rt;
  return new InboundAcceptor({
    detectTimeoutMs: config.detect.timeoutMs,
    peekMs: config.detect.peekMs,
    serverFirstCacheMs: config.detect.opaqueCacheMs,
    serverFirstCacheMax: config.detect.opaqueCacheMax,
    opaquePorts: rt.opaquePorts,
    metrics: rt.metrics,
    log: rt.log.child({ direction: 'inbound' }),
    busy: (socket) => rt.connectionBusy(socket),
    policy: mesh.policy,
    authorizer: mesh.authorizer,
    meshInbound: () => mesh.inbound,
    http1: (socket, target, initial, identity) => rt.startH1('inbound', socket, target, initial, identity),
    h2: (socket, target, initial, identity) => rt.startH2('inbound', socket, target, initial, identity),
    tcp: inboundTcp(rt),
  });
}

/** The inbound opaque path below policy (one per proxy). */
function inboundTcp(rt: ProxyRuntime): InboundTcp {
  const idleTimeoutMs = rt.config.timeouts.idleMs;
  // endpoint: always the app at the connection's target itself, no discovery, never the mesh
  const toApp: ForwardOptions = {
    connectTimeoutMs: rt.config.timeouts.connectMs,
    idleTimeoutMs,
    discovery: null,
  };
  const connectFailed = (reason: BalancedConnectFailure): void => rt.metrics.proxyError('inbound', reason);
  return {
    idleTimeoutMs,
    connect(client: net.Socket, target, then) {
      const onApp = (app: net.Socket): void => {
        if (client.destroyed) app.destroy();
        else then(app);
      };
      connectForClient(client, target, toApp, onApp, connectFailed);
    },
    splice: (client, app, initial) => splice(client, app, initial, null, idleTimeoutMs),
  };
}

/** The inbound HTTP/1 path's context (one per proxy). */
export function inboundH1(rt: ProxyRuntime): H1Context {
  const { config, mesh } = rt;
  const logical = new LogicalTargets(null);
  const plain: H1Connect = (pick, _upgrade, owner, cb) => rt.pool.acquire(pick.address, owner, cb);
  return {
    ...rt.h1Shared('inbound'),
    // target
    route: (head, connTarget) => logical.request(head, connTarget),
    // policy (none to apply: no authorizer, no identity header, nothing appended)
    gate:
      mesh.authorizer !== null || config.mesh.clientIdHeader !== '' || config.mesh.appendForwardedFor
        ? mesh.policy
        : null,
    routes: null,
    mirrors: null,
    // endpoint
    discovery: rt.discovery,
    connect: plain,
    // no CONNECT: the inbound listener forwards only to its own app (h1-tunnel.ts refuses it)
    tunnels: null,
  };
}

/** The inbound HTTP/2 (and gRPC) forwarder's options, with the policy's stream hook. */
export function inboundH2(rt: ProxyRuntime, streamHook: InboundStreamHook): H2ProxyOptions {
  const logical = new LogicalTargets(null);
  return {
    ...rt.h2Shared('inbound'),
    // target
    route: (authority, connTarget) => logical.authority(authority, connTarget),
    // policy
    streamHook,
    // endpoint
    discovery: rt.discovery,
  };
}
