// The outbound half of "HTTP/1 between proxies travels as HTTP/2": the HTTP/1 client side's upstream
// (http/h1-upstream.ts H1Upstream) for a meshed endpoint. Each request opens one HTTP/2 stream on
// the pooled mTLS connection to the endpoint (ALPN trellis-h2h1/1, h2h1-pool.ts) from the head the
// session parsed (Host as :authority, connection-specific fields dropped); its body goes out as
// DATA, already decoded when it was chunked. The response goes back as a parsed head
// (Content-Length when the peer sent one, else a body that ends with the stream, with trailers)
// plus body chunks, so the HEAD/204/304, keep-alive and client framing rules apply as to any
// upstream, in one place, without a serialize/parse round trip per request.
//
// Backpressure: a body write returns false when the stream could not send it all (its
// flow-control window is full), and the sink hears onRequestDrain once it did; pause() stops
// giving window back to the peer for the response (HTTP/2 flow control then stops it: at most one
// window arrives meanwhile).
//
// A connection here holds no socket: it is one exchange at a time over the endpoint's pooled
// HTTP/2 connection. Released ones wait in their endpoint's idle list (mesh/outbound.ts, bounded)
// for the next request, so a warm request allocates its stream's handler and nothing else.
import type { MessageHead } from '../http/h1-parser.ts';
import type { RequestLine } from '../http/h1-serialize.ts';
import { UnprocessedError, type H1ResponseSink, type H1Upstream } from '../http/h1-upstream.ts';
import { ErrorCode } from '../h2/frames.ts';
import type { H2Stream, H2StreamHandler } from '../h2/stream.ts';
import type { Target } from '../../core/target.ts';
import { fieldLines, fieldValue, requestFieldsFor, responseMessageHead } from './h1-fields.ts';
import { MeshH2Pool } from './h2h1-pool.ts';

const CONTINUE_HEAD = responseMessageHead(100, [], 'none', 0, null);
const CONTENT_LENGTH_0 = ['content-length', '0'] as const;
const DECIMAL = /^\d{1,15}$/;
const NO_TRAILERS = Buffer.alloc(0);

/** One request/response exchange on the connection: the handler of its stream. */
class Exchange implements H2StreamHandler {
  readonly conn: H1OverH2Conn;
  readonly method: string;
  readonly sink: H1ResponseSink;
  stream: H2Stream | null = null;
  /** Request body bytes still to send by length (a chunked body is not counted). */
  remaining: number;
  readonly chunked: boolean;
  /** Body writes that came before the stream was there (it is being opened): sent once it is. */
  early: Buffer[] | null = null;
  /** The request body ended before the stream was there. */
  earlyEnd = false;
  /** A body write did not fit: the sink hears onRequestDrain when it was sent. */
  blocked = false;
  /** The final response head arrived. */
  final = false;
  /** The response body's length, counted down (-1: it ends with the stream, with its trailers). */
  resRemaining = -1;
  trailers: string[] | null = null;
  /** The whole response was delivered. */
  done = false;
  /** Its owner let go of the connection (release, close): a failure found later is not reported. */
  silenced = false;

  constructor(conn: H1OverH2Conn, method: string, sink: H1ResponseSink, remaining: number, chunked: boolean) {
    this.conn = conn;
    this.method = method;
    this.sink = sink;
    this.remaining = remaining;
    this.chunked = chunked;
  }

  onHeaders(fields: string[], endStream: boolean): void {
    if (this.conn.active !== this || this.done) return;
    if (this.final) {
      this.trailers = fields;
      if (endStream) this.ended();
      return;
    }
    const status = Number(fields[1]);
    if (status < 200) {
      if (status === 100) this.sink.onInterim(CONTINUE_HEAD);
      else if (status > 100) this.sink.onInterim(responseMessageHead(status, fields, 'none', 0, null));
      return;
    }
    this.final = true;
    const declared = fieldValue(fields, 'content-length');
    let head: MessageHead;
    if (this.method === 'HEAD' || status === 204 || status === 304) {
      head = responseMessageHead(status, fields, 'none', 0, null);
    } else if (declared !== undefined) {
      if (!DECIMAL.test(declared)) {
        this.conn.fail(this, new Error(`bad content-length in the HTTP/2 response: ${declared}`));
        return;
      }
      head = responseMessageHead(status, fields, 'length', Number(declared), null);
    } else if (endStream) head = responseMessageHead(status, fields, 'length', 0, CONTENT_LENGTH_0);
    else head = responseMessageHead(status, fields, 'chunked', 0, null);
    const bodyless = head.bodyKind === 'none' || (head.bodyKind === 'length' && head.contentLength === 0);
    // A bodyless response is complete at its head: the exchange is over before the sink hears
    // of it (it may release this connection and start the next exchange on it inside).
    if (bodyless) this.done = true;
    else if (head.bodyKind === 'length') this.resRemaining = head.contentLength;
    const sink = this.sink;
    // The body comes in a later tick (usually the next one, already received).
    if (!sink.onResponseHead(head, head.bodyKind, !bodyless) || !bodyless) return;
    sink.onResponseEnd(NO_TRAILERS);
  }

  onData(chunk: Buffer, endStream: boolean): void {
    if (this.conn.active !== this || this.done) return;
    if (this.resRemaining < 0) {
      if (chunk.length > 0) this.sink.onResponseData(chunk);
      if (endStream) this.ended();
      return;
    }
    // A body of a declared length ends with its last byte (more would be the peer's error: dropped).
    const used = Math.min(this.resRemaining, chunk.length);
    this.resRemaining -= used;
    if (used > 0) this.sink.onResponseData(used === chunk.length ? chunk : chunk.subarray(0, used));
    if (this.resRemaining === 0 && this.conn.active === this && !this.done) {
      this.done = true;
      this.sink.onResponseEnd(NO_TRAILERS);
    }
    // (A stream that ends short of the length closes undone: the connection fails, onClose.)
  }

  /** The peer ended the stream: a body that ends with it is whole. */
  private ended(): void {
    if (!this.final || this.resRemaining >= 0) return;
    this.done = true;
    this.sink.onResponseEnd(Buffer.from(fieldLines(this.trailers), 'latin1'));
  }

  onClose(code: number | null): void {
    this.conn.exchangeClosed(this, code);
  }

  onDrain(): void {
    if (!this.blocked || this.conn.active !== this) return;
    this.blocked = false;
    this.sink.onRequestDrain();
  }
}

export class H1OverH2Conn implements H1Upstream {
  private readonly pool: MeshH2Pool;
  private readonly address: Target;
  private readonly identity: string;
  /** MeshH2Pool.keyOf(address, identity), made once rather than per request. */
  private readonly poolKey: string;
  /** Where a released connection waits for its endpoint's next request, and how many may. */
  private readonly idle: H1OverH2Conn[];
  private readonly maxIdle: number;
  /** The exchange whose request is being written (and whose response is being read). */
  active: Exchange | null = null;
  /** The last exchange started (active, or failed and not yet reported). */
  private last: Exchange | null = null;
  /** The active exchange's request was written whole. */
  private requestComplete = true;
  /** Exchanges started; > 1 means the connection was reused. */
  private uses = 0;
  /** Closed: never used again. */
  private closed = false;

  constructor(pool: MeshH2Pool, address: Target, identity: string, idle: H1OverH2Conn[], maxIdle: number) {
    this.pool = pool;
    this.address = address;
    this.identity = identity;
    this.poolKey = MeshH2Pool.keyOf(address, identity);
    this.idle = idle;
    this.maxIdle = maxIdle;
  }

  start(head: MessageHead, line: RequestLine, chunked: boolean, sink: H1ResponseSink): void {
    const remaining = !chunked && head.bodyKind === 'length' ? head.contentLength : 0;
    const ex = new Exchange(this, line.method, sink, remaining, chunked);
    this.uses++;
    this.active = ex;
    this.last = ex;
    const endStream = !chunked && remaining === 0;
    this.requestComplete = endStream;
    const fields = requestFieldsFor(head, line);
    // A warm connection takes the stream synchronously; otherwise wait for one (connect, or room).
    const now = this.pool.requestNow(this.poolKey, fields, endStream, ex);
    if (now !== null) {
      ex.stream = now;
      return;
    }
    this.pool.connection(
      this.address,
      this.identity,
      (conn, _reason, err) => {
        if (this.active !== ex) return;
        const stream = conn?.request(fields, endStream, ex) ?? null;
        if (stream === null) this.fail(ex, err ?? new Error('no HTTP/2 connection to the endpoint'));
        else this.attach(ex, stream);
      },
      this.poolKey,
    );
  }

  writeBody(part: Buffer): boolean {
    const ex = this.active;
    if (ex === null || this.requestComplete) return true; // (nothing more belongs to the request)
    if (ex.stream === null) return this.holdEarly(ex, part);
    return this.sendBody(ex, ex.stream, part);
  }

  writeChunk(data: Buffer): boolean {
    return this.writeBody(data);
  }

  endChunks(_trailers: Buffer): void {
    // (Request trailers are not carried: the stream ends with its last DATA.)
    const ex = this.active;
    if (ex === null || this.requestComplete) return;
    this.requestComplete = true;
    if (ex.stream === null) ex.earlyEnd = true;
    else ex.stream.end();
  }

  pause(): void {
    this.active?.stream?.pause();
  }

  resume(): void {
    this.active?.stream?.resume();
  }

  release(): void {
    this.letGo();
    const ex = this.active;
    this.active = null;
    // The exchange is over; a stream of it that a full client paused must still take its window
    // back, or its peer would wait on it.
    ex?.stream?.resume();
    if (!this.closed && this.idle.length < this.maxIdle) this.idle.push(this);
  }

  close(): void {
    this.letGo();
    this.shut();
  }

  /** The owner has let go: nothing more of the last exchange reaches its sink. */
  private letGo(): void {
    const last = this.last;
    this.last = null;
    if (last !== null) last.silenced = true;
  }

  /** Closes the connection: the active exchange's stream is reset unless it is over. */
  private shut(): void {
    this.closed = true;
    const ex = this.active;
    this.active = null;
    if (ex !== null && (!ex.done || !this.requestComplete)) ex.stream?.reset(ErrorCode.CANCEL);
  }

  takeForTunnel(): null {
    return null; // (an Upgrade to a meshed endpoint goes over a byte connection of its own)
  }

  /** The exchange's stream closed: a response cut short fails this connection like a reset. */
  exchangeClosed(ex: Exchange, code: number | null): void {
    if (this.active !== ex) return;
    if (!ex.done) {
      // Reset, or the connection failed under it: the HTTP/1 session sees this connection close
      // (502, or one re-send of an idempotent request) as with a plain upstream. A stream the
      // peer refused was never processed: the session may re-send it whatever its method.
      const message = `HTTP/2 stream closed (code ${code ?? 'none'}) before the response ended`;
      this.fail(ex, code === ErrorCode.REFUSED_STREAM ? new UnprocessedError(message) : new Error(message));
      return;
    }
    if (this.requestComplete) this.active = null;
  }

  /**
   * The exchange failed: the connection closes and its sink hears so in a later tick (as of a
   * socket's close; never inside the HTTP/2 connection's own callback), unless its owner lets go
   * of the connection meanwhile.
   */
  fail(ex: Exchange, err: Error): void {
    this.shut();
    process.nextTick(upstreamClosed, ex, err, !ex.final, this.uses > 1);
  }

  private holdEarly(ex: Exchange, part: Buffer): boolean {
    // The stream is being opened: the body waits, and the session stops reading the client
    // until it went out (onRequestDrain).
    (ex.early ??= []).push(part);
    ex.blocked = true;
    return false;
  }

  private sendBody(ex: Exchange, stream: H2Stream, part: Buffer): boolean {
    let ok: boolean;
    if (ex.chunked) ok = stream.write(part);
    else {
      const used = Math.min(ex.remaining, part.length);
      ex.remaining -= used;
      const last = ex.remaining === 0;
      if (last) this.requestComplete = true;
      ok = used > 0 ? stream.write(used === part.length ? part : part.subarray(0, used), last) : true;
      if (used === 0 && last) stream.end();
    }
    // (An ended or closed stream waits for nothing: the request is complete.)
    if (ok || stream.closed) return true;
    ex.blocked = true;
    return false;
  }

  private attach(ex: Exchange, stream: H2Stream): void {
    ex.stream = stream;
    const early = ex.early;
    if (early === null && !ex.earlyEnd) return;
    ex.early = null;
    ex.blocked = false;
    let ok = true;
    if (early !== null) for (const part of early) ok = this.sendBody(ex, stream, part) && ok;
    if (ex.earlyEnd) stream.end();
    if (ok) ex.sink.onRequestDrain();
    else ex.blocked = true;
  }
}

function upstreamClosed(ex: Exchange, err: Error, beforeResponse: boolean, resendable: boolean): void {
  if (ex.silenced) return;
  try {
    ex.sink.onUpstreamClosed(err, beforeResponse, resendable || err instanceof UnprocessedError);
  } catch (e) {
    ex.sink.fault('h1 over h2 closed', e);
  }
}
