// The HTTP/2 (and so gRPC) forwarding path. The listener hands over a downstream connection whose
// first bytes are the HTTP/2 prior-knowledge preface; H2Proxy runs an HTTP/2 server session on it
// (node:http2, fed the socket without listening) and forwards each stream to an upstream session
// from H2UpstreamPool (to an endpoint discovery picks per stream when the route names a service).
// The per-stream work lives in h2-exchange.ts.
//
// Flow control keeps memory bounded: each stream has a 1 MiB window on both sides and body data
// is piped, so a stalled reader stops WINDOW_UPDATEs towards the writer and at most one window per
// stream sits in the proxy; a connection carries at most 128 concurrent streams. The connection
// window is raised to 16 MiB so that many streams are not throttled by the 64 KiB default.
// Every other limit of node:http2 is set explicitly (h2-node-settings.ts), and each request head
// is held to the HTTP/1 limits before anything else happens to it (h2-head-limits.ts: 431/414).
//
// Drain is bounded by its grace period whatever the streams are doing: GOAWAY first, and at the
// deadline every stream still open is reset (CANCEL) and its session destroyed.
import * as http2 from 'node:http2';
import type * as net from 'node:net';
import type { Logger } from '../../core/log.ts';
import { HTTP1_LIMIT_DEFAULTS } from '../config.ts';
import type { AccessLog } from '../telemetry/access-log.ts';
import type { Direction, ProxyMetrics } from '../telemetry/metrics.ts';
import type { Discovery as H2Discovery } from '../outbound/balance.ts';
import type { H1Limits } from './h1-parser.ts';
import type { Tracer } from '../telemetry/trace-tracer.ts';
import { H2Exchange, type ExchangeContext } from './h2-exchange.ts';
import { guardHeaderBlocks, type HeaderGuardLimits } from './h2-header-guard.ts';
import { headLimitMessage, requestHeadLimitStatus } from './h2-head-limits.ts';
import { H2_CONNECTION_WINDOW, serverSessionOptions } from './h2-node-settings.ts';
import { refuseStream } from './h2-refuse.ts';
import { keepRepeatedLines } from './h2-headers.ts';
import { reportFault } from '../fault.ts';
import type { OutboundRoutes } from '../outbound/routes.ts';
import type { RequestMirrors } from '../outbound/mirror.ts';
import { SessionIdleTimer } from './h2-session-idle.ts';
import type { InboundStreamHook } from '../policy/inbound-hooks.ts';
import { H2UpstreamPool, type Target } from './h2-upstream-pool.ts';
import { StreamTable } from '../h2/stream-table.ts';

export type { Target } from './h2-upstream-pool.ts';
export type { Discovery as H2Discovery } from '../outbound/balance.ts';

export interface H2ProxyOptions {
  direction: Direction;
  metrics: Pick<ProxyMetrics, 'requestStarted' | 'responseFinished' | 'proxyError' | 'retried' | 'peers'>;
  log: Logger;
  accessLog: AccessLog | null;
  /** Distributed tracing (null or absent: off). */
  tracer?: Tracer | null;
  connectTimeoutMs: number;
  /** Close idle downstream/upstream sessions after this (0 = never). */
  idleTimeoutMs: number;
  /** 0 = none; else 504 (gRPC: DEADLINE_EXCEEDED) when no response headers arrive in time. */
  responseTimeoutMs: number;
  /**
   * Where a stream goes: connTarget is the connection-level destination (inbound app, explicit
   * listener, transparent original dst, CONNECT target) or null; authority is the stream's :authority.
   */
  route(authority: string | undefined, connTarget: Target | null): Target | null;
  /**
   * Service discovery for routed targets: a logical target (a service name) is balanced per
   * stream over its endpoints. Absent: every routed target is connected to as it is.
   */
  discovery?: H2Discovery;
  /** Outbound with a control plane: the Gateway API routes of the Services streams address. */
  routes?: OutboundRoutes;
  /** Where RequestMirror copies go (with routes). */
  mirrors?: RequestMirrors | null;
  /** The upstream session pool to use (shared with the mesh's HTTP/1 path); absent: its own. */
  pool?: H2UpstreamPool;
  /** Outbound with an identity: streams to meshed endpoints go over mTLS sessions. */
  mesh?: boolean;
  /** Inbound: identity header, policy and HTTP/1 restoring, before the usual forwarding. */
  streamHook?: InboundStreamHook;
  /**
   * The HTTP/1 head limits (config http1), held to on every request as on HTTP/1: over them, 431
   * (414 for the request target), never forwarded. Default: http1's defaults.
   */
  headLimits?: H1Limits;
}

interface DownstreamConnection {
  connTarget: Target | null;
  peer: string;
  /** The client's verified identity (an mTLS connection), or null. */
  identity: string | null;
  ip: string;
}

/** A downstream session's bookkeeping: idle tracking and the streams it has open. */
interface SessionState {
  idle: SessionIdleTimer;
  /** By stream id: a Set churned per stream kept streams alive past their end (h2/stream-table.ts). */
  streams: StreamTable<http2.ServerHttp2Stream>;
}

export class H2Proxy {
  private readonly opts: H2ProxyOptions;
  private readonly server: http2.Http2Server;
  private readonly pool: H2UpstreamPool;
  private readonly headLimits: H1Limits;
  private readonly guardLimits: HeaderGuardLimits;
  private readonly sessions = new Map<http2.ServerHttp2Session, SessionState>();
  /** Set only while `server.emit('connection')` runs, which creates the session synchronously. */
  private accepting: DownstreamConnection | undefined;
  private draining: Promise<void> | undefined;
  /** The drain's grace period is over: a session that still shows up is closed at once. */
  private drainDeadlinePassed = false;
  /** Called (by the drain) when the last downstream session closed. */
  private onNoSessions: (() => void) | undefined;

  constructor(opts: H2ProxyOptions) {
    this.opts = opts;
    this.headLimits = opts.headLimits ?? HTTP1_LIMIT_DEFAULTS;
    this.pool =
      opts.pool ??
      new H2UpstreamPool({
        connectTimeoutMs: opts.connectTimeoutMs,
        idleTimeoutMs: opts.idleTimeoutMs,
        log: opts.log,
        headLimits: this.headLimits,
      });
    const sessionOptions = serverSessionOptions(this.headLimits);
    this.guardLimits = {
      maxPairs: sessionOptions.maxHeaderListPairs!,
      maxListSize: sessionOptions.settings!.maxHeaderListSize!,
      headerTableSize: sessionOptions.settings!.headerTableSize!,
    };
    this.server = http2.createServer(sessionOptions);
    this.server.on('session', (session: http2.ServerHttp2Session) => this.onSession(session));
    this.server.on('sessionError', (err: Error) => opts.log.debug('downstream h2 session error', { err }));
    this.server.on('error', (err: Error) => opts.log.warn('h2 server error', { err }));
  }

  /** Takes over a downstream connection; `initial` are bytes already read from it (starting with the preface). */
  accept(
    socket: net.Socket,
    initial: Buffer,
    connTarget: Target | null,
    identity: string | null = null,
  ): void {
    const ip = socket.remoteAddress ?? '';
    const peer = `${ip}:${socket.remotePort ?? ''}`;
    socket.on('error', (err: Error) => this.opts.log.debug('downstream h2 socket error', { err, peer }));
    // The listener keeps TCP half-open (opaque forwarding needs that), but an HTTP/2 client that
    // sent FIN can send no more frames: end our side too, as Node's own servers do, so the session
    // closes and resets its streams instead of waiting for END_STREAMs that cannot come.
    socket.once('end', () => {
      if (!socket.writableEnded) socket.end();
    });
    try {
      // node reads the peer through the guard: a header block node would refuse half-way closes
      // the connection instead (h2-header-guard.ts).
      const guarded = guardHeaderBlocks(socket, initial, this.guardLimits, (why) => {
        this.opts.metrics.proxyError(this.opts.direction, 'h2-protocol-error');
        this.opts.log.debug('h2 connection closed before node read it', { why, peer });
      });
      this.accepting = { connTarget, peer, identity, ip };
      this.server.emit('connection', guarded);
    } catch (err) {
      this.opts.log.warn('could not start an h2 session on a connection', { err, peer });
      socket.destroy();
    } finally {
      this.accepting = undefined;
    }
  }

  /** Graceful drain: GOAWAY to every downstream session, resolve when their streams are done (or after graceMs, then close hard). */
  drain(graceMs: number): Promise<void> {
    this.draining ??= this.drainSessions(graceMs);
    return this.draining;
  }

  /** Downstream sessions currently open. */
  get sessionCount(): number {
    return this.sessions.size;
  }

  /** Waits for every session (also those accepted meanwhile) to close, at most graceMs; never rejects. */
  private async drainSessions(graceMs: number): Promise<void> {
    const noSessions = new Promise<void>((resolve) => (this.onNoSessions = resolve));
    if (this.sessions.size === 0) this.onNoSessions?.();
    for (const session of this.sessions.keys()) closeGracefully(session);
    let timer: NodeJS.Timeout | undefined;
    const graceOver = new Promise<void>((resolve) => (timer = setTimeout(resolve, Math.max(0, graceMs))));
    await Promise.race([noSessions, graceOver]);
    clearTimeout(timer);
    this.drainDeadlinePassed = true;
    for (const [session, state] of [...this.sessions]) closeNow(session, state.streams.values());
    try {
      this.pool.close(true);
    } catch (err) {
      this.opts.log.warn('could not close the h2 upstream sessions', { err });
    }
  }

  private onSession(session: http2.ServerHttp2Session): void {
    const { opts } = this;
    const conn = this.accepting ?? { connTarget: null, peer: '', identity: null, ip: '' };
    // The client's per-peer series, once per connection (outbound: per stream, by its endpoint).
    const inboundPeer = opts.direction === 'inbound' ? opts.metrics.peers.inbound(conn.identity) : null;
    const ctx: ExchangeContext = {
      direction: opts.direction,
      metrics: opts.metrics,
      log: opts.log,
      accessLog: opts.accessLog,
      pool: this.pool,
      discovery: opts.discovery ?? null,
      routes: opts.routes ?? null,
      mirrors: opts.mirrors ?? null,
      responseTimeoutMs: opts.responseTimeoutMs,
      maxInterimBytes: this.headLimits.maxHeaderBytes,
      route: (authority, connTarget) => opts.route(authority, connTarget),
      connTarget: conn.connTarget,
      peer: conn.peer,
      mesh: opts.mesh === true,
      tracer: opts.tracer ?? null,
      tracePeer: { address: conn.ip, identity: conn.identity },
      inboundPeer,
    };
    const hook = opts.streamHook;
    const idle = new SessionIdleTimer(session, opts.idleTimeoutMs, () => closeGracefully(session));
    const streams = new StreamTable<http2.ServerHttp2Stream>();
    this.sessions.set(session, { idle, streams });
    session.on('error', (err: Error) => {
      opts.log.debug('downstream h2 session error', { err, peer: conn.peer });
      const code = (err as { code?: unknown }).code;
      if (code === 'ERR_HTTP2_ERROR' || code === 'ERR_HTTP2_SESSION_ERROR') {
        opts.metrics.proxyError(opts.direction, 'h2-protocol-error');
      }
    });
    session.on('frameError', (type: number, code: number, id: number) =>
      opts.log.debug('downstream h2 frame error', { type, code, stream: id, peer: conn.peer }),
    );
    session.once('close', () => {
      idle.stop();
      this.sessions.delete(session);
      if (this.sessions.size === 0) this.onNoSessions?.();
    });
    const headLimits = this.headLimits;
    session.on('stream', (stream, joined, _flags, rawHeaders: string[]) => {
      idle.streamOpened();
      const id = stream.id!; // a stream the peer opened has its id
      streams.set(id, stream);
      stream.once('close', () => {
        streams.delete(id);
        idle.streamClosed();
      });
      try {
        const headers = keepRepeatedLines(joined, rawHeaders);
        const tooLarge = requestHeadLimitStatus(rawHeaders, headLimits);
        if (tooLarge !== 0) {
          refuseStream(
            stream,
            headers,
            {
              reason: 'request-header-too-large',
              message: headLimitMessage(tooLarge),
              status: tooLarge,
            },
            opts,
            opts.direction,
            conn.peer,
            inboundPeer ?? opts.metrics.peers.outbound(null),
          );
          return;
        }
        if (hook !== undefined && hook(stream, headers, conn)) return;
        new H2Exchange(ctx, stream, headers).start();
      } catch (err) {
        reportFault(opts, 'h2 stream start', err); // a fault of ours: this stream only
        if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
      }
    });
    try {
      session.setLocalWindowSize(H2_CONNECTION_WINDOW);
    } catch (err) {
      opts.log.debug('could not raise the h2 connection window', { err, peer: conn.peer });
    }
    idle.start();
    if (this.drainDeadlinePassed) closeNow(session, streams.values());
    else if (this.draining !== undefined) closeGracefully(session);
  }
}

/** GOAWAY, let the streams in flight finish, then close. */
function closeGracefully(session: http2.Http2Session): void {
  try {
    if (!session.closed && !session.destroyed) session.close();
  } catch {
    session.destroy();
  }
}

/** The grace period is over: reset the streams still open (their exchanges log it), destroy the session. */
function closeNow(session: http2.Http2Session, streams: readonly http2.ServerHttp2Stream[]): void {
  for (const stream of streams) {
    try {
      if (!stream.closed && !stream.destroyed) stream.close(http2.constants.NGHTTP2_CANCEL);
    } catch {
      // already going away with its session
    }
  }
  try {
    session.destroy();
  } catch {
    // destroyed already
  }
}
