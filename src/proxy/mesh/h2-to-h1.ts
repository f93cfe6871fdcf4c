// The inbound half of "HTTP/1 between proxies travels as HTTP/2": a stream of the own HTTP/2
// connection (src/proxy/h2/, ALPN trellis-h2h1/1; inbound-h2h1.ts) goes to the app as an HTTP/1.1
// request on a pooled keep-alive connection (the same UpstreamPool as the inbound HTTP/1 path),
// and the app's HTTP/1.1 response, read by that connection (http/upstream-conn.ts: the same
// response reader as the outbound HTTP/1 path's), comes back on it.
//
// The request is written in one form: :authority as Host, connection-specific fields dropped, the
// body as Content-Length when the stream declared one (else chunked; none when the stream ended
// with its headers). Response fields that belong to the HTTP/1 connection are dropped; the body is
// streamed with backpressure both ways (stream writes that do not fit pause the app's socket, a
// full app socket pauses the stream, and HTTP/2 flow control carries that to the peer proxy).
//
// A stream costs at most one app connection, and the app at most APP_CONNECTION_LIMIT of them
// at once: more streams wait for one (bounded), then get 503 upstream-busy. A stream the peer
// cancels after its request went to the app leaves the connection reading the app's answer,
// dropped, within a bound, and then goes back to the pool: cancelling streams by the thousand
// (rapid reset) must not open (and leave in TIME-WAIT) a new app connection each.
import { performance } from 'node:perf_hooks';
import type { Logger } from '../../core/log.ts';
import type { ConnectFailureReason, ProxyErrorReason } from '../errors.ts';
import type { H1Limits, MessageHead } from '../http/h1-parser.ts';
import { proxyErrorResponse } from '../http/h2-headers.ts';
import type { H1ResponseSink, ResponseBodyKind } from '../http/h1-upstream.ts';
import type { HostLimit, UpstreamPool } from '../http/upstream-pool.ts';
import type { UpstreamConn } from '../http/upstream-conn.ts';
import { ErrorCode } from '../h2/frames.ts';
import type { H2Stream, H2StreamHandler } from '../h2/stream.ts';
import type { ProxyMetrics } from '../telemetry/metrics.ts';
import { reportFault } from '../fault.ts';
import type { AccessLog, AccessLogEntry } from '../telemetry/access-log.ts';
import { recordExchange, type DescribedExchange, type TapPeer } from '../telemetry/exchange-record.ts';
import type { PeerSeries } from '../telemetry/peer-metrics.ts';
import type { Target } from '../../core/target.ts';
import type { RequestFacts, Tracer } from '../telemetry/trace-tracer.ts';
import type { TraceSpan } from '../telemetry/trace-span.ts';
import { checkFields } from '../h2/fields.ts';
import { fieldValue, h1RequestHead, h2ResponseFields, trailerFields as parseTrailers } from './h1-fields.ts';

/** Connections to one app at once, the streams that may wait for one, and for how long. */
export const APP_CONNECTION_LIMIT: HostLimit = { maxConnections: 256, maxWaiting: 1024, waitTimeoutMs: 5000 };
/** A cancelled stream's response is read and dropped up to this many bytes, then its connection closed. */
export const ABANDONED_RESPONSE_MAX_BYTES = 256 * 1024;
/** ... and for at most this long. */
export const ABANDONED_RESPONSE_MAX_MS = 5000;

export interface BridgeContext {
  readonly pool: UpstreamPool;
  readonly limits: H1Limits;
  readonly metrics: Pick<
    ProxyMetrics,
    'requestStarted' | 'responseFinished' | 'proxyError' | 'h2LimitExceeded' | 'peers'
  >;
  readonly log: Logger;
  /** Where finished exchanges are logged (null: no access log). */
  readonly accessLog: AccessLog | null;
  /** Distributed tracing (null or absent: off). */
  readonly tracer?: Tracer | null;
  readonly responseTimeoutMs: number;
  /** The bound on connections to the app (default APP_CONNECTION_LIMIT). */
  readonly appLimit?: HostLimit;
}

export class H2ToH1Exchange implements H1ResponseSink, H2StreamHandler, DescribedExchange {
  private readonly ctx: BridgeContext;
  private readonly stream: H2Stream;
  private readonly fields: readonly string[];
  private readonly endAfterHeaders: boolean;
  private readonly method: string;
  /** Request body that came before the app connection was there. */
  private early: Buffer[] | null = null;
  private readonly startedAt = performance.now();
  private readonly startedWallMs = Date.now();
  /** The client: its verified identity (the access log's peer). */
  private readonly peer: string;
  private durationMs = 0;
  private bytesIn = 0;
  private bytesOut = 0;
  /** The reason of the answer the proxy made itself, if it did. */
  private failure: ProxyErrorReason | undefined = undefined;
  private conn: UpstreamConn | null = null;
  private chunkedUp = false;
  private remainingUp = 0;
  private requestDone = false;
  /** The response head went to the stream... */
  private responded = false;
  /** ...and ended it (a response without a body). */
  private endedWithHead = false;
  private responseDone = false;
  /** The app connection may carry another request (as far as the request side goes). */
  private reusable = true;
  private recorded = false;
  private requestEnded = false;
  private status = 0;
  private timer: NodeJS.Timeout | null = null;
  /** The stream closed while the app answers: the answer is read and dropped (bounded). */
  private abandoned = false;
  private discarded = 0;
  /** The exchange's span when it is traced (set before start; recordExchange ends it). */
  traceSpan: TraceSpan | null = null;
  /** The client's per-peer series (telemetry/peer-metrics.ts; set before start). */
  peerSeries: PeerSeries | null = null;
  /** The client's address, when the caller knows it (a live tap reports it). */
  clientAddress = '';

  constructor(
    ctx: BridgeContext,
    stream: H2Stream,
    fields: readonly string[],
    endAfterHeaders: boolean,
    peer = '',
  ) {
    this.ctx = ctx;
    this.peer = peer;
    this.stream = stream;
    this.fields = fields;
    this.endAfterHeaders = endAfterHeaders;
    this.method = fieldValue(fields, ':method') ?? 'GET';
  }

  start(target: Target): void {
    const { ctx, stream } = this;
    ctx.metrics.requestStarted('inbound', 'http1');
    stream.handler = this;
    const head = this.requestHead();
    if (head === null) {
      this.fail('bad-request', 'the request cannot be written as HTTP/1.1');
      return;
    }
    if (ctx.responseTimeoutMs > 0)
      this.timer = setTimeout(() => this.guardedTimeout(), ctx.responseTimeoutMs);
    if (!this.requestDone) {
      this.early = [];
      stream.pause(); // no window back for a body that cannot go anywhere yet
    }
    ctx.pool.acquireBounded(
      target,
      this,
      (conn, reason, err) => this.onAcquired(conn, reason, err, head),
      ctx.appLimit ?? APP_CONNECTION_LIMIT,
    );
  }

  /** The HTTP/1.1 request head (and how its body is framed), or null when it cannot be written. */
  private requestHead(): string | null {
    const head = h1RequestHead(this.fields, this.endAfterHeaders);
    if (head === null) return null;
    this.chunkedUp = head.chunked;
    this.remainingUp = head.length;
    this.requestDone = head.bodyless;
    return head.text;
  }

  private onAcquired(
    conn: UpstreamConn | null,
    reason: ConnectFailureReason | 'upstream-busy' | null,
    err: Error | undefined,
    head: string,
  ): void {
    if (this.stream.closed) {
      conn?.release();
      return;
    }
    if (conn === null) {
      this.fail(reason ?? 'connect-failed', `app connect failed${err ? `: ${err.message}` : ''}`);
      return;
    }
    this.conn = conn;
    // (With a body to follow, the head and its first bytes leave in one write.)
    conn.startWritten(head, this.method, !this.requestDone, this);
    const early = this.early;
    this.early = null;
    this.stream.resume();
    if (early !== null) for (const chunk of early) this.onRequestData(chunk);
    if (this.requestEnded) this.onRequestEnd();
  }

  // ---- the stream (H2StreamHandler) --------------------------------------------------------

  onHeaders(_trailers: string[], endStream: boolean): void {
    // Request trailers are not carried to an HTTP/1.1 app (its body is sent with Content-Length
    // or chunked without a trailer section); their end is the request's end.
    if (endStream) this.onData(EMPTY, true);
  }

  onData(chunk: Buffer, endStream: boolean): void {
    this.bytesIn += chunk.length;
    if (chunk.length > 0) {
      if (this.early !== null) this.early.push(chunk);
      else this.onRequestData(chunk);
    }
    if (!endStream) return;
    this.requestEnded = true;
    if (this.early === null) this.onRequestEnd();
  }

  onClose(): void {
    this.onStreamClose();
  }

  onDrain(): void {
    this.conn?.resume();
  }

  private onRequestData(chunk: Buffer): void {
    const conn = this.conn;
    if (conn === null || this.requestDone) return;
    let ok: boolean;
    if (this.chunkedUp) ok = conn.writeChunk(chunk);
    else {
      if (chunk.length > this.remainingUp) {
        // More body than the stream declared: never let the app see it.
        this.closeAppConnection();
        this.stream.reset(ErrorCode.PROTOCOL_ERROR);
        return;
      }
      this.remainingUp -= chunk.length;
      ok = conn.writeBody(chunk);
    }
    if (!ok) this.stream.pause();
  }

  private onRequestEnd(): void {
    const conn = this.conn;
    if (conn === null || this.requestDone) return;
    if (this.chunkedUp) conn.endChunks(EMPTY);
    else if (this.remainingUp !== 0) this.reusable = false; // short body: the app waits for more
    this.requestDone = true;
    this.finishIfDone();
  }

  // ---- the app's response, read by its connection (H1ResponseSink) ---------------------------

  onRequestDrain(): void {
    if (!this.requestDone) this.stream.resume();
  }

  onInterim(head: MessageHead): void {
    if (!this.responded) this.stream.sendHeaders([':status', String(head.status)], false);
  }

  onResponseHead(head: MessageHead, kind: ResponseBodyKind): boolean {
    if (head.status === 101) {
      this.fail('upstream-bad-response', 'an upgrade cannot cross HTTP/2');
      return false;
    }
    this.clearTimer();
    this.status = head.status;
    const out = h2ResponseFields(head, kind === 'length' || kind === 'none');
    const empty = kind === 'none' || (kind === 'length' && head.contentLength === 0);
    this.responded = true;
    this.endedWithHead = empty;
    this.stream.sendHeaders(out, empty);
    return true;
  }

  onResponseData(chunk: Buffer): void {
    this.writeDown(chunk);
  }

  onResponseEnd(trailers: Buffer): void {
    this.endResponse(trailers);
  }

  onBadResponse(message: string): void {
    this.conn = null; // (closed by itself)
    this.fail('upstream-bad-response', message);
  }

  onResponseBroken(): void {
    this.conn = null; // (closed by itself)
    this.reusable = false;
    this.ctx.metrics.proxyError('inbound', 'upstream-bad-response');
    this.stream.reset(ErrorCode.INTERNAL_ERROR);
  }

  onUpstreamClosed(): void {
    this.conn = null;
    if (this.responseDone) return;
    if (this.abandoned) {
      this.clearTimer(); // nobody waits for this answer any more
      return;
    }
    if (!this.responded) this.fail('upstream-reset', 'the app closed the connection before responding');
    else {
      this.ctx.metrics.proxyError('inbound', 'upstream-reset');
      this.stream.reset(ErrorCode.INTERNAL_ERROR);
    }
  }

  private writeDown(chunk: Buffer): void {
    this.bytesOut += chunk.length;
    if (this.abandoned) {
      this.discarded += chunk.length;
      if (this.discarded > ABANDONED_RESPONSE_MAX_BYTES) this.closeAppConnection();
      return;
    }
    if (chunk.length === 0 || this.stream.write(chunk)) return;
    this.conn?.pause(); // onDrain resumes it
  }

  /** The response is over; a chunked response's trailer section goes on as trailers. */
  private endResponse(trailers: Buffer): void {
    if (this.responseDone) return;
    this.responseDone = true;
    if (!this.endedWithHead) {
      const fields = trailers.length === 0 ? null : trailerFields(trailers);
      if (fields !== null) this.stream.sendHeaders(fields, true);
      else this.stream.end();
    }
    this.finishIfDone();
  }

  /** Both directions are over: the app connection goes back to the pool (or is closed). */
  private finishIfDone(): void {
    if (!this.responseDone || !this.requestDone) return;
    if (this.abandoned) this.clearTimer();
    this.record(false);
    if (!this.reusable) return this.closeAppConnection();
    const conn = this.conn;
    this.conn = null;
    conn?.release();
  }

  private onStreamClose(): void {
    this.clearTimer();
    this.ctx.pool.cancel(this); // no connection is wanted any more (if it still waits for one)
    const conn = this.conn;
    if (conn !== null && !(this.responseDone && this.requestDone)) {
      // The peer reset the stream (or the session went away) mid-exchange. When the whole request
      // is with the app, its answer is read and dropped and the connection reused; otherwise (a
      // body half sent) the app waits for the rest, so the connection cannot be used again.
      if (this.requestDone && this.reusable) {
        this.abandoned = true;
        this.timer = setTimeout(() => this.guardedTimeout(), ABANDONED_RESPONSE_MAX_MS);
        conn.resume(); // (paused by a full stream)
      } else this.closeAppConnection();
    }
    this.record(!this.responseDone);
  }

  /**
   * Closes the app connection, never to be reused: a dropped answer too long (or too slow), or a
   * request body cut short.
   */
  private closeAppConnection(): void {
    this.clearTimer();
    this.reusable = false;
    const conn = this.conn;
    this.conn = null;
    conn?.close();
  }

  /** The one timer: the response timeout, or the limit on reading an abandoned answer. */
  private guardedTimeout(): void {
    try {
      if (this.abandoned) this.closeAppConnection();
      else this.onTimeout();
    } catch (err) {
      this.fault('h2h1 timer', err);
    }
  }

  private onTimeout(): void {
    this.timer = null;
    if (this.responded) return;
    this.fail('response-timeout', 'the app did not respond in time');
  }

  /** Answers the stream with a response the proxy makes up (or resets it if too late). */
  private fail(reason: ProxyErrorReason, message: string): void {
    this.failure = reason;
    const { stream } = this;
    this.clearTimer();
    this.ctx.metrics.proxyError('inbound', reason);
    this.closeAppConnection();
    if (stream.closed) return;
    if (this.responded || stream.headersSent) {
      stream.reset(ErrorCode.INTERNAL_ERROR);
      return;
    }
    this.responded = true;
    this.responseDone = true;
    const response = proxyErrorResponse(reason, false, message);
    this.status = Number(response.headers[':status']);
    respondWhole(stream, response.headers, response.body);
  }

  /**
   * A fault of this exchange's own code (src/proxy/fault.ts): reported, the stream answered 500
   * (or reset once its response began) and the app connection closed; the other streams of the
   * connection go on.
   */
  fault(where: string, err: unknown): void {
    reportFault({ log: this.ctx.log, metrics: NO_COUNT, direction: 'inbound' }, where, err);
    try {
      this.fail('internal-error', 'internal error'); // counts the reason once
      this.record(true);
    } catch {
      if (!this.stream.closed) this.stream.reset(ErrorCode.INTERNAL_ERROR);
    }
  }

  private record(failed: boolean): void {
    if (this.recorded) return;
    this.recorded = true;
    this.durationMs = performance.now() - this.startedAt;
    recordExchange(this.ctx, 'inbound', 'http1', this.status, this.durationMs, failed, this);
  }

  /** A live tap's view of the client: its address and verified identity. */
  tapPeer(): TapPeer {
    return { address: this.clientAddress, identity: this.peer === '' ? null : this.peer };
  }

  accessLogEntry(): AccessLogEntry {
    const fields = this.fields;
    return {
      ts: this.startedWallMs,
      direction: 'inbound',
      protocol: 'http1',
      method: this.method,
      authority: fieldValue(fields, ':authority') ?? '',
      path: fieldValue(fields, ':path') ?? '',
      status: this.status,
      durationMs: this.durationMs,
      bytesIn: this.bytesIn,
      bytesOut: this.bytesOut,
      peer: this.peer,
      ...(this.failure !== undefined ? { error: this.failure } : {}),
    };
  }

  /** accessLogEntry's request facts for the exchange's span (DescribedExchange.describeRequest). */
  describeRequest(out: RequestFacts): void {
    out.direction = 'inbound';
    out.protocol = 'http1';
    out.method = this.method;
    out.authority = fieldValue(this.fields, ':authority') ?? '';
    out.path = fieldValue(this.fields, ':path') ?? '';
    out.error = this.failure;
  }

  private clearTimer(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }
}

const EMPTY = Buffer.alloc(0);

/** fail() counts the exchange's internal-error; the fault report does not count it again. */
const NO_COUNT = { proxyError: () => {} };

/**
 * A whole response the proxy makes up. The request body is not waited for: once the response is
 * out, a stream whose request is still open is closed with NO_ERROR (RFC 9113 8.1).
 */
export function respondWhole(
  stream: H2Stream,
  headers: Record<string, string | number | string[] | undefined>,
  body: Buffer | string | null,
): void {
  const fields: string[] = [':status', String(headers[':status'])];
  for (const name of Object.keys(headers)) {
    if (name.charCodeAt(0) === 0x3a) continue;
    const v = headers[name];
    if (v === undefined) continue;
    if (Array.isArray(v)) for (const x of v) fields.push(name, x);
    else fields.push(name, String(v));
  }
  if (body === null || body.length === 0) stream.sendHeaders(fields, true);
  else {
    stream.sendHeaders(fields, false);
    stream.write(typeof body === 'string' ? Buffer.from(body) : body, true);
  }
  if (!stream.remoteEnded) stream.reset(ErrorCode.NO_ERROR);
}

/** HTTP/2 trailers for an HTTP/1 trailer section, or null when it has none HTTP/2 may carry. */
function trailerFields(block: Buffer): string[] | null {
  const fields = parseTrailers(block.toString('latin1'));
  return fields.length > 0 && checkFields(fields, 'trailers') === null ? fields : null;
}
