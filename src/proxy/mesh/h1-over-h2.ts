// The outbound half of "HTTP/1 between proxies travels as HTTP/2": a virtual upstream connection
// that the HTTP/1 session (http/h1-session.ts) uses exactly like a pooled socket. It takes the
// HTTP/1.1 request bytes the session writes (one head, then the body as Content-Length bytes or
// chunked), opens one HTTP/2 stream per request on the pooled mTLS session to the endpoint
// (marked `trellis-orig-proto: HTTP/1.1`, Host as :authority, connection-specific fields
// dropped), and gives back the response as HTTP/1.1 bytes: Content-Length when the peer sent
// one, else chunked (with trailers). The session's own parser then applies the HEAD/204/304,
// keep-alive and framing rules it applies to any upstream, so they live in one place.
//
// Backpressure: a write is acknowledged only once the HTTP/2 stream accepted it, and pushes that
// the session does not read pause the stream (HTTP/2 flow control then stops the peer).
import { Duplex } from 'node:stream';
import * as http2 from 'node:http2';
import type { H1Limits, MessageHead } from '../http/h1-parser.ts';
import { parseRequestHead } from '../http/h1-parser.ts';
import { ChunkedDecoder, CRLF, encodeChunkHeader, type ChunkSink } from '../http/chunked.ts';
import type { H2UpstreamPool } from '../http/h2-upstream-pool.ts';
import type { Target } from '../transport/target.ts';
import { requestHeaders, responseHead, fieldLines } from './h1-fields.ts';

const { NGHTTP2_CANCEL, NGHTTP2_FLAG_END_STREAM } = http2.constants;

/** One request/response exchange on the connection. */
interface Exchange {
  readonly head: MessageHead;
  stream: http2.ClientHttp2Stream | null;
  remaining: number;
  decoder: ChunkedDecoder | null;
  chunked: boolean;
  trailers: http2.IncomingHttpHeaders | null;
  /** The whole response was pushed. */
  done: boolean;
}

export class H1OverH2Conn extends Duplex {
  private readonly pool: H2UpstreamPool;
  private readonly address: Target;
  private readonly identity: string;
  private readonly limits: H1Limits;
  private headBuf: Buffer | null = null;
  /** The exchange whose request is being written (and whose response is being read). */
  private active: Exchange | null = null;
  /** The active exchange's request was written whole: the next write starts a new request. */
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

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.requestComplete) {
      this.onHeadBytes(chunk, cb);
      return;
    }
    this.writeBody(chunk, cb);
  }

  override _read(): void {
    const stream = this.active?.stream;
    if (stream != null && stream.isPaused()) stream.resume();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    const stream = this.active?.stream;
    if (stream != null && !stream.closed && !this.active!.done) stream.close(NGHTTP2_CANCEL);
    this.active = null;
    cb(err);
  }

  private onHeadBytes(chunk: Buffer, cb: (err?: Error | null) => void): void {
    const buf = this.headBuf === null ? chunk : Buffer.concat([this.headBuf, chunk]);
    const r = parseRequestHead(buf, 0, buf.length, this.limits);
    if (r.kind === 'incomplete') {
      this.headBuf = buf;
      cb();
      return;
    }
    this.headBuf = null;
    if (r.kind === 'error') {
      cb(new Error(`cannot convert the request to HTTP/2: ${r.message}`));
      return;
    }
    const head = r.head;
    const ex: Exchange = {
      head,
      stream: null,
      remaining: head.bodyKind === 'length' ? head.contentLength : 0,
      decoder: head.bodyKind === 'chunked' ? new ChunkedDecoder(this.limits) : null,
      chunked: false,
      trailers: null,
      done: false,
    };
    // The previous exchange is over for the session; a stream of it that a full buffer paused
    // must still reach its end (and close), or it would hold a slot of the HTTP/2 session.
    const prev = this.active?.stream;
    if (prev != null && prev.isPaused()) prev.resume();
    this.active = ex;
    const endStream = ex.decoder === null && ex.remaining === 0;
    this.requestComplete = endStream;
    const rest = r.end < buf.length ? buf.subarray(r.end) : null;
    const headers = requestHeaders(head);
    // A warm session takes the stream synchronously; otherwise wait for one (connect, or room).
    let now: http2.ClientHttp2Stream | null;
    try {
      now = this.pool.requestNow(this.address, headers, { endStream }, this.identity);
    } catch (err) {
      cb();
      this.destroy(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    if (now !== null) {
      this.attach(ex, now);
      if (rest !== null) this.writeBody(rest, cb);
      else cb();
      return;
    }
    this.pool.request(this.address, headers, { endStream }, this.identity).then(
      ({ stream }) => {
        if (this.active !== ex || this.destroyed) {
          stream.close(NGHTTP2_CANCEL);
          cb();
          return;
        }
        this.attach(ex, stream);
        if (rest !== null) this.writeBody(rest, cb);
        else cb();
      },
      (err: unknown) => {
        cb();
        this.destroy(err instanceof Error ? err : new Error(String(err)));
      },
    );
  }

  private writeBody(chunk: Buffer, cb: (err?: Error | null) => void): void {
    const ex = this.active;
    const stream = ex?.stream;
    if (ex == null || stream == null) {
      cb(new Error('request body without a request'));
      return;
    }
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
    const method = ex.head.method;
    stream.on('error', () => {}); // its close (with a code) is what matters
    stream.on('continue', () => {
      if (this.active === ex) this.push(Buffer.from('HTTP/1.1 100 Continue\r\n\r\n', 'latin1'));
    });
    stream.on('headers', (headers: http2.IncomingHttpHeaders) => {
      const status = Number(headers[':status']);
      if (this.active === ex && status > 100 && status < 200) this.push(responseHead(status, headers, ''));
    });
    stream.once('response', (headers: http2.IncomingHttpHeaders, flags: number) => {
      if (this.active !== ex) {
        stream.resume(); // nobody reads it: let it end and close
        return;
      }
      const status = Number(headers[':status']);
      const endStream = (flags & NGHTTP2_FLAG_END_STREAM) !== 0;
      let framing = '';
      if (method === 'HEAD' || status === 204 || status === 304 || headers['content-length'] !== undefined) {
        // no framing of ours: none needed, or the peer's Content-Length stands
      } else if (endStream) framing = 'content-length: 0\r\n';
      else {
        framing = 'transfer-encoding: chunked\r\n';
        ex.chunked = true;
      }
      // Bodyless responses are complete at their head: the session may reuse this connection at
      // once, so the exchange is over before the push (which may run the next request).
      if (!ex.chunked && (endStream || method === 'HEAD' || status === 204 || status === 304)) ex.done = true;
      if (!this.push(responseHead(status, headers, framing))) stream.pause();
      // The body is read only from here on: node:http2 emits 'response' on the next tick but
      // pushes a DATA frame that came in the same read at once, so a 'data' listener attached
      // earlier could see the body before the head (the session would then read "ok" where a
      // status line belongs: 502 upstream-bad-response under load).
      stream.on('data', (chunk: Buffer) => {
        if (this.active !== ex) return;
        const more = ex.chunked
          ? this.push(Buffer.concat([encodeChunkHeader(chunk.length), chunk, CRLF]))
          : this.push(chunk);
        if (!more) stream.pause();
      });
    });
    stream.on('trailers', (trailers: http2.IncomingHttpHeaders) => (ex.trailers = trailers));
    stream.once('end', () => {
      if (this.active !== ex || ex.done) return;
      ex.done = true;
      if (ex.chunked) this.push(Buffer.from(`0\r\n${fieldLines(ex.trailers)}\r\n`, 'latin1'));
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
