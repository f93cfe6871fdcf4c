// One HTTP/2 request/response exchange through the proxy: a downstream (server-side) stream is
// mirrored onto an upstream (client-side) stream. Headers, bodies (piped, so flow control carries
// backpressure end to end), trailers both ways and 1xx responses are forwarded; a reset on either
// side is passed on with the same code. When the proxy cannot reach the upstream it answers
// itself (see h2-headers.ts). A stream to a logical service goes to an endpoint that discovery
// picks for it (outbound/balance.ts), is retried once on another endpoint when the connect fails,
// and tells the balancer its round-trip time to the response headers. Every event handler is
// guarded: a misbehaving peer ends its own exchange, never the process. Metrics and the access
// log are written once, when the downstream stream closes.
import * as http2 from 'node:http2';
import type { Logger } from '../../core/log.ts';
import type { Pick as EndpointPick } from '../outbound/discovery.ts';
import { PROXY_ERROR_HEADER, type ProxyErrorReason } from '../errors.ts';
import { countsAgainstEndpoint, isFailedResponse } from '../balance/failure-accrual.ts';
import type { AccessLog } from '../telemetry/access-log.ts';
import type { Direction, ProxyMetrics } from '../telemetry/metrics.ts';
import { ExchangeOutcome } from './h2-exchange-outcome.ts';
import { forwardableHeaders, isGrpc, proxyErrorResponse } from './h2-headers.ts';
import { UpstreamConnectError, type H2UpstreamPool, type Target } from './h2-upstream-pool.ts';
import { meshIdentityOf } from '../../core/endpoints.ts';
import {
  pickEndpoint,
  retriesElsewhere,
  type Discovery,
  type EndpointOutcome,
  type EndpointSink,
} from '../outbound/balance.ts';
import type { RequestHeaders, RouteTable } from '../../core/routes/matcher.ts';
import type { HeaderModifier } from '../../core/routes/schema-filters.ts';
import {
  attemptLimit,
  blamesEndpoint,
  bodyTimeoutMessage,
  MAX_RETRY_BODY_BYTES,
  countedRetryAfter,
  responseBodyLimit,
  timeoutMessage,
  type AttemptFailure,
  type OutboundRoutes,
  type RouteDecision,
  type RoutePolicyRetry,
  type RouteTimeouts,
  type TimeoutReason,
} from '../outbound/routes.ts';
import { keepRepeatedLines, withModifiedHeaders } from './h2-headers.ts';
import { formatGrpcTimeout, parseGrpcTimeout } from '../../core/grpc-timeout.ts';
import type { RequestMirrors } from '../outbound/mirror.ts';
import type { SpanPeer, Tracer } from '../telemetry/trace-tracer.ts';
import type { PeerSeries } from '../telemetry/peer-metrics.ts';
import { interimHeadBytes } from './h2-head-limits.ts';

const {
  NGHTTP2_NO_ERROR,
  NGHTTP2_CANCEL,
  NGHTTP2_INTERNAL_ERROR,
  NGHTTP2_REFUSED_STREAM,
  NGHTTP2_FLAG_END_STREAM,
} = http2.constants;

/** What an exchange needs from the proxy and from the downstream connection it arrived on. */
export interface ExchangeContext {
  direction: Direction;
  metrics: Pick<ProxyMetrics, 'requestStarted' | 'responseFinished' | 'proxyError' | 'retried' | 'peers'>;
  log: Logger;
  accessLog: AccessLog | null;
  pool: H2UpstreamPool;
  /** Picks an endpoint per stream for logical targets; null: every target is direct. */
  discovery: Discovery | null;
  /** The routes of the Services streams address (outbound/routes.ts); null: none are used. */
  routes: OutboundRoutes | null;
  /** Where RequestMirror copies go (outbound/mirror.ts); null: none are sent. */
  mirrors: RequestMirrors | null;
  responseTimeoutMs: number;
  /**
   * Bytes the interim (1xx) heads of one response may have together (http1.maxHeaderBytes, as
   * on HTTP/1: upstream-conn.ts), each measured as its HTTP/1 head would be.
   */
  maxInterimBytes: number;
  route(authority: string | undefined, connTarget: Target | null): Target | null;
  connTarget: Target | null;
  peer: string;
  /** Streams to meshed endpoints go over mTLS sessions (this proxy has an identity). */
  mesh: boolean;
  /** Distributed tracing (null or absent: off). */
  tracer?: Tracer | null;
  /** Inbound: the client's address and verified identity, for its spans. */
  tracePeer?: SpanPeer;
  /** Inbound: the client's per-peer series (telemetry/peer-metrics.ts), once per connection. */
  inboundPeer?: PeerSeries | null;
}

export class H2Exchange implements EndpointSink {
  private readonly ctx: ExchangeContext;
  private readonly downstream: http2.ServerHttp2Stream;
  private requestHeaders: http2.IncomingHttpHeaders;
  /** The matched route rule's response header filters, null when none. */
  private responseHeaderModifiers: readonly HeaderModifier[] | null = null;
  /** The matched route's timeouts, null: the proxy's response timeout. */
  private routeTimeouts: RouteTimeouts | null = null;
  /** When the exchange must have its answer (performance.now() ms; Infinity: no route limit). */
  private deadline = Infinity;
  /** When the running attempt was sent (performance.now() ms): its backendRequest counts from there. */
  private attemptStart = 0;
  /** Which limit the running response timer stands for (the reason its 504 names). */
  private timeoutReason: TimeoutReason = 'response-timeout';
  /** RequestMirror backends to copy the request to once it is whole, null: none (or sent). */
  private mirrorTargets: readonly Target[] | null = null;
  /** The client's grpc-timeout in milliseconds, null: none (it is propagated with what is left). */
  private grpcTimeoutMs: number | null = null;
  /** The route's retries, null: none (or the request cannot be re-sent). */
  private retry: RoutePolicyRetry | null = null;
  private retriesDone = 0;
  /** The request is being sent again (a retry, or a refused stream): its kept body is replayed. */
  private resending = false;
  /** A REFUSED_STREAM was answered by sending the stream once more (at most once). */
  private refusedResent = false;
  /** The request body as received, kept for a retry (up to MAX_RETRY_BODY_BYTES), or null. */
  private retryBody: Buffer[] | null = null;
  private retryBodyBytes = 0;
  /** The room retryBody holds in the proxy's kept bodies (given back when it is dropped or the exchange ends). */
  private keptBytes = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  /** The failed attempt's pick while a retry waits for its backoff. */
  private retryPick: EndpointPick | null = null;
  private readonly grpc: boolean;
  private readonly outcome = new ExchangeOutcome();
  private traced = false;
  private upstream: http2.ClientHttp2Stream | undefined;
  private upstreamSession: http2.ClientHttp2Session | undefined;
  private requestTrailers: http2.IncomingHttpHeaders | undefined;
  private responseTrailers: http2.IncomingHttpHeaders | undefined;
  /** Trailers the proxy sends itself when a gRPC response breaks after its headers. */
  private rescueTrailers: http2.IncomingHttpHeaders | undefined;
  private responseTimer: NodeJS.Timeout | undefined;
  private requestEnded: boolean;
  /** Response headers were sent downstream (by forwarding or by the proxy itself). */
  private responded = false;
  private upstreamComplete = false;
  private upstreamClosedByProxy = false;
  /** Bytes of the interim (1xx) heads received so far (bounded by ctx.maxInterimBytes). */
  private interimBytes = 0;
  /** The current attempt's endpoint, until it is reported back (done) to the balancer. */
  private endpointPick: EndpointPick | null = null;
  /** The connect failure that made this stream try another endpoint (at most once). */
  private retriedAfter: UpstreamConnectError | undefined;
  private upstreamOpenedAt = 0;
  /** Where the current attempt was sent (routing's answer; the same for a retry). */
  private target: Target | null = null;

  constructor(ctx: ExchangeContext, downstream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) {
    this.ctx = ctx;
    this.downstream = downstream;
    this.requestHeaders = headers;
    this.grpc = isGrpc(headers);
    this.requestEnded = downstream.endAfterHeaders;
  }

  start(): void {
    const { ctx, downstream } = this;
    ctx.metrics.requestStarted(ctx.direction, 'h2');
    this.outcome.peerSeries =
      ctx.direction === 'inbound' ? (ctx.inboundPeer ?? null) : ctx.metrics.peers.outbound(null);
    downstream.on('error', (err: Error) =>
      ctx.log.debug('downstream h2 stream error', { err, peer: ctx.peer }),
    );
    downstream.on('trailers', (trailers: http2.IncomingHttpHeaders) => (this.requestTrailers = trailers));
    downstream.once('end', () => (this.requestEnded = true));
    downstream.once('close', () => guard(ctx.log, () => this.onDownstreamClose()));

    let target: Target | null;
    try {
      target = ctx.route(this.requestHeaders[':authority'], ctx.connTarget);
    } catch (err) {
      ctx.log.error('h2 route lookup failed', { err });
      target = null;
    }
    if (target === null) {
      this.respondWithError('unknown-destination', `no destination for authority ${this.authority()}`);
      return;
    }
    const grpcTimeout = this.grpc ? parseGrpcTimeout(this.requestHeaders['grpc-timeout']) : null;
    if (grpcTimeout !== null) {
      // The client's deadline bounds the exchange here too, and goes on with what is left of it.
      this.grpcTimeoutMs = grpcTimeout;
      this.deadline = performance.now() + grpcTimeout;
      this.armAttemptTimer();
    } else if (ctx.responseTimeoutMs > 0) {
      this.responseTimer = setTimeout(
        () => guard(ctx.log, () => this.onResponseTimeout()),
        ctx.responseTimeoutMs,
      );
    }
    const routes = ctx.routes;
    if (routes !== null && ctx.discovery !== null && ctx.discovery.isLogical(target)) {
      const table = routes.tableFor(target);
      if (table instanceof Promise) {
        // The first stream to this Service port waits for its routes (bounded by the wait).
        const routed = target;
        table.then(
          (late) =>
            guard(
              ctx.log,
              () => this.abandoned() || this.routeThenAttempt(routes, late, routed),
              () => this.downstream.close(NGHTTP2_INTERNAL_ERROR),
            ),
          () => undefined,
        );
        return;
      }
      this.routeThenAttempt(routes, table, target);
      return;
    }
    this.attempt(target, null);
  }

  /** Applies the routes of the stream's Service (outbound/routes.ts), then sends it on or answers. */
  private routeThenAttempt(routes: OutboundRoutes, table: RouteTable | null, target: Target): void {
    if (table === null) {
      this.attempt(target, null);
      return;
    }
    const h = this.requestHeaders;
    const decision = routes.decide(target, table, {
      method: String(h[':method'] ?? ''),
      pathAndQuery: String(h[':path'] ?? ''),
      headers: h as RequestHeaders,
      grpc: this.grpc,
      authority: this.authority(),
    });
    if (decision === null) {
      this.attempt(target, null);
      return;
    }
    this.applyDecision(target, decision);
  }

  /** A route decision applied: the stream sent on, answered, or (an HTTPFault's delay) held first. */
  private applyDecision(target: Target, decision: RouteDecision): void {
    const h = this.requestHeaders;
    if (decision.kind === 'delay') {
      const ctx = this.ctx;
      const timer = setTimeout(
        () =>
          guard(
            ctx.log,
            () => this.abandoned() || this.applyDecision(target, decision.then),
            () => this.downstream.close(NGHTTP2_INTERNAL_ERROR),
          ),
        decision.ms,
      );
      this.downstream.once('close', () => clearTimeout(timer));
      return;
    }
    // Answered here or forwarded: the tap and the span name the rule that decided it.
    this.outcome.matchedRoute = decision.rule;
    if (decision.kind === 'refuse') {
      this.respondWithError(decision.reason, decision.message);
      return;
    }
    if (decision.kind === 'abort') {
      this.respondWithError('fault-injected', decision.message, decision.status, decision.grpcStatus);
      return;
    }
    if (decision.kind === 'redirect') {
      // A sampled request gets its span, as an error answered here does (respondWithError).
      if (this.ctx.tracer != null && !this.traced) this.startSpan(this.ctx.tracer, target, null);
      this.clearResponseTimer();
      this.responded = true;
      this.outcome.status = decision.status;
      this.downstream.respond(
        { ':status': decision.status, location: decision.location },
        { endStream: true },
      );
      return;
    }
    const headers = withModifiedHeaders(h, decision.requestHeaders);
    headers[':path'] = decision.pathAndQuery;
    if (decision.authority !== null) headers[':authority'] = decision.authority;
    this.requestHeaders = headers;
    if (decision.responseHeaders.length > 0) this.responseHeaderModifiers = decision.responseHeaders;
    this.outcome.routeSeries = decision.series;
    const timeouts = decision.timeouts;
    if (timeouts !== null) {
      this.routeTimeouts = timeouts;
      if (timeouts.requestMs !== null)
        this.deadline = Math.min(this.deadline, performance.now() + timeouts.requestMs);
      this.clearResponseTimer();
      this.armAttemptTimer();
    }
    if (decision.retry !== null && decision.retry.retries > 0) this.retry = decision.retry;
    if (decision.mirrors.length > 0) this.mirrorTargets = decision.mirrors;
    // The body is kept as it arrives when a retry or a mirror may send it again.
    if (this.retry !== null || this.mirrorTargets !== null) this.retryBody = [];
    if (this.mirrorTargets !== null && this.requestEnded) this.sendMirrors();
    this.attempt(decision.target, null);
  }

  /** Whether the route's request timeout, not the client's grpc-timeout, set the deadline. */
  private routeDeadlineFirst(): boolean {
    const requestMs = this.routeTimeouts?.requestMs ?? null;
    return requestMs !== null && requestMs < (this.grpcTimeoutMs ?? Infinity);
  }

  /** Copies the whole request to the rule's mirrors (when its body was kept whole). */
  private sendMirrors(): void {
    const targets = this.mirrorTargets;
    this.mirrorTargets = null;
    const mirrors = this.ctx.mirrors;
    if (targets === null || mirrors === null) return;
    const h = this.requestHeaders;
    if (this.retryBody === null) {
      mirrors.drop(targets.length); // the body outgrew what is kept
      return;
    }
    mirrors.send(targets, {
      method: String(h[':method'] ?? 'GET'),
      pathAndQuery: String(h[':path'] ?? '/'),
      headers: h,
      body: this.retryBody,
      h2: true,
    });
  }

  /** Starts the response timer of one attempt: the first of the route's limits and the proxy's. */
  private armAttemptTimer(): void {
    this.attemptStart = performance.now();
    const limit = attemptLimit(
      this.deadline,
      this.routeTimeouts,
      this.ctx.responseTimeoutMs,
      this.attemptStart,
    );
    this.timeoutReason = limit.reason;
    if (limit.ms > 0)
      this.responseTimer = setTimeout(() => guard(this.ctx.log, () => this.onResponseTimeout()), limit.ms);
  }

  /**
   * An attempt the route retries (its status, a trailers-only gRPC status, or no answer in time):
   * when the whole request was received (and kept) and the budget allows, the attempt's stream
   * is cancelled and the request sent again after a backoff, to another endpoint when there is
   * one. Returns true when it retries, 'deadline' when only the exchange's deadline stopped it.
   */
  private retryAttempt(failure: AttemptFailure): boolean | 'deadline' {
    const retry = this.retry;
    if (retry === null || this.retryBody === null || !this.requestEnded || this.responded) return false;
    const { ctx } = this;
    const delay = countedRetryAfter(
      retry,
      this.retriesDone,
      failure,
      this.deadline,
      ctx.metrics,
      ctx.direction,
      this.outcome.routeSeries,
    );
    if (delay === null) return false;
    if (delay === 'deadline') return 'deadline';
    this.retriesDone++;
    const span = this.outcome.traceSpan;
    if (span !== null && ctx.tracer != null) {
      // The failed attempt's CLIENT span ends; the next attempt gets its own.
      const timedOut = 'timedOut' in failure;
      this.outcome.traceSpan = ctx.tracer.retryObject(
        span,
        this.requestHeaders,
        timedOut ? 0 : failure.status,
        this.outcome.describe(this.requestHeaders, this.authority()),
        timedOut ? this.timeoutReason : undefined,
      );
    }
    this.clearResponseTimer();
    const failed = this.dropAttempt();
    if (blamesEndpoint(failure)) failed?.fail?.(); // the circuit breaker's verdict
    this.retryPick = failed;
    this.retryTimer = setTimeout(
      () =>
        guard(
          ctx.log,
          () => {
            this.retryTimer = undefined;
            this.retryPick = null;
            if (this.abandoned()) {
              failed?.done();
              return;
            }
            this.armAttemptTimer();
            this.attempt(this.target!, failed, false);
          },
          () => this.downstream.close(NGHTTP2_INTERNAL_ERROR),
        ),
      delay,
    );
    return true;
  }

  /**
   * Gives up the current attempt so the request can be sent again (a retry or a refused stream):
   * its stream is detached (its events no longer concern this exchange; its 'error' stays handled)
   * and cancelled if still open. Returns its pick, not yet reported to the balancer.
   */
  private dropAttempt(): EndpointPick | null {
    this.resending = true;
    const up = this.upstream;
    this.upstream = undefined;
    this.upstreamSession = undefined;
    if (up !== undefined) {
      this.downstream.unpipe(up);
      for (const event of ['headers', 'response', 'trailers', 'end', 'close', 'wantTrailers'])
        up.removeAllListeners(event);
      if (!up.closed && !up.destroyed) up.close(NGHTTP2_CANCEL);
    }
    this.upstreamComplete = false;
    this.responseTrailers = undefined;
    const failed = this.endpointPick;
    this.endpointPick = null;
    return failed;
  }

  /** Sends the stream towards `target`; `failed` is the previous attempt's pick on a retry. */
  private attempt(target: Target, failed: EndpointPick | null, otherOnly = true): void {
    this.target = target;
    pickEndpoint(this.ctx.discovery, target, failed, this, otherOnly);
  }

  /** Where this attempt goes (outbound/balance.ts): send the stream there, or answer why not. */
  onEndpoint(outcome: EndpointOutcome): void {
    guard(
      this.ctx.log,
      () => this.onDestination(this.target!, outcome),
      () => this.downstream.close(NGHTTP2_INTERNAL_ERROR),
    );
  }

  private onDestination(target: Target, outcome: EndpointOutcome): void {
    const { ctx, downstream } = this;
    if (this.abandoned()) {
      if (typeof outcome === 'object' && !('error' in outcome)) outcome.done();
      return;
    }
    if (typeof outcome === 'object' && 'error' in outcome) {
      this.respondWithError(outcome.error, outcome.detail);
      return;
    }
    if (outcome === 'no-other-endpoint') {
      this.respondWithConnectError(this.retriedAfter);
      return;
    }
    this.endpointPick = outcome;
    if (ctx.direction === 'outbound') this.outcome.peerSeries = ctx.metrics.peers.outbound(outcome.endpoint);
    this.outcome.endpoint = outcome;
    const endStream =
      downstream.endAfterHeaders ||
      (this.resending && this.retryBodyBytes === 0 && this.requestTrailers === undefined);
    const identity = ctx.mesh ? meshIdentityOf(outcome.endpoint) : null;
    if (ctx.tracer != null && !this.traced) this.startSpan(ctx.tracer, target, identity);
    const headers = forwardableHeaders(this.requestHeaders);
    if (this.grpcTimeoutMs !== null)
      headers['grpc-timeout'] = formatGrpcTimeout(this.deadline - performance.now());
    ctx.pool.request(outcome.address, headers, { endStream, waitForTrailers: !endStream }, identity).then(
      ({ stream, session }) => guard(ctx.log, () => this.attachUpstream(stream, session)),
      (err: unknown) => guard(ctx.log, () => this.onUpstreamUnavailable(target, err)),
    );
  }

  /** Tracing, once per exchange (a retry gives its attempt a span of its own: retryAttempt). */
  private startSpan(tracer: Tracer, target: Target | undefined, identity: string | null): void {
    this.traced = true;
    const inbound = this.ctx.direction === 'inbound';
    this.outcome.traceSpan = tracer.startObject(
      this.requestHeaders,
      this.ctx.direction,
      inbound ? (this.ctx.tracePeer?.address ?? '') : '',
      inbound ? (this.ctx.tracePeer?.identity ?? null) : identity,
      target,
    );
  }

  private attachUpstream(up: http2.ClientHttp2Stream, session: http2.ClientHttp2Session): void {
    const { ctx, downstream } = this;
    up.on('error', (err: Error) => ctx.log.debug('upstream h2 stream error', { err, peer: ctx.peer }));
    if (this.abandoned()) {
      // The client gave up (or the proxy answered) while the session was being set up.
      this.completePick();
      this.closeUpstream(up, downstream.rstCode || NGHTTP2_CANCEL);
      return;
    }
    this.upstreamOpenedAt = performance.now();
    this.upstream = up;
    this.upstreamSession = session;
    up.on('headers', (headers: http2.IncomingHttpHeaders) =>
      guard(ctx.log, () => up === this.upstream && this.onInformational(up, headers)),
    );
    up.once('response', (headers: http2.IncomingHttpHeaders, flags: number, raw: string[] | undefined) =>
      guard(ctx.log, () =>
        this.onResponse(up, raw === undefined ? headers : keepRepeatedLines(headers, raw), flags),
      ),
    );
    up.on('trailers', (trailers: http2.IncomingHttpHeaders) => {
      if (up === this.upstream) this.responseTrailers = trailers;
    });
    up.once('end', () => guard(ctx.log, () => this.onUpstreamEnd(up)));
    up.once('close', () => guard(ctx.log, () => this.onUpstreamClose(up)));
    if (downstream.endAfterHeaders) return;
    up.once('wantTrailers', () =>
      guard(
        ctx.log,
        () => up.sendTrailers(this.requestTrailers ? forwardableHeaders(this.requestTrailers) : {}),
        () => up.close(NGHTTP2_INTERNAL_ERROR),
      ),
    );
    if (this.resending) {
      // A retry: the request was received whole and kept (retryAttempt); send it again.
      if (this.retryBodyBytes === 0 && this.requestTrailers === undefined) return;
      for (const chunk of this.retryBody!) up.write(chunk);
      up.end();
      return;
    }
    downstream.on('data', (chunk: Buffer) => {
      this.outcome.bytesIn += chunk.length;
      const kept = this.retryBody;
      if (kept === null) return;
      this.retryBodyBytes += chunk.length;
      // Kept up to 64 KiB, and while the proxy's kept bodies together have room (KeptBodies).
      const room = ctx.routes?.keptBodies ?? null;
      if (this.retryBodyBytes > MAX_RETRY_BODY_BYTES || (room !== null && !room.take(chunk.length)))
        this.dropKeptBody();
      else {
        if (room !== null) this.keptBytes += chunk.length;
        kept.push(chunk);
      }
    });
    if (downstream.readableEnded) {
      // The request already ended while the upstream stream was being opened: Node emits 'end'
      // for a bodiless request as soon as END_STREAM arrives (an empty DATA frame after the
      // headers, e.g. content-length: 0), before anyone reads; it will not emit it again.
      if (endedCleanly(downstream)) {
        up.end();
        if (this.mirrorTargets !== null) this.sendMirrors();
      }
      return;
    }
    // Not `end: true`: a request cut short by a dead client connection must not reach the upstream
    // as a complete one (see endedCleanly); the downstream close handler resets it instead.
    downstream.once('end', () =>
      guard(ctx.log, () => {
        if (!endedCleanly(downstream)) return;
        up.end();
        if (this.mirrorTargets !== null) this.sendMirrors();
      }),
    );
    downstream.pipe(up, { end: false });
  }

  private onInformational(up: http2.ClientHttp2Stream, headers: http2.IncomingHttpHeaders): void {
    // Passed on as they come: an upstream that sent them without end grew the proxy without bound.
    this.interimBytes += interimHeadBytes(headers);
    if (this.interimBytes > this.ctx.maxInterimBytes) {
      this.closeUpstream(up, NGHTTP2_CANCEL);
      this.respondWithError(
        'upstream-bad-response',
        `interim (1xx) responses over ${this.ctx.maxInterimBytes} bytes`,
      );
      return;
    }
    const status = Number(headers[':status']);
    if (status >= 100 && status < 200 && !this.responded && !this.downstream.headersSent) {
      this.downstream.additionalHeaders(forwardableHeaders(headers));
    }
  }

  private onResponse(up: http2.ClientHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number): void {
    const { downstream } = this;
    if (up !== this.upstream) return; // an attempt given up for a retry
    const endStream = (flags & NGHTTP2_FLAG_END_STREAM) !== 0;
    if (this.retry !== null) {
      // A gRPC status is seen only in a trailers-only answer (headers with END_STREAM): once a
      // response's headers are forwarded, its trailers come too late to retry.
      const grpcStatus = this.grpc && endStream ? Number(headers['grpc-status'] ?? NaN) : NaN;
      const status = Number(headers[':status']) || 0;
      const failure = { status, grpcStatus: Number.isInteger(grpcStatus) ? grpcStatus : null };
      if (this.retryAttempt(failure) === true) return;
    }
    this.clearResponseTimer();
    this.completePick(
      performance.now() - this.upstreamOpenedAt,
      isFailedResponse(Number(headers[':status']), headers['grpc-status']), // the breaker's verdict
    );
    if (this.responded || downstream.closed || downstream.destroyed) return;
    this.outcome.status = Number(headers[':status']) || 0;
    this.outcome.noteGrpcStatus(headers);
    try {
      const out = forwardableHeaders(headers);
      downstream.respond(
        this.responseHeaderModifiers === null ? out : withModifiedHeaders(out, this.responseHeaderModifiers),
        endStream ? { endStream: true } : { waitForTrailers: true },
      );
    } catch (err) {
      // Headers node:http2 received but refuses to send on (e.g. an invalid :status).
      this.ctx.log.debug('h2 upstream response headers could not be forwarded', { err });
      this.closeUpstream(up, NGHTTP2_CANCEL);
      this.respondWithError('upstream-bad-response', 'the upstream response could not be forwarded');
      return;
    }
    this.responded = true;
    if (endStream || downstream.writableEnded) {
      // Headers-only (gRPC trailers-only, 204, HEAD): Node ended the stream; drop any body.
      this.outcome.markResponseEnded();
      up.resume();
      return;
    }
    // The deadline (the client's grpc-timeout, the route's request timeout) and the route's
    // backendRequest bound the whole response, its body or messages too (routes.ts
    // responseBodyLimit): an upstream that trickles past them is cut off there (gRPC:
    // DEADLINE_EXCEEDED in trailers; else the stream is reset).
    const body = responseBodyLimit(this.deadline, this.routeTimeouts, this.attemptStart, performance.now());
    if (body !== null)
      this.responseTimer = setTimeout(
        () => guard(this.ctx.log, () => this.onDeadlineDuringResponse(body.reason)),
        body.ms,
      );
    downstream.on('wantTrailers', () =>
      guard(
        this.ctx.log,
        () => {
          const trailers = this.rescueTrailers ?? this.responseTrailers;
          this.outcome.noteGrpcStatus(trailers);
          downstream.sendTrailers(trailers ? forwardableHeaders(trailers) : {});
          this.outcome.markResponseEnded();
          this.finishIfUpstreamGone();
        },
        () => downstream.close(NGHTTP2_INTERNAL_ERROR), // never leave the stream waiting for trailers
      ),
    );
    up.on('data', (chunk: Buffer) => (this.outcome.bytesOut += chunk.length));
    up.pipe(downstream, { end: false }); // ended by onUpstreamEnd, only when the body really ended
  }

  private onUpstreamEnd(up: http2.ClientHttp2Stream): void {
    if (up !== this.upstream || !endedCleanly(up)) return; // cut short: onUpstreamClose handles it
    this.upstreamComplete = true;
    const { downstream } = this;
    // Ending the downstream body makes Node ask for trailers ('wantTrailers').
    if (this.responded && !this.upstreamClosedByProxy && !downstream.writableEnded && !downstream.closed) {
      downstream.end();
    }
  }

  private onUpstreamClose(up: http2.ClientHttp2Stream): void {
    const { downstream } = this;
    this.clearResponseTimer();
    if (!this.upstreamClosedByProxy) this.endpointPick?.fail?.(); // reset before its response
    if (this.resendRefused(up)) return;
    this.completePick(); // closed before its response headers (else they completed it)
    up.unpipe(downstream);
    if (this.upstreamClosedByProxy || downstream.closed || downstream.destroyed) return;
    if (this.upstreamComplete || this.outcome.responseEnded) {
      // Normal end; if the upstream stopped reading the request early, stop the client too.
      this.finishIfUpstreamGone();
      return;
    }
    downstream.unpipe(up);
    const session = this.upstreamSession;
    const code = up.rstCode ?? NGHTTP2_INTERNAL_ERROR;
    if (session !== undefined && !session.destroyed && (this.responded || code !== NGHTTP2_NO_ERROR)) {
      // The upstream reset this stream: pass the same code on (REFUSED_STREAM stays retryable).
      this.outcome.error = `upstream-rst:${code}`;
      this.ctx.log.debug('upstream reset h2 stream', { code, peer: this.ctx.peer });
      downstream.close(code);
      return;
    }
    // The upstream connection failed under the stream (or it closed the stream with no answer).
    this.respondWithError('upstream-reset', 'upstream connection closed before the response completed');
  }

  /**
   * A stream the upstream refused (REFUSED_STREAM: it provably did not process it, RFC 9113 8.7)
   * is sent once more, to another endpoint when there is one, with or without a retry policy,
   * when the whole request can be sent again: it had no body, or its body was kept (for a retry
   * or a mirror) and has ended. Returns true when it resends.
   */
  private resendRefused(up: http2.ClientHttp2Stream): boolean {
    const { downstream } = this;
    if (up.rstCode !== NGHTTP2_REFUSED_STREAM || this.refusedResent || this.responded) return false;
    if (this.upstreamClosedByProxy || downstream.closed || downstream.destroyed) return false;
    if (!downstream.endAfterHeaders && (this.retryBody === null || !this.requestEnded)) return false;
    this.refusedResent = true;
    const failed = this.dropAttempt();
    this.ctx.log.debug('upstream refused an h2 stream; sending it once more', { peer: this.ctx.peer });
    this.armAttemptTimer();
    this.attempt(this.target!, failed, false);
    return true;
  }

  private onUpstreamUnavailable(target: Target, err: unknown): void {
    if (this.abandoned()) {
      this.completePick();
      return;
    }
    const failed = this.endpointPick;
    this.endpointPick = null;
    if (err instanceof UpstreamConnectError) {
      this.ctx.log.debug('h2 upstream connect failed', { err, reason: err.reason, endpoint: failed?.key });
      if (failed !== null && retriesElsewhere(failed, err.reason, this.retriedAfter !== undefined)) {
        // Nothing was sent yet (the request body waits unread): try another endpoint, once.
        this.retriedAfter = err;
        this.attempt(target, failed);
        return;
      }
      if (countsAgainstEndpoint(err.reason)) failed?.fail?.();
      failed?.done();
      this.respondWithConnectError(err);
      return;
    }
    failed?.done();
    this.ctx.log.debug('h2 request could not be sent upstream', { err });
    this.respondWithError('bad-request', 'the request could not be forwarded');
  }

  private respondWithConnectError(err: UpstreamConnectError | undefined): void {
    const reason = err?.reason ?? 'connect-failed';
    // The client learns what failed, not the address behind the proxy.
    const code = (err?.cause as { code?: unknown } | undefined)?.code;
    const detail = typeof code === 'string' ? ` (${code})` : '';
    this.respondWithError(
      reason,
      reason === 'connect-timeout'
        ? 'upstream connect timed out'
        : reason === 'connect-failed'
          ? `upstream connect failed${detail}`
          : `upstream connect failed: ${reason}`,
    );
  }

  private onResponseTimeout(): void {
    this.responseTimer = undefined;
    if (this.responded) return;
    let reason = this.timeoutReason;
    if (reason !== 'request-timeout') {
      const retried = this.retryAttempt({ timedOut: true });
      if (retried === true) return;
      // No time is left for another attempt: the request's own timeout is what ran out.
      if (retried === 'deadline') reason = 'request-timeout';
    }
    if (this.upstream !== undefined) this.closeUpstream(this.upstream, NGHTTP2_CANCEL);
    if (reason === 'response-timeout')
      this.respondWithError(reason, `no response within ${this.ctx.responseTimeoutMs} ms`);
    else if (reason === 'request-timeout' && this.grpcTimeoutMs !== null && !this.routeDeadlineFirst())
      this.respondWithError(
        reason,
        `no response within the client's grpc-timeout of ${this.grpcTimeoutMs} ms`,
      );
    else this.respondWithError(reason, timeoutMessage(reason, this.routeTimeouts));
  }

  /** A deadline passed while the response was still coming: the exchange ends here. */
  private onDeadlineDuringResponse(reason: TimeoutReason): void {
    this.responseTimer = undefined;
    if (this.outcome.responseEnded || this.upstreamComplete) return;
    if (this.upstream !== undefined) {
      this.upstream.unpipe(this.downstream);
      this.closeUpstream(this.upstream, NGHTTP2_CANCEL);
    }
    const grpc = reason === 'request-timeout' && this.grpcTimeoutMs !== null && !this.routeDeadlineFirst();
    this.respondWithError(
      reason,
      grpc
        ? `the response did not complete within the client's grpc-timeout of ${this.grpcTimeoutMs} ms`
        : bodyTimeoutMessage(reason, this.routeTimeouts),
    );
  }

  /** Answers the client with a response the proxy makes itself, or resets if headers went out. */
  private respondWithError(
    reason: ProxyErrorReason,
    message: string,
    status?: number,
    grpcStatus?: number,
  ): void {
    const { ctx, downstream } = this;
    this.clearResponseTimer();
    if (countsAgainstEndpoint(reason)) this.endpointPick?.fail?.(); // the circuit breaker's verdict
    this.completePick();
    ctx.metrics.proxyError(ctx.direction, reason);
    this.outcome.error = reason;
    // A request refused before it was forwarded still gets its span when it is sampled.
    if (ctx.tracer != null && !this.traced) this.startSpan(ctx.tracer, this.target ?? undefined, null);
    if (downstream.closed || downstream.destroyed) return;
    if (this.upstream !== undefined) downstream.unpipe(this.upstream);
    if (this.responded || downstream.headersSent) {
      if (this.grpc && !downstream.writableEnded) {
        // Headers went out: a gRPC client still gets a status, in trailers (Linkerd's "rescue").
        const { headers } = proxyErrorResponse(reason, true, message);
        this.rescueTrailers = {
          'grpc-status': String(headers['grpc-status']),
          'grpc-message': String(headers['grpc-message']),
          [PROXY_ERROR_HEADER]: reason,
        };
        downstream.end();
      } else {
        downstream.close(NGHTTP2_INTERNAL_ERROR);
      }
      return;
    }
    const response = proxyErrorResponse(reason, this.grpc, message, reason, status, grpcStatus);
    this.responded = true;
    this.outcome.status = Number(response.headers[':status']);
    if (this.grpc) this.outcome.grpcStatus = String(response.headers['grpc-status']);
    downstream.respond(response.headers, { endStream: response.body === null });
    if (response.body !== null) {
      this.outcome.bytesOut += Buffer.byteLength(response.body);
      downstream.end(response.body);
    }
    this.outcome.markResponseEnded();
    downstream.resume(); // discard the request body so the stream can close
    this.finishIfUpstreamGone();
  }

  /** The response is complete and nobody will read the rest of the request: end the stream. */
  private finishIfUpstreamGone(): void {
    const { downstream } = this;
    const upstreamGone = this.upstream === undefined || this.upstream.closed || this.upstream.destroyed;
    if (!this.outcome.responseEnded || !upstreamGone || this.requestEnded || downstream.closed) return;
    // close(NO_ERROR) waits for the queued response to be written, then sends RST_STREAM(NO_ERROR).
    setImmediate(() => guard(this.ctx.log, () => downstream.closed || downstream.close(NGHTTP2_NO_ERROR)));
  }

  /** The kept request body goes (too long, no room, or the exchange is over): no retry or mirror can send it. */
  private dropKeptBody(): void {
    this.retryBody = null;
    if (this.keptBytes > 0) this.ctx.routes?.keptBodies.give(this.keptBytes);
    this.keptBytes = 0;
  }

  private onDownstreamClose(): void {
    const { downstream, upstream } = this;
    this.dropKeptBody();
    this.clearResponseTimer();
    if (this.retryTimer !== undefined) {
      clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
      const pick = this.retryPick;
      this.retryPick = null;
      pick?.done();
    }
    this.completePick();
    const code = downstream.rstCode ?? NGHTTP2_NO_ERROR;
    if (upstream !== undefined && !upstream.closed && !upstream.destroyed) {
      if (!this.upstreamComplete || code !== NGHTTP2_NO_ERROR) {
        this.closeUpstream(upstream, code === NGHTTP2_NO_ERROR ? NGHTTP2_CANCEL : code);
      }
    }
    if (code !== NGHTTP2_NO_ERROR) this.outcome.error ??= `downstream-rst:${code}`;
    this.outcome.report(this.ctx, this.requestHeaders, this.authority(), code !== NGHTTP2_NO_ERROR);
  }

  private closeUpstream(up: http2.ClientHttp2Stream, code: number): void {
    this.upstreamClosedByProxy = true;
    this.downstream.unpipe(up);
    if (!up.closed && !up.destroyed) up.close(code);
  }

  /** The client is gone or already has its answer: nothing more goes upstream. */
  private abandoned(): boolean {
    return this.downstream.closed || this.downstream.destroyed || this.responded;
  }

  /** Reports the attempt's endpoint back to the balancer (with the RTT when it answered). */
  private completePick(rttMs?: number, failed?: boolean): void {
    const pick = this.endpointPick;
    this.endpointPick = null;
    pick?.done(rttMs, failed);
  }

  private authority(): string {
    return String(this.requestHeaders[':authority'] ?? this.requestHeaders.host ?? '');
  }

  private clearResponseTimer(): void {
    if (this.responseTimer === undefined) return;
    clearTimeout(this.responseTimer);
    this.responseTimer = undefined;
  }
}

/**
 * Whether a stream's readable side ended with END_STREAM from the peer. Node also ends the
 * readable side (with 'end') when the stream is torn down with its session, but then the stream
 * already carries a non-zero close code; a peer's RST_STREAM(NO_ERROR) counts as a clean end,
 * as RFC 9113 8.1 intends it (a complete response, "stop sending").
 */
function endedCleanly(stream: http2.Http2Stream): boolean {
  return stream.rstCode === undefined || stream.rstCode === NGHTTP2_NO_ERROR;
}

/**
 * Runs an event handler so that nothing it throws escapes into the event loop; `fallback` runs
 * when it threw, to leave the streams in a state that ends (it is guarded too).
 */
function guard(log: Logger, fn: () => unknown, fallback?: () => unknown): void {
  try {
    fn();
  } catch (err) {
    log.warn('h2 exchange handler failed', { err });
    if (fallback === undefined) return;
    try {
      fallback();
    } catch {
      // the stream is already gone
    }
  }
}
