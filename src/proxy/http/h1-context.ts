// What the HTTP/1 path (h1-session.ts, h1-client.ts, h1-tunnel.ts) is given, once per direction
// (outbound/stack.ts, inbound/stack.ts): limits and timeouts, telemetry, routing, the endpoint
// connectors (plain or meshed: the HTTP/1 path does not know which), the listener's connection
// accounting, and the direction's policy (inbound gate; outbound routes, mirrors and CONNECT
// tunnels: the inbound context has none of these, so its sessions cannot tunnel).
import type net from 'node:net';
import type { ProxyErrorReason } from '../errors.ts';
import type { Direction, ProxyMetrics } from '../telemetry/metrics.ts';
import type { Logger } from '../../core/log.ts';
import type { AccessLog } from '../telemetry/access-log.ts';
import type { Target } from '../../core/target.ts';
import type { H1Limits, MessageHead } from './h1-parser.ts';
import type { UpstreamPool } from './upstream-pool.ts';
import type { InboundHttpGate } from '../policy/inbound-hooks.ts';
import type { Discovery, SocketCallback } from '../outbound/balance.ts';
import type { H1Connect, H1Route } from './h1-client.ts';
import type { RequestMirrors } from '../outbound/mirror.ts';
import type { OutboundRoutes } from '../outbound/routes.ts';
import type { Tracer } from '../telemetry/trace-tracer.ts';
import type { H1Session } from './h1-session.ts';

export interface H1Context {
  readonly direction: Direction;
  readonly limits: H1Limits;
  readonly idleTimeoutMs: number;
  readonly requestHeadTimeoutMs: number;
  /** While a request body is arriving: the longest silence from the client before a 408 (0: none). */
  readonly requestBodyIdleMs: number;
  readonly responseTimeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly metrics: ProxyMetrics;
  readonly log: Logger;
  readonly accessLog: AccessLog | null;
  readonly pool: UpstreamPool;
  /** Resolves logical targets to endpoints; null: every target is connected to as it is. */
  readonly discovery: Discovery | null;
  route(head: MessageHead, connTarget: Target | null): H1Route | ProxyErrorReason;
  /** Upgrade (101): splice two sockets into a byte tunnel. */
  splice(
    downstream: net.Socket,
    upstream: net.Socket,
    toUpstream: Buffer | null,
    toDownstream: Buffer | null,
  ): void;
  isDraining(): boolean;
  sessionClosed(session: H1Session): void;
  /** The connection has an exchange in progress (the listener's limits do not shed it)... */
  connectionBusy(socket: net.Socket): void;
  /** ...or waits for the next request (it may be shed when the listener is full). */
  connectionIdle(socket: net.Socket): void;
  /** Acquires a connection to a picked endpoint, plain or meshed (h1-client.ts H1Connect). */
  readonly connect: H1Connect;
  /**
   * CONNECT tunnels: outbound only (outbound/stack.ts). null inbound: the inbound listener
   * forwards only to its own app, so its stack has nothing a tunnel could connect with.
   */
  readonly tunnels: H1Tunnels | null;
  /** Inbound: the client-identity header and authorization policy (src/proxy/mesh/inbound-policy.ts). */
  readonly gate: InboundHttpGate | null;
  /** Outbound with a control plane: the routes attached to Services (null: none are used). */
  readonly routes: OutboundRoutes | null;
  /** Where RequestMirror copies go (outbound/mirror.ts); null: none are sent. */
  readonly mirrors?: RequestMirrors | null;
  /** Distributed tracing (telemetry/trace-tracer.ts); null or absent: off. */
  readonly tracer?: Tracer | null;
}

/** What a CONNECT tunnel is given (http/h1-tunnel.ts startConnect): outbound only. */
export interface H1Tunnels {
  /** Whether target is the proxy itself (a CONNECT to it is a loop). */
  isLoop(target: Target): boolean;
  /**
   * Connects a socket to an endpoint of `target` (outbound/balance.ts connectBalanced; over the
   * mesh's mTLS opaque transport when the endpoint is meshed).
   */
  connect(target: Target, cb: SocketCallback): void;
  /**
   * The session hands its socket (and the connection made to target, to `upstreamAddress`) over;
   * the listener runs detection inside the tunnel.
   */
  handOver(
    socket: net.Socket,
    target: Target,
    initial: Buffer | null,
    upstream: net.Socket,
    upstreamAddress: Target,
  ): void;
}

/** The members of H1Context both directions get alike (runtime.ts h1Shared); each direction's stack adds the rest. */
export type H1Shared = Omit<
  H1Context,
  'route' | 'discovery' | 'connect' | 'tunnels' | 'gate' | 'routes' | 'mirrors'
>;
