// The outbound half of "HTTP/1 between proxies travels as HTTP/2": a virtual upstream connection
// that the HTTP/1 client side (http/h1-client.ts) holds like a pooled socket. The client hands it
// each request head it parsed (http/direct-upstream.ts), and it opens one HTTP/2 stream per
// request on the pooled mTLS connection to the endpoint (ALPN trellis-h2h1/1, Host as
// :authority, connection-specific fields dropped). A request body arrives through the write
// side as HTTP/1 body bytes (Content-Length bytes or chunked) and goes out as DATA. The response
// goes back to the client side as a parsed head (Content-Length when the peer sent one, else a
// body that ends with the stream, with trailers) plus body chunks, so the HEAD/204/304, keep-alive
// and client framing rules apply as to any upstream, in one place, without a serialize/parse
// round trip per request.
//
// Backpressure: a write is acknowledged only once the stream sent it (its flow-control window had
// room); the client side's pause() of this connection stops giving window back to the peer for the
// response (HTTP/2 flow control then stops it: at most one window arrives meanwhile).
//
// The streams are the project's own (src/proxy/h2/, ALPN trellis-h2h1/1): a stream is a handler
// object here, not a Duplex, and a warm connection takes it synchronously.
import { Duplex } from 'node:stream';
import type { H1Limits, MessageHead } from '../http/h1-parser.ts';
import type { RequestLine } from '../http/h1-serialize.ts';
import { ChunkedDecoder, type ChunkSink } from '../http/chunked.ts';
import { UnprocessedError, type DirectResponseSink, type DirectUpstream } from '../http/direct-upstream.ts';
import { ErrorCode } from '../h2/frames.ts';
import type { H2Stream, H2StreamHandler } from '../h2/stream.ts';
import type { Target } from '../../core/target.ts';
import { fieldLines, fieldValue, requestFieldsFor, responseMessageHead } from './h1-fields.ts';
import { MeshH2Pool } from './h2h1-pool.ts';

const CONTINUE_HEAD = responseMessageHead(100, [], 'none', 0, null);
const CONTENT_LENGTH_0 = ['content-length', '0'] as const;
const DECIMAL = /^\d{1,15}$/;

/** One request/response exchange on the connection: the handler of its stream. */
class Exchange implements H2StreamHandler {
  readonly conn: H1OverH2Conn;
  readonly method: string;
  readonly sink: DirectResponseSink;
  stream: H2Stream | null = null;
  remaining: number;
  readonly decoder: ChunkedDecoder | null;
  /** The final response head arrived. */
  final = false;
  /** The response body ends with the stream (no Content-Length): the sink is told its end. */
  open = false;
  trailers: string[] | null = null;
  /** The whole response was delivered. */
  done = false;
  /** A body write that came before the stream was there (it is being opened): acknowledged once sent. */
  early: { readonly chunk: Buffer; readonly cb: (err?: Error | null) => void } | null = null;
  /** The acknowledgement of a body write that waits for window. */
  drained: (() => void) | null = null;

  constructor(
    conn: H1OverH2Conn,
    method: string,
    sink: DirectResponseSink,
    remaining: number,
    decoder: ChunkedDecoder | null,
  ) {
    this.conn = conn;
    this.method = method;
    this.sink = sink;
    this.remaining = remaining;
    this.decoder = decoder;
  }

  onHeaders(fields: string[], endStream: boolean): void {
    if (this.conn.active !== this) return;
    if (this.final) {
      this.trailers = fields;
      if (endStream) this.ended();
      return;
    }
    const status = Number(fields[1]);
    if (status < 200) {
      if (status === 100) this.sink.onDirectHead(CONTINUE_HEAD);
      else if (status > 100) this.sink.onDirectHead(responseMessageHead(status, fields, 'none', 0, null));
      return;
    }
    this.final = true;
    const declared = fieldValue(fields, 'content-length');
    let head: MessageHead;
    if (this.method === 'HEAD' || status === 204 || status === 304) {
      head = responseMessageHead(status, fields, 'none', 0, null);
    } else if (declared !== undefined) {
      if (!DECIMAL.test(declared)) {
        this.conn.destroy(new Error(`bad content-length in the HTTP/2 response: ${declared}`));
        return;
      }
      head = responseMessageHead(status, fields, 'length', Number(declared), null);
    } else if (endStream) head = responseMessageHead(status, fields, 'length', 0, CONTENT_LENGTH_0);
    else {
      head = responseMessageHead(status, fields, 'chunked', 0, null);
      this.open = true;
    }
    // Bodyless responses are complete at their head: the session may reuse this connection at
    // once, so the exchange is over before the sink hears of it (it may start the next one).
    if (!this.open && (endStream || head.bodyKind === 'none')) this.done = true;
    this.sink.onDirectHead(head);
  }

  onData(chunk: Buffer, endStream: boolean): void {
    if (this.conn.active !== this) return;
    if (chunk.length > 0) this.sink.onUpstreamData(chunk);
    if (endStream) this.ended();
  }

  private ended(): void {
    if (this.conn.active !== this || this.done) return;
    this.done = true;
    if (this.open) this.sink.onDirectEnd(Buffer.from(fieldLines(this.trailers), 'latin1'));
  }

  onClose(code: number | null): void {
    const d = this.drained;
    this.drained = null;
    d?.(); // (a closed stream takes no more body: nothing waits on it)
    this.conn.exchangeClosed(this, code);
  }

  onDrain(): void {
    const d = this.drained;
    this.drained = null;
    d?.();
  }
}

export class H1OverH2Conn extends Duplex implements DirectUpstream {
  readonly directH1 = true as const;
  private readonly pool: MeshH2Pool;
  private readonly address: Target;
  private readonly identity: string;
  /** MeshH2Pool.keyOf(address, identity), made once rather than per request. */
  private readonly poolKey: string;
  private readonly limits: H1Limits;
  /** The exchange whose request is being written (and whose response is being read). */
  active: Exchange | null = null;
  /** The active exchange's request was written whole: a write now is a protocol error. */
  private requestComplete = true;
  private readonly bodySink: ChunkSink;
  private bodyWriteOk = true;

  constructor(pool: MeshH2Pool, address: Target, identity: string, limits: H1Limits) {
    super({ allowHalfOpen: true, decodeStrings: true });
    this.pool = pool;
    this.address = address;
    this.identity = identity;
    this.poolKey = MeshH2Pool.keyOf(address, identity);
    this.limits = limits;
    this.bodySink = {
      data: (chunk) => {
        const stream = this.active?.stream;
        if (stream != null && !stream.write(chunk)) this.bodyWriteOk = false;
      },
      end: () => {
        this.requestComplete = true;
        this.active?.stream?.end();
      },
    };
  }

  startRequest(head: MessageHead, line: RequestLine, chunked: boolean, sink: DirectResponseSink): void {
    const remaining = !chunked && head.bodyKind === 'length' ? head.contentLength : 0;
    const ex = new Exchange(
      this,
      line.method,
      sink,
      remaining,
      chunked ? new ChunkedDecoder(this.limits) : null,
    );
    // The previous exchange is over for the session; a stream of it that a full buffer paused
    // must still take its window back, or its peer would wait on it.
    this.active?.stream?.resume();
    this.active = ex;
    const endStream = ex.decoder === null && ex.remaining === 0;
    this.requestComplete = endStream;
    const fields = requestFieldsFor(head, line);
    // A warm connection takes the stream synchronously; otherwise wait for one (connect, or room).
    const now = this.pool.requestNow(this.poolKey, fields, endStream, ex);
    if (now !== null) {
      this.attach(ex, now);
      return;
    }
    this.pool.connection(
      this.address,
      this.identity,
      (conn, _reason, err) => {
        if (this.active !== ex || this.destroyed) return;
        const stream = conn?.request(fields, endStream, ex) ?? null;
        if (stream === null) {
          this.destroy(err ?? new Error('no HTTP/2 connection to the endpoint'));
          return;
        }
        this.attach(ex, stream);
      },
      this.poolKey,
    );
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    const ex = this.active;
    if (ex === null || this.requestComplete) {
      cb(new Error('request body bytes without a request (or after its end)'));
      return;
    }
    if (ex.stream === null) {
      // The stream is being opened: the body waits, unacknowledged, so the session stops reading
      // the client meanwhile (one write at a time is in flight).
      ex.early = { chunk, cb };
      return;
    }
    this.writeBody(ex, ex.stream, chunk, cb);
  }

  override _read(): void {
    // Nothing is pushed: the response goes to the exchange's sink (see pause/resume).
  }

  override pause(): this {
    this.active?.stream?.pause();
    return super.pause();
  }

  override resume(): this {
    this.active?.stream?.resume();
    return super.resume();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    const ex = this.active;
    this.active = null;
    if (ex !== null && !ex.done) ex.stream?.reset(ErrorCode.CANCEL);
    cb(err);
  }

  /** The exchange's stream closed: a response cut short fails this connection like a reset. */
  exchangeClosed(ex: Exchange, code: number | null): void {
    if (this.active !== ex) return;
    if (!ex.done) {
      // Reset, or the connection failed under it: the HTTP/1 session sees this connection close
      // (502, or one re-send of an idempotent request) as with a plain upstream. A stream the
      // peer refused was never processed: the session may re-send it whatever its method.
      const message = `HTTP/2 stream closed (code ${code ?? 'none'}) before the response ended`;
      this.destroy(code === ErrorCode.REFUSED_STREAM ? new UnprocessedError(message) : new Error(message));
      return;
    }
    if (this.requestComplete) this.active = null;
  }

  private writeBody(ex: Exchange, stream: H2Stream, chunk: Buffer, cb: (err?: Error | null) => void): void {
    this.bodyWriteOk = true;
    if (ex.decoder !== null) {
      if (ex.decoder.write(chunk, this.bodySink) < 0) {
        cb(new Error(ex.decoder.error ?? 'bad chunked body'));
        return;
      }
    } else {
      const used = Math.min(ex.remaining, chunk.length);
      ex.remaining -= used;
      const last = ex.remaining === 0;
      if (last) this.requestComplete = true;
      if (used > 0 && !stream.write(used === chunk.length ? chunk : chunk.subarray(0, used), last))
        this.bodyWriteOk = false;
      else if (used === 0 && last) stream.end();
    }
    // (An ended or closed stream waits for nothing: the request is complete.)
    if (this.bodyWriteOk || stream.closed) cb();
    else ex.drained = () => cb();
  }

  private attach(ex: Exchange, stream: H2Stream): void {
    ex.stream = stream;
    const early = ex.early;
    if (early !== null) {
      ex.early = null;
      this.writeBody(ex, stream, early.chunk, early.cb);
    }
  }
}
