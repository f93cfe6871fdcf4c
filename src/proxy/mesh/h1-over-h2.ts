// The outbound half of "HTTP/1 between proxies travels as HTTP/2": a virtual upstream connection
// that the HTTP/1 session (http/h1-session.ts) holds like a pooled socket. The session hands it
// each request head it parsed (http/direct-upstream.ts), and it opens one HTTP/2 stream per
// request on the pooled mTLS session to the endpoint (marked `trellis-orig-proto: HTTP/1.1`, Host
// as :authority, connection-specific fields dropped). A request body arrives through the write
// side as HTTP/1 body bytes (Content-Length bytes or chunked) and goes out as DATA. The response
// goes back to the session as a parsed head (Content-Length when the peer sent one, else a body
// that ends with the stream, with trailers) plus body chunks, so the session applies the
// HEAD/204/304, keep-alive and client framing rules it applies to any upstream, in one place,
// without a serialize/parse round trip per request.
//
// Backpressure: a write is acknowledged only once the HTTP/2 stream accepted it; the session's
// pause()/resume() of this connection pause the stream (HTTP/2 flow control then stops the peer).
import { Duplex } from 'node:stream';
import * as http2 from 'node:http2';
import type { H1Limits, MessageHead } from '../http/h1-parser.ts';
import type { RequestLine } from '../http/h1-serialize.ts';
import { ChunkedDecoder, type ChunkSink } from '../http/chunked.ts';
import type { DirectResponseSink, DirectUpstream } from '../http/direct-upstream.ts';
import type { H2UpstreamPool } from '../http/h2-upstream-pool.ts';
import type { Target } from '../transport/target.ts';
import { fieldLines, requestHeadersFor, responseMessageHead } from './h1-fields.ts';

const { NGHTTP2_CANCEL, NGHTTP2_FLAG_END_STREAM } = http2.constants;
const CONTINUE_HEAD = responseMessageHead(100, {}, 'none', 0, null);
const CONTENT_LENGTH_0 = ['content-length', '0'] as const;
const DECIMAL = /^\d{1,15}$/;

/** One request/response exchange on the connection. */
interface Exchange {
  readonly method: string;
  readonly sink: DirectResponseSink;
  stream: http2.ClientHttp2Stream | null;
  remaining: number;
  decoder: ChunkedDecoder | null;
  /** The response body ends with the stream (no Content-Length): the sink is told its end. */
  open: boolean;
  trailers: http2.IncomingHttpHeaders | null;
  /** The whole response was delivered. */
  done: boolean;
  /** A body write that came before the stream was there (it is being opened): acknowledged once sent. */
  early: { readonly chunk: Buffer; readonly cb: (err?: Error | null) => void } | null;
}

export class H1OverH2Conn extends Duplex implements DirectUpstream {
  readonly directH1 = true as const;
  private readonly pool: H2UpstreamPool;
  private readonly address: Target;
  private readonly identity: string;
  private readonly limits: H1Limits;
  /** The exchange whose request is being written (and whose response is being read). */
  private active: Exchange | null = null;
  /** The active exchange's request was written whole: a write now is a protocol error. */
  private requestComplete = true;
  private readonly bodySink: ChunkSink;
  private bodyWriteOk = true;

  constructor(pool: H2UpstreamPool, address: Target, identity: string, limits: H1Limits) {
    super({ allowHalfOpen: true, decodeStrings: true });
    this.pool = pool;
    this.address = address;
    this.identity = identity;
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
    const ex: Exchange = {
      method: line.method,
      sink,
      stream: null,
      remaining: !chunked && head.bodyKind === 'length' ? head.contentLength : 0,
      decoder: chunked ? new ChunkedDecoder(this.limits) : null,
      open: false,
      trailers: null,
      done: false,
      early: null,
    };
    // The previous exchange is over for the session; a stream of it that a full buffer paused
    // must still reach its end (and close), or it would hold a slot of the HTTP/2 session.
    const prev = this.active?.stream;
    if (prev != null && prev.isPaused()) prev.resume();
    this.active = ex;
    const endStream = ex.decoder === null && ex.remaining === 0;
    this.requestComplete = endStream;
    let now: http2.ClientHttp2Stream | null;
    try {
      const headers = requestHeadersFor(head, line);
      // A warm session takes the stream synchronously; otherwise wait for one (connect, or room).
      now = this.pool.requestNow(this.address, headers, { endStream }, this.identity);
      if (now === null) {
        this.pool.request(this.address, headers, { endStream }, this.identity).then(
          ({ stream }) => {
            if (this.active !== ex || this.destroyed) {
              stream.close(NGHTTP2_CANCEL);
              return;
            }
            this.attach(ex, stream);
          },
          (err: unknown) => this.destroy(err instanceof Error ? err : new Error(String(err))),
        );
        return;
      }
    } catch (err) {
      this.destroy(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    this.attach(ex, now);
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
    const stream = this.active?.stream;
    if (stream != null && stream.isPaused()) stream.resume();
    return super.resume();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    const stream = this.active?.stream;
    if (stream != null && !stream.closed && !this.active!.done) stream.close(NGHTTP2_CANCEL);
    this.active = null;
    cb(err);
  }

  private writeBody(
    ex: Exchange,
    stream: http2.ClientHttp2Stream,
    chunk: Buffer,
    cb: (err?: Error | null) => void,
  ): void {
    this.bodyWriteOk = true;
    if (ex.decoder !== null) {
      if (ex.decoder.write(chunk, this.bodySink) < 0) {
        cb(new Error(ex.decoder.error ?? 'bad chunked body'));
        return;
      }
    } else {
      const used = Math.min(ex.remaining, chunk.length);
      if (used > 0 && !stream.write(used === chunk.length ? chunk : chunk.subarray(0, used)))
        this.bodyWriteOk = false;
      ex.remaining -= used;
      if (ex.remaining === 0) {
        this.requestComplete = true;
        stream.end();
      }
    }
    // (An ended stream emits no 'drain': the request is complete, nothing more waits on it.)
    if (this.bodyWriteOk || stream.destroyed || this.requestComplete) cb();
    else stream.once('drain', () => cb());
  }

  private attach(ex: Exchange, stream: http2.ClientHttp2Stream): void {
    ex.stream = stream;
    const early = ex.early;
    if (early !== null) {
      ex.early = null;
      this.writeBody(ex, stream, early.chunk, early.cb);
    }
    const method = ex.method;
    const sink = ex.sink;
    // (The pool's 'error' listener stays: the stream's close, with its code, is what matters.)
    stream.on('continue', () => {
      if (this.active === ex) sink.onDirectHead(CONTINUE_HEAD);
    });
    stream.on('headers', (headers: http2.IncomingHttpHeaders) => {
      const status = Number(headers[':status']);
      if (this.active === ex && status > 100 && status < 200)
        sink.onDirectHead(responseMessageHead(status, headers, 'none', 0, null));
    });
    stream.once('response', (headers: http2.IncomingHttpHeaders, flags: number) => {
      if (this.active !== ex) {
        stream.resume(); // nobody reads it: let it end and close
        return;
      }
      const status = Number(headers[':status']);
      const endStream = (flags & NGHTTP2_FLAG_END_STREAM) !== 0;
      const declared = headers['content-length'];
      let head: MessageHead;
      if (method === 'HEAD' || status === 204 || status === 304) {
        head = responseMessageHead(status, headers, 'none', 0, null);
      } else if (declared !== undefined) {
        if (!DECIMAL.test(declared)) {
          this.destroy(new Error(`bad content-length in the HTTP/2 response: ${declared}`));
          return;
        }
        head = responseMessageHead(status, headers, 'length', Number(declared), null);
      } else if (endStream) head = responseMessageHead(status, headers, 'length', 0, CONTENT_LENGTH_0);
      else {
        head = responseMessageHead(status, headers, 'chunked', 0, null);
        ex.open = true;
      }
      // Bodyless responses are complete at their head: the session may reuse this connection at
      // once, so the exchange is over before the sink hears of it (it may start the next one).
      if (!ex.open && (endStream || head.bodyKind === 'none')) ex.done = true;
      // The body is read only from here on: node:http2 emits 'response' on the next tick but
      // pushes a DATA frame that came in the same read at once, so a 'data' listener attached
      // earlier could see the body before the head. Attached before the sink hears of the head,
      // the buffered body flows on the next tick ahead of anything the sink schedules then (the
      // session corks the client socket until then: head and body leave in one write).
      stream.on('data', (chunk: Buffer) => {
        if (this.active === ex) sink.onUpstreamData(chunk);
      });
      sink.onDirectHead(head);
    });
    stream.on('trailers', (trailers: http2.IncomingHttpHeaders) => (ex.trailers = trailers));
    stream.once('end', () => {
      if (this.active !== ex || ex.done) return;
      ex.done = true;
      if (ex.open) sink.onDirectEnd(Buffer.from(fieldLines(ex.trailers), 'latin1'));
    });
    stream.once('close', () => {
      if (this.active !== ex) return;
      if (!ex.done) {
        // Reset, or the session failed under it: the HTTP/1 session sees this connection close
        // (502, or one re-send of an idempotent request) as with a plain upstream.
        this.destroy(
          new Error(`HTTP/2 stream closed (code ${stream.rstCode ?? 'none'}) before the response ended`),
        );
        return;
      }
      if (this.requestComplete) this.active = null;
    });
  }
}
