// The server side of HTTP/1: one downstream connection. Parses each request strictly, routes it
// (the context's route, then a Service's Gateway API routes: outbound/routes.ts, with their
// filters, timeouts, retries, mirrors and faults), forwards it in one unambiguous form through
// its upstream side and streams the response back in the client's framing. Bodies are streamed
// with backpressure both ways and never buffered whole; chunked bodies are decoded and
// re-encoded. Requests are handled one at a time (pipelined requests wait in the buffer,
// bounded). Head, body and idle timers, drain, and the answers the proxy makes itself are here.
//
// The HTTP/1 files, by what they own:
// - h1-session.ts (this): the app's side of the connection, and each exchange's decisions.
// - h1-client.ts: the upstream side: endpoint pick and connect (with the one retry of a failed
//   connect elsewhere), request out, response in, connection reuse. It is the one upstream this
//   file talks to (H1ClientSink), whatever the connection is (h1-upstream.ts: a pooled byte
//   connection, upstream-conn.ts, or a stream of the mesh's HTTP/2, mesh/h1-over-h2.ts).
// - h1-context.ts: what the runtime gives the HTTP/1 path, per direction.
// - h1-tunnel.ts: CONNECT and Upgrade, which turn the connection into a byte tunnel.
// - h1-route-rule.ts: the route level: the Service's routes asked, and what the matched rule says
//   for the exchange (filters, timeouts, retries and their backoff, a fault's delay, mirrors, its
//   metrics) with the request body kept for a retry or mirror.
// - h1-parser.ts, h1-serialize.ts, chunked.ts, h1-uri.ts: the wire format.
// - upstream-pool.ts, upstream-conn.ts: keep-alive byte connections, where requests are written
//   and responses read; the runtime's H1Connect (plain) or mesh/outbound.ts (meshed endpoints)
//   chooses the kind of upstream per endpoint.
import type net from 'node:net';
import { performance } from 'node:perf_hooks';
import type { ProxyErrorReason } from '../errors.ts';
import { statusForReason } from '../errors.ts';
import { countsAgainstEndpoint } from '../balance/failure-accrual.ts';
import { reportFault } from '../fault.ts';
import type { Target } from '../../core/target.ts';
import { type MessageHead, parseRequestHead, switchesToOffered } from './h1-parser.ts';
import { ChunkedDecoder, CRLF, encodeChunkHeader } from './chunked.ts';
import { errorResponse, serializeResponseHead, type RequestLine } from './h1-serialize.ts';
import { wasUnprocessed, type ResponseBodyKind } from './h1-upstream.ts';
import type { Pick } from '../outbound/discovery.ts';
import { refusalReason } from '../policy/inbound-hooks.ts';
import { H1Client, RES_DONE, RES_HEAD, RES_NONE, type H1ClientSink, type H1Route } from './h1-client.ts';
import { startConnect, startUpgrade, type TunnelOwner } from './h1-tunnel.ts';
import { recordExchange, type DescribedExchange, type TapPeer } from '../telemetry/exchange-record.ts';
import type { PeerSeries } from '../telemetry/peer-metrics.ts';
import type { AccessLogEntry } from '../telemetry/access-log.ts';
import type { CompiledRule, RouteTable } from '../../core/routes/matcher.ts';
import {
  bodyTimeoutMessage,
  timeoutMessage,
  isTimeoutReason,
  type AttemptFailure,
  type TimeoutReason,
  type OutboundRoutes,
  type RouteDecision,
} from '../outbound/routes.ts';
import { reasonPhrase } from './reason-phrases.ts';
import type { RequestFacts, Tracer } from '../telemetry/trace-tracer.ts';
import type { TraceSpan } from '../telemetry/trace-span.ts';
import { H1RouteRule, type H1RuleOwner } from './h1-route-rule.ts';
import { endpointTapPeer } from '../telemetry/tap-peer.ts';
import type { H1Context } from './h1-context.ts';
import { forwardedAddress } from '../inbound/forwarded-for.ts';
import { corkForTick } from '../transport/cork.ts';

const REQ_IDLE = 0; // waiting for a request head
const REQ_CONNECTING = 1; // head parsed, waiting for an upstream connection
const REQ_BODY = 2; // forwarding the request body
const REQ_DONE = 3; // request fully forwarded

const MAX_PIPELINE_BYTES = 256 * 1024;

/** The answer to a request whose handling faulted (fault.ts) before any of its response was sent. */
const INTERNAL_ERROR_RESPONSE = errorResponse('internal-error', 'internal error', true);

export class H1Session implements H1ClientSink, DescribedExchange, TunnelOwner, H1RuleOwner {
  private readonly ctx: H1Context;
  private readonly socket: net.Socket;
  private readonly connTarget: Target | null;
  private buf: Buffer | null = null;
  private closed = false;
  /** The proxy closed its side: bytes still arriving (the rest of a body) are discarded, never parsed. */
  private ending = false;
  private headTimer: NodeJS.Timeout | null = null;
  private closeAfterResponse = false;
  /** The client half-closed while its body waited for an upstream: judged once that body is sent. */
  private endedBeforeBody = false;
  /** The client half-closed (FIN): nothing more comes from it; an exchange in flight is still answered. */
  private clientEnded = false;

  // The exchange in flight (at most one).
  private req: MessageHead | null = null;
  private reqState = REQ_IDLE;
  private reqChunked = false;
  private reqRemaining = 0;
  private reqDecoder: ChunkedDecoder | null = null;
  /** The request was re-sent once because its pooled connection closed as it was reused. */
  private retried = false;
  /** The route rule the exchange was forwarded by (h1-route-rule.ts). */
  private readonly rule = new H1RouteRule();
  /** What record() was last told (the access log line reads it). */
  private recordedStatus = 0;
  private recordedError: ProxyErrorReason | undefined = undefined;
  private route: H1Route | null = null;
  /** The upstream side of every exchange of this connection (h1-client.ts). */
  private readonly up: H1Client;
  /** The response head being passed on. */
  private res: MessageHead | null = null;
  private resOutChunked = false;
  private resStartedDownstream = false;
  private startedAt = 0;
  private latencyMs = 0;
  private responseTimer: NodeJS.Timeout | null = null;
  private bytesIn = 0;
  private bytesOut = 0;
  /** Inbound: the client's verified identity (mTLS), or null. */
  private readonly peerIdentity: string | null;
  /** Inbound: the client-identity field as it is added to every request ('' when none). */
  private readonly identityField: string;

  /** Inbound: the client's per-peer series (peer-metrics.ts), looked up once per connection. */
  private readonly inboundPeer: PeerSeries | null;

  /** The exchange's span when it is traced (recordExchange ends it). */
  traceSpan: TraceSpan | null = null;

  constructor(
    ctx: H1Context,
    socket: net.Socket,
    connTarget: Target | null,
    initial: Buffer | null,
    peerIdentity: string | null = null,
  ) {
    this.ctx = ctx;
    this.socket = socket;
    this.connTarget = connTarget;
    this.peerIdentity = peerIdentity;
    const idHeader = ctx.gate?.clientIdHeader ?? '';
    this.identityField = idHeader !== '' && peerIdentity !== null ? `${idHeader}: ${peerIdentity}\r\n` : '';
    this.inboundPeer = ctx.direction === 'inbound' ? ctx.metrics.peers.inbound(peerIdentity) : null;
    this.up = new H1Client(ctx, this, idHeader);
    // Every entry from the event loop catches what the session throws (fault.ts): a bug costs
    // this connection, never the process. (A try costs nothing measurable on V8's fast path.)
    socket.on('data', (chunk: Buffer) => {
      try {
        this.onData(chunk);
      } catch (err) {
        this.fault('h1 downstream data', err);
      }
    });
    socket.on('end', () => {
      try {
        this.onDownstreamEnd();
      } catch (err) {
        this.fault('h1 downstream end', err);
      }
    });
    socket.on('drain', () => {
      this.up.resume();
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      try {
        this.onDownstreamClose();
      } catch (err) {
        this.fault('h1 downstream close', err);
      }
    });
    socket.on('timeout', () => {
      try {
        this.onIdleTimeout();
      } catch (err) {
        this.fault('h1 idle timeout', err);
      }
    });
    if (ctx.idleTimeoutMs > 0) socket.setTimeout(ctx.idleTimeoutMs);
    if (initial !== null && initial.length > 0) {
      try {
        this.onData(initial);
      } catch (err) {
        this.fault('h1 downstream data', err);
      }
    }
  }

  /**
   * A fault of this session's own code (fault.ts): reported, the client answered 500 when no
   * byte of a response has reached it yet, and the connection and its upstream closed.
   */
  fault(where: string, err: unknown): void {
    reportFault(this.ctx, where, err);
    const answer =
      !this.closed && !this.ending && this.req !== null && !this.resStartedDownstream && this.socket.writable;
    this.ending = true; // nothing more the client sends is read
    if (answer) this.socket.end(INTERNAL_ERROR_RESPONSE);
    else this.socket.destroy();
    this.up.drop();
    // The socket's close cleans up (onDownstreamClose); when that is what faulted, the listener
    // is still told the session is gone.
    if (this.closed) {
      try {
        this.ctx.sessionClosed(this);
      } catch {
        // best effort once a fault happened
      }
    }
  }

  /** Drain: an idle connection closes now, a busy one after its response. */
  drain(): void {
    if (this.reqState === REQ_IDLE && this.up.state === RES_NONE && this.buf === null) this.endConnection();
    else this.closeAfterResponse = true;
  }

  // ---- downstream -> upstream -------------------------------------------------------------

  private onData(chunk: Buffer): void {
    if (this.ending) return;
    this.bytesIn += chunk.length;
    if (this.reqState === REQ_BODY) {
      this.forwardRequestBody(chunk);
      return;
    }
    this.buf = this.buf === null ? chunk : Buffer.concat([this.buf, chunk]);
    if (this.reqState === REQ_IDLE && this.up.state === RES_NONE) this.processBuffered();
    else if (this.buf.length > MAX_PIPELINE_BYTES) this.socket.pause();
  }

  private processBuffered(): void {
    const buf = this.buf;
    if (buf === null || this.closed) return;
    const r = parseRequestHead(buf, 0, buf.length, this.ctx.limits);
    if (r.kind === 'incomplete') {
      if (this.headTimer === null && this.ctx.requestHeadTimeoutMs > 0) {
        this.headTimer = setTimeout(() => {
          try {
            this.onHeadTimeout();
          } catch (err) {
            this.fault('h1 head timeout', err);
          }
        }, this.ctx.requestHeadTimeoutMs);
      }
      return;
    }
    this.clearHeadTimer();
    if (r.kind === 'error') {
      this.buf = null;
      const reason: ProxyErrorReason =
        r.status === 431 || r.status === 414 ? 'request-header-too-large' : 'bad-request';
      this.ctx.metrics.requestStarted(this.ctx.direction, 'http1');
      this.startedAt = performance.now();
      this.replyError(reason, r.message, r.status);
      return;
    }
    this.buf = r.end < buf.length ? buf.subarray(r.end) : null;
    this.startExchange(r.head);
  }

  private startExchange(head: MessageHead): void {
    const ctx = this.ctx;
    ctx.connectionBusy(this.socket);
    this.req = head;
    this.traceSpan = null;
    this.startedAt = performance.now();
    ctx.metrics.requestStarted(ctx.direction, 'http1');
    if (head.connectionClose || ctx.isDraining()) this.closeAfterResponse = true;
    if (head.method === 'CONNECT') {
      startConnect(ctx, this, this.socket, this.connTarget, head);
      return;
    }
    const route = ctx.route(head, this.connTarget);
    if (typeof route === 'string') {
      this.replyError(route, `cannot route ${head.method} ${head.target}`);
      return;
    }
    this.route = route;
    this.reqChunked = head.bodyKind === 'chunked';
    this.reqRemaining = head.bodyKind === 'length' ? head.contentLength : 0;
    const gate = ctx.gate;
    if (gate !== null) {
      const denied = gate.checkRequest(
        route.target.port,
        this.peerIdentity,
        this.socket.remoteAddress ?? '',
        head.method,
        route.path,
      );
      if (denied !== null) {
        // Nothing reaches the app. A bodiless request keeps the connection alive.
        if (!this.reqChunked && this.reqRemaining === 0) this.reqState = REQ_DONE;
        this.replyError(refusalReason(denied), denied, undefined, denied);
        return;
      }
    }
    // Outbound to a Service: its routes decide where the request goes (outbound/routes.ts).
    const routes = ctx.routes;
    if (routes !== null && ctx.discovery !== null && ctx.discovery.isLogical(route.target)) {
      const table = routes.tableFor(route.target);
      if (table instanceof Promise) {
        // The first request to this Service port waits for its routes (bounded by the wait).
        this.reqState = REQ_CONNECTING;
        if (this.reqChunked || this.reqRemaining > 0) this.socket.pause();
        void table.then((late) => {
          try {
            if (this.closed || this.route !== route || this.reqState !== REQ_CONNECTING) return;
            this.reqState = REQ_IDLE;
            if (late === null || this.applyRoutes(routes, late)) this.forward();
          } catch (err) {
            this.fault('h1 routes', err);
          }
        });
        return;
      }
      if (table !== null && !this.applyRoutes(routes, table)) return;
    }
    this.forward();
  }

  /**
   * Applies the routes of the request's Service (outbound/routes.ts): true to forward it (to the
   * rule's backend, with the rule's filters); false when the proxy answered it itself.
   */
  private applyRoutes(routes: OutboundRoutes, table: RouteTable): boolean {
    const decision = this.rule.decide(routes, table, this.route!, this.req!);
    return decision === null || this.applyDecision(decision);
  }

  /** A route decision applied: true to forward the request; false when answered here or delayed (a fault). */
  private applyDecision(decision: RouteDecision): boolean {
    if (decision.kind === 'forward') {
      this.route = this.rule.forwardBy(
        decision,
        this.req!,
        this.route!,
        this.ctx.mirrors,
        this.ctx.routes?.keptBodies ?? null,
      );
      return true;
    }
    if (decision.kind === 'delay') {
      // The request waits (its body unread), then the rest of the decision applies (onFaultDelayOver).
      this.reqState = REQ_CONNECTING;
      if (this.reqChunked || this.reqRemaining > 0) this.socket.pause();
      this.rule.delay(decision.ms, decision.then, this);
      return false;
    }
    // A bodiless request answered here keeps the connection alive.
    if (!this.reqChunked && this.reqRemaining === 0) this.reqState = REQ_DONE;
    // Answered here: the tap and the span still name the rule that decided it.
    this.rule.matched = decision.rule;
    if (decision.kind === 'refuse') this.replyError(decision.reason, decision.message);
    else if (decision.kind === 'abort') this.replyError('fault-injected', decision.message, decision.status);
    else this.replyRedirect(decision.status, decision.location);
    return false;
  }

  onFaultDelayOver(then: RouteDecision): void {
    if (this.closed || this.reqState !== REQ_CONNECTING) return;
    this.reqState = REQ_IDLE;
    if (this.applyDecision(then)) this.forward();
  }

  /**
   * An attempt the route retries (its status, or no answer in time): when the budget allows and
   * the whole request was sent, the answer is dropped (with its connection, whose body is unread)
   * and the request sent again after a backoff, to another endpoint when there is one. Returns
   * true when it retries, 'deadline' when only the exchange's deadline stopped it.
   */
  private retryAttempt(failure: AttemptFailure): boolean | 'deadline' {
    // A request whose body is still arriving cannot be sent again whole.
    if (this.rule.retry === null || this.reqState !== REQ_DONE) return false;
    const delay = this.rule.retryDelay(failure, this.ctx.metrics, this.ctx.direction);
    if (delay === null) return false;
    if (delay === 'deadline') return 'deadline';
    if (this.traceSpan !== null && this.ctx.tracer != null) this.traceAttempt(this.ctx.tracer, failure);
    this.up.drop();
    this.clearResponseTimer();
    this.res = null;
    const failed = this.up.takePick();
    this.up.restart();
    this.reqState = REQ_CONNECTING;
    this.rule.retryLater(delay, failed, failure, this);
    return true;
  }

  onRetryDue(failed: Pick | null): void {
    if (this.closed || this.reqState !== REQ_CONNECTING) {
      failed?.done();
      return;
    }
    this.connectUpstream(failed, false);
  }

  /** Sends the routed request on: its framing, the request line, and an upstream connection. */
  private forward(): void {
    const ctx = this.ctx;
    const head = this.req!;
    const route = this.route!;
    const gate = ctx.gate;
    this.reqDecoder = this.reqChunked ? new ChunkedDecoder(ctx.limits) : null;
    if (ctx.tracer != null) this.startSpan(ctx.tracer, head);
    const line: RequestLine =
      gate === null
        ? { method: head.method, path: route.path, host: route.host }
        : {
            method: head.method,
            path: route.path,
            host: route.host,
            drop: gate.clientIdHeader === '' ? null : gate.clientIdHeader,
            extra: this.identityField,
            forwardedFor: gate.appendForwardedFor ? forwardedAddress(this.socket.remoteAddress) : undefined,
          };
    this.up.begin(head, line, this.reqChunked);
    this.reqState = REQ_CONNECTING;
    // A body waits in the socket until there is an upstream to stream it to. A request without
    // one needs no pause (that would cost two syscalls per request): bytes that arrive meanwhile
    // are pipelined requests, buffered by onData up to MAX_PIPELINE_BYTES.
    if (this.reqChunked || this.reqRemaining > 0) this.socket.pause();
    this.connectUpstream(null, true);
  }

  /** Tracing: joins the request to its trace; its head then carries the span as the next hop's parent. */
  private startSpan(tracer: Tracer, head: MessageHead): void {
    const inbound = this.ctx.direction === 'inbound';
    this.traceSpan = tracer.start(
      head.headers,
      this.ctx.direction,
      inbound ? (this.socket.remoteAddress ?? '') : '',
      this.peerIdentity,
      this.route?.target,
    );
  }

  /** A retry of a traced request: the failed attempt's CLIENT span ends, the next gets its own. */
  private traceAttempt(tracer: Tracer, failure: AttemptFailure): void {
    const timedOut = 'timedOut' in failure;
    this.traceSpan = tracer.retry(
      this.traceSpan!,
      this.req!.headers,
      timedOut ? 0 : failure.status,
      this,
      timedOut ? this.rule.timeoutReason : undefined,
    );
  }

  /** Sends the exchange to an endpoint of its route (h1-client.ts); `failed`: the previous attempt's pick. */
  private connectUpstream(failed: Pick | null, otherOnly: boolean): void {
    this.up.connect(this.route!, failed, otherOnly);
  }

  // ---- the upstream's answers (H1ClientSink) -------------------------------------------------

  awaitsUpstream(route: H1Route | null): boolean {
    return !this.closed && this.route === route && this.reqState === REQ_CONNECTING;
  }

  onUpstreamFailed(reason: ProxyErrorReason, message: string): void {
    this.replyError(reason, message);
  }

  onUpstreamReady(): void {
    this.resStartedDownstream = false;
    if (!this.reqChunked && this.reqRemaining === 0) {
      this.reqState = REQ_DONE;
      // A retry sends the body the first attempt sent (kept by forwardRequestBody).
      const kept = this.rule.body;
      if (this.rule.retriesDone > 0 && kept !== null) for (const part of kept) this.up.writeBody(part);
      if (this.rule.mirrorTargets !== null)
        this.rule.sendMirrors(this.ctx.mirrors, this.req!, this.route!.path);
    } else {
      this.reqState = REQ_BODY;
      this.armBodyTimer();
      const pending = this.buf;
      this.buf = null;
      if (pending !== null) this.forwardRequestBody(pending);
      if (this.endedBeforeBody && this.reqState === REQ_BODY) {
        this.refuseCutBody();
        return;
      }
    }
    const timeoutMs = this.rule.attemptTimeout(this.ctx.responseTimeoutMs);
    if (timeoutMs > 0) {
      this.responseTimer = setTimeout(() => {
        try {
          this.onResponseTimeout();
        } catch (err) {
          this.fault('h1 response timeout', err);
        }
      }, timeoutMs);
    }
    if (this.reqState === REQ_BODY || this.req?.upgrade != null) this.socket.resume();
  }

  private forwardRequestBody(chunk: Buffer): void {
    let used: number;
    if (!this.reqChunked) {
      used = Math.min(this.reqRemaining, chunk.length);
      const part = used === chunk.length ? chunk : chunk.subarray(0, used);
      if (this.rule.body !== null && used > 0) this.rule.body.push(part);
      if (used > 0 && !this.up.writeBody(part)) this.socket.pause();
      this.reqRemaining -= used;
      if (this.reqRemaining === 0) {
        this.reqState = REQ_DONE;
        if (this.rule.mirrorTargets !== null)
          this.rule.sendMirrors(this.ctx.mirrors, this.req!, this.route!.path);
      }
    } else {
      used = this.up.writeChunks(this.reqDecoder!, chunk);
      if (used < 0) {
        // The upstream has seen part of a body that turned out malformed: it must never see more.
        this.up.drop();
        this.replyError('bad-request', this.reqDecoder!.error ?? 'bad chunked body');
        return;
      }
      if (this.up.blocked) this.socket.pause();
      if (this.reqDecoder!.done) this.reqState = REQ_DONE;
    }
    if (this.reqState === REQ_DONE) {
      this.armIdleTimer();
      if (used < chunk.length) {
        this.buf = chunk.subarray(used);
        this.socket.pause(); // the next request waits until this exchange is over
      }
      if (this.up.state === RES_DONE) this.finishExchange();
    }
  }

  onRequestDrain(): void {
    if (this.reqState !== REQ_BODY) return;
    this.socket.resume();
    this.armBodyTimer(); // the silence while we held the client back does not count
  }

  onInterim(head: MessageHead): void {
    // Interim responses (100 Continue, 103 Early Hints) go to HTTP/1.1 clients as they are.
    if (this.req!.versionMinor === 1) this.socket.write(serializeResponseHead(head, 'as-is', null), 'latin1');
  }

  onBadResponse(message: string): void {
    this.replyError('upstream-bad-response', message);
  }

  onResponseBroken(): void {
    this.ctx.metrics.proxyError(this.ctx.direction, 'upstream-bad-response');
    this.socket.destroy();
  }

  onResponseHead(head: MessageHead, kind: ResponseBodyKind, bodyLater: boolean): boolean {
    if (this.rule.retry !== null && this.retryAttempt({ status: head.status, grpcStatus: null }) === true)
      return false;
    this.clearResponseTimer();
    const now = performance.now();
    this.latencyMs = now - this.startedAt;
    this.up.answered(now, head.status >= 500); // the breaker's verdict
    this.res = head;
    const req = this.req!;
    if (head.status === 101) {
      if (req.upgrade === null || !switchesToOffered(req.upgrade, head.upgrade)) {
        this.up.drop();
        this.replyError(
          'upstream-bad-response',
          req.upgrade === null ? 'unexpected 101 response' : 'a 101 to a protocol the request did not offer',
        );
        return false;
      }
      this.upgrade(head);
      return false;
    }
    const clientHttp11 = req.versionMinor === 1;
    let framing: 'as-is' | 'chunked' | 'close' = 'as-is';
    if (kind === 'chunked' || kind === 'close') {
      if (clientHttp11) framing = 'chunked';
      else {
        framing = 'close';
        this.closeAfterResponse = true;
      }
    }
    // A request body the upstream did not wait for cannot be skipped safely: close after.
    if (this.reqState !== REQ_DONE) this.closeAfterResponse = true;
    if (this.ctx.isDraining()) this.closeAfterResponse = true;
    this.resOutChunked = framing === 'chunked';
    let connection: 'close' | 'keep-alive' | null = null;
    if (this.closeAfterResponse) connection = 'close';
    else if (!clientHttp11) connection = 'keep-alive';
    this.resStartedDownstream = true;
    if (bodyLater) {
      // The body of a direct upstream's response comes in a later tick (usually the next one,
      // already received): one write to the client for head and body instead of two.
      corkForTick(this.socket);
    }
    this.rule.filterResponse(head);
    this.socket.write(serializeResponseHead(head, framing, connection), 'latin1');
    // The route's timeouts cover the body too (routes.ts responseBodyLimit).
    const body = this.rule.bodyTimeout();
    if (body !== null)
      this.responseTimer = setTimeout(() => {
        try {
          this.onResponseBodyTimeout(body.reason);
        } catch (err) {
          this.fault('h1 response body timeout', err);
        }
      }, body.ms);
    return true;
  }

  onResponseData(chunk: Buffer): void {
    if (chunk.length === 0) return;
    const s = this.socket;
    let ok: boolean;
    if (this.resOutChunked) {
      s.cork();
      s.write(encodeChunkHeader(chunk.length));
      s.write(chunk);
      ok = s.write(CRLF);
      s.uncork();
    } else ok = s.write(chunk);
    this.bytesOut += chunk.length;
    if (!ok) this.up.pause();
  }

  onResponseEnd(trailers: Buffer): void {
    if (this.resOutChunked) {
      this.socket.write(
        trailers.length === 0 ? '0\r\n\r\n' : Buffer.concat([Buffer.from('0\r\n'), trailers, CRLF]),
      );
    }
    this.record(this.res!.status, false);
    this.finishExchange();
  }

  onUpstreamClosed(err: Error | null, beforeResponse: boolean, resendable: boolean): void {
    if (this.closed) return;
    if (beforeResponse && !this.resStartedDownstream) {
      // A pooled connection the upstream closed just as we reused it: re-send once on a new one
      // when nothing of the request body had to be sent (so nothing is lost or sent twice).
      // A request the upstream says it never processed (a refused HTTP/2 stream) likewise,
      // whatever its method.
      const unprocessed = wasUnprocessed(err);
      if (
        resendable &&
        !this.retried &&
        (isIdempotent(this.req!.method) || unprocessed) &&
        this.reqState === REQ_DONE &&
        this.reqRemaining === 0 &&
        !this.reqChunked
      ) {
        // (to another endpoint, when there is one: this one may be going away)
        this.retried = true;
        this.up.restart();
        this.reqState = REQ_CONNECTING;
        this.connectUpstream(this.up.takePick(), false);
        return;
      }
      this.replyError('upstream-reset', `upstream closed before responding${err ? `: ${err.message}` : ''}`);
      return;
    }
    // Mid-response: the only honest signal left is to close the client's connection too.
    this.ctx.metrics.proxyError(this.ctx.direction, 'upstream-reset');
    this.record(this.res?.status ?? 0, true);
    this.socket.destroy();
  }

  /** The exchange is over: its connection goes back (when it can be reused), the next request is read. */
  private finishExchange(): void {
    // (The upstream answered before the request body was complete: that connection cannot be reused.)
    this.up.finish(this.reqState === REQ_DONE);
    this.resetExchange();
    if (this.closeAfterResponse) {
      this.endConnection();
      return;
    }
    this.ctx.connectionIdle(this.socket);
    if (this.socket.isPaused()) this.socket.resume();
    if (this.buf !== null) this.processBuffered();
  }

  private resetExchange(): void {
    this.resStartedDownstream = false;
    this.clearResponseTimer();
    this.req = null;
    this.route = null;
    // (Recorded already: a later exchange on this connection must not end this span again.)
    this.traceSpan = null;
    this.res = null;
    this.reqDecoder = null;
    this.reqState = REQ_IDLE;
    this.up.reset();
    this.retried = false;
    this.rule.reset();
    this.bytesIn = 0;
    this.bytesOut = 0;
  }

  /** The workload at the other end (DescribedExchange): the client, or the endpoint picked outbound. */
  get peerSeries(): PeerSeries {
    return this.inboundPeer ?? this.ctx.metrics.peers.outbound(this.up.endpoint);
  }

  /** The route rule that forwarded the exchange (DescribedExchange), null: none. */
  get matchedRoute(): CompiledRule | null {
    return this.rule.matched;
  }

  private record(status: number, failed: boolean, error?: ProxyErrorReason): void {
    this.recordedStatus = status;
    this.recordedError = error;
    recordExchange(this.ctx, this.ctx.direction, 'http1', status, this.latencyMs, failed, this);
    this.rule.series?.record(this.latencyMs, status, failed, isTimeoutReason(error));
  }

  accessLogEntry(): AccessLogEntry {
    const req = this.req;
    const status = this.recordedStatus;
    const error = this.recordedError;
    return {
      ts: Date.now(),
      direction: this.ctx.direction,
      protocol: 'http1',
      method: req?.method ?? '',
      authority: req?.host ?? '',
      path: this.route?.path ?? req?.target ?? '',
      status,
      durationMs: performance.now() - this.startedAt,
      bytesIn: this.bytesIn,
      bytesOut: this.bytesOut,
      peer: `${this.socket.remoteAddress ?? ''}:${this.socket.remotePort ?? ''}`,
      ...(error !== undefined ? { error } : {}),
    };
  }

  /** accessLogEntry's request facts for the exchange's span (DescribedExchange.describeRequest). */
  describeRequest(out: RequestFacts): void {
    const req = this.req;
    out.direction = this.ctx.direction;
    out.protocol = 'http1';
    out.method = req?.method ?? '';
    out.authority = req?.host ?? '';
    out.path = this.route?.path ?? req?.target ?? '';
    out.error = this.recordedError;
  }

  /** A live tap's view of the other side: the client inbound, the picked endpoint outbound. */
  tapPeer(): TapPeer {
    if (this.ctx.direction === 'inbound') {
      const s = this.socket;
      return { address: `${s.remoteAddress ?? ''}:${s.remotePort ?? ''}`, identity: this.peerIdentity };
    }
    return endpointTapPeer(this.up.lastPick);
  }

  // ---- errors the proxy answers itself -----------------------------------------------------

  /** Answers with a response the proxy makes up; the exchange ends, and so (usually) the connection. */
  private replyError(
    reason: ProxyErrorReason,
    message: string,
    status = statusForReason(reason),
    headerValue: string = reason,
  ): void {
    const ctx = this.ctx;
    ctx.metrics.proxyError(ctx.direction, reason);
    // A request refused before it was forwarded still gets its span when it is sampled.
    if (ctx.tracer != null && this.traceSpan === null && this.req !== null)
      this.startSpan(ctx.tracer, this.req);
    if (countsAgainstEndpoint(reason)) this.up.blame(); // the circuit breaker's verdict
    if (ctx.log.enabled('debug'))
      ctx.log.debug('proxy error response', { reason, message, direction: ctx.direction });
    // Keep the connection only when the request was read whole and parsed cleanly.
    const clean = reason !== 'bad-request' && reason !== 'request-header-too-large';
    this.answer(status, clean, reason, (close) => errorResponse(reason, message, close, status, headerValue));
  }

  /** A route's RequestRedirect: the proxy answers with the redirect (routes.ts). */
  private replyRedirect(status: number, location: string): void {
    const ctx = this.ctx;
    // A sampled request gets its span, as an error answered here does (replyError).
    if (ctx.tracer != null && this.traceSpan === null && this.req !== null)
      this.startSpan(ctx.tracer, this.req);
    this.answer(status, true, undefined, (close) =>
      Buffer.from(
        `HTTP/1.1 ${status} ${reasonPhrase(status)}\r\nLocation: ${location}\r\nContent-Length: 0\r\n` +
          (close ? 'Connection: close\r\n' : '') +
          '\r\n',
        'latin1',
      ),
    );
  }

  /**
   * Ends the exchange with a response the proxy makes itself (`response(close)`), recorded as
   * failed when it has a reason; the connection is kept when the request was read whole and
   * `clean`, else ended.
   */
  private answer(
    status: number,
    clean: boolean,
    reason: ProxyErrorReason | undefined,
    response: (close: boolean) => Buffer,
  ): void {
    this.latencyMs = performance.now() - this.startedAt;
    if (this.resStartedDownstream) {
      this.socket.destroy();
      return;
    }
    const keep = this.reqState === REQ_DONE && !this.closeAfterResponse && clean;
    if (!keep) this.closeAfterResponse = true;
    this.socket.write(response(!keep));
    this.res = null;
    this.record(status, reason !== undefined, reason);
    this.up.drop();
    const bodyCut = this.reqState === REQ_BODY;
    this.resetExchange();
    this.buf = null;
    if (bodyCut) this.armIdleTimer();
    if (keep) {
      this.ctx.connectionIdle(this.socket);
      if (this.socket.isPaused()) this.socket.resume();
    } else this.endConnection();
  }

  /**
   * Ends the connection after what was written. Whatever the client still sends is read and
   * dropped: the rest of a body the upstream did not wait for, or bytes after a malformed one,
   * must never be parsed as a request (that would smuggle it past whoever framed the first one).
   * Reading on (rather than destroying) lets the response reach the client instead of a reset.
   */
  private endConnection(): void {
    this.ending = true;
    this.buf = null;
    this.clearHeadTimer();
    if (this.socket.isPaused()) this.socket.resume();
    this.socket.end();
  }

  // ---- the tunnel's hand-over (h1-tunnel.ts) ----------------------------------------------

  isClosed(): boolean {
    return this.closed;
  }

  refuse(reason: ProxyErrorReason, message: string): void {
    this.replyError(reason, message);
  }

  awaitTunnel(): void {
    this.reqState = REQ_CONNECTING;
  }

  handOver(status: number): Buffer | null {
    const rest = this.buf;
    this.latencyMs = performance.now() - this.startedAt;
    this.record(status, false);
    this.detach();
    return rest;
  }

  /** The upstream answered 101 to an Upgrade: the two connections become a tunnel. */
  private upgrade(head: MessageHead): void {
    const taken = this.up.takeForTunnel();
    if (taken === null) {
      this.replyError('upstream-bad-response', 'a 101 response from an upstream that is not a byte stream');
      return;
    }
    const route = this.route;
    const watch =
      route === null
        ? null
        : {
            port: route.target.port,
            identity: this.peerIdentity,
            method: this.req!.method,
            path: route.path,
          };
    startUpgrade(this.ctx, this, this.socket, taken.socket, head, taken.rest, watch);
  }

  /** Stops this session from handling the socket (it is handed to a tunnel). */
  private detach(): void {
    this.closed = true;
    this.clearHeadTimer();
    this.clearResponseTimer();
    this.rule.releaseBody();
    const s = this.socket;
    s.removeAllListeners('data');
    s.removeAllListeners('end');
    s.removeAllListeners('drain');
    s.removeAllListeners('timeout');
    s.removeAllListeners('close');
    s.setTimeout(0);
    this.ctx.sessionClosed(this);
    this.buf = null;
  }

  // ---- timers and closing ------------------------------------------------------------------

  private onHeadTimeout(): void {
    this.headTimer = null;
    if (this.reqState !== REQ_IDLE || this.closed) return;
    this.ctx.metrics.proxyError(this.ctx.direction, 'idle-timeout');
    this.ending = true;
    this.buf = null;
    this.socket.end(errorResponse('idle-timeout', 'request head not received in time', true, 408));
    this.socket.destroySoon();
  }

  private onIdleTimeout(): void {
    if (this.reqState === REQ_BODY && !this.socket.isPaused()) {
      // The client stopped sending its request body (and it is not us holding it back).
      this.replyError('idle-timeout', 'request body not received in time', 408);
      return;
    }
    const idle = this.reqState === REQ_IDLE && this.up.state === RES_NONE;
    // A client that half-closed after its request (what an HTTP client that gives up on a hung
    // upstream does), with nothing moving either way for idleMs, is idle too: else the exchange,
    // its upstream stream and a body kept for a retry were held for as long as the upstream said
    // nothing, forever, and such connections are never shed as idle.
    const abandoned = this.clientEnded && this.reqState === REQ_DONE;
    if (!idle && !abandoned) return; // busy
    this.ctx.metrics.proxyError(this.ctx.direction, 'idle-timeout');
    this.socket.destroy();
  }

  private onResponseTimeout(): void {
    this.responseTimer = null;
    if (this.up.state !== RES_HEAD) return;
    let reason = this.rule.timeoutReason;
    if (reason !== 'request-timeout') {
      const retried = this.retryAttempt({ timedOut: true });
      if (retried === true) return;
      // No time is left for another attempt: the request's own timeout is what ran out.
      if (retried === 'deadline') reason = 'request-timeout';
    }
    this.replyError(reason, timeoutMessage(reason, this.rule.timeouts));
  }

  /**
   * A route's timeout ran out while the response body was still coming: the head went out, so the
   * only signal left is to close both connections (as for an upstream that broke off mid-body).
   */
  private onResponseBodyTimeout(reason: TimeoutReason): void {
    this.responseTimer = null;
    if (this.closed || this.res === null) return;
    this.ctx.metrics.proxyError(this.ctx.direction, reason);
    this.ctx.log.debug('response cut off', { reason: bodyTimeoutMessage(reason, this.rule.timeouts) });
    this.up.drop();
    this.record(this.res.status, true, reason);
    this.socket.destroy();
  }

  private clearHeadTimer(): void {
    if (this.headTimer !== null) {
      clearTimeout(this.headTimer);
      this.headTimer = null;
    }
  }

  private clearResponseTimer(): void {
    if (this.responseTimer !== null) {
      clearTimeout(this.responseTimer);
      this.responseTimer = null;
    }
  }

  private onDownstreamEnd(): void {
    // Half-close from the client: finish what is in flight, then close.
    this.clientEnded = true;
    if (this.reqState === REQ_IDLE && this.up.state === RES_NONE) this.endConnection();
    else if (this.reqState === REQ_CONNECTING && (this.reqChunked || this.reqRemaining > 0)) {
      // The body may be whole in this.buf already (sent with its FIN in one write): whether it is
      // is known once it has gone to the upstream.
      this.endedBeforeBody = true;
      this.closeAfterResponse = true;
    } else if (this.reqState === REQ_BODY) this.refuseCutBody();
    else this.closeAfterResponse = true;
  }

  /**
   * A request body that can never be completed: nothing more can come, and the upstream would wait
   * for the rest until its own timeout while both connections stay open.
   */
  private refuseCutBody(): void {
    this.replyError('bad-request', 'the client closed its side before the request body was complete');
  }

  /** The socket's inactivity timer while a request body arrives. */
  private armBodyTimer(): void {
    const ms = this.ctx.requestBodyIdleMs;
    if (ms > 0) this.socket.setTimeout(ms);
  }

  /** The socket's inactivity timer otherwise (idle keep-alive connections). */
  private armIdleTimer(): void {
    this.socket.setTimeout(this.ctx.idleTimeoutMs > 0 ? this.ctx.idleTimeoutMs : 0);
  }

  private onDownstreamClose(): void {
    if (this.closed) return;
    this.closed = true;
    this.clearHeadTimer();
    this.clearResponseTimer();
    this.rule.cancelTimers();
    this.rule.releaseBody();
    this.up.releasePick();
    this.up.drop();
    this.ctx.sessionClosed(this);
  }
}

/** RFC 9110 9.2.2: methods a proxy may repeat when the first attempt's outcome is unknown. */
function isIdempotent(method: string): boolean {
  switch (method) {
    case 'GET':
    case 'HEAD':
    case 'OPTIONS':
    case 'TRACE':
    case 'PUT':
    case 'DELETE':
      return true;
    default:
      return false;
  }
}
