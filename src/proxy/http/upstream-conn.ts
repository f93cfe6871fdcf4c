// A pooled HTTP/1 byte connection to an upstream (upstream-pool.ts keeps them), and the one place
// where the proxy speaks HTTP/1 as a client on the wire: the request head serialized (or given as
// text by the inbound bridge, mesh/h2-to-h1.ts), the request body framed (as it is, or chunked),
// and the response read with the strict parser: interim heads, the HEAD/204/304 rule, the body by
// length, chunked (decoded) or until close, and whether the connection may carry another exchange
// (never after a Connection: close, a body cut short, or bytes past the response's end, which
// would leave the next exchange reading what the upstream meant for this one).
//
// It is one H1Upstream (h1-upstream.ts): the exchange that owns it (h1-client.ts, or the bridge)
// gets the parsed response through H1ResponseSink. One set of socket listeners per connection
// dispatches to its current owner, so reusing a connection costs no listener churn; what the
// owner throws is its fault, contained to it (fault.ts), and the connection is not reused.
import type net from 'node:net';
import type { H1Limits, MessageHead } from './h1-parser.ts';
import { parseResponseHead } from './h1-parser.ts';
import { ChunkedDecoder, CRLF, encodeChunkHeader, LAST_CHUNK, type ChunkSink } from './chunked.ts';
import { serializeRequestHead, type RequestLine } from './h1-serialize.ts';
import {
  responseBodyKind,
  type H1ResponseSink,
  type H1Upstream,
  type ResponseBodyKind,
} from './h1-upstream.ts';
import type { PoolHost, UpstreamPool } from './upstream-pool.ts';
import { corkForTick } from '../transport/cork.ts';

const RES_NONE = 0; // no exchange
const RES_HEAD = 1; // waiting for the response head
const RES_BODY = 2;
const RES_DONE = 3;

const NO_TRAILERS = Buffer.alloc(0);
const LAST_CHUNK_START = Buffer.from('0\r\n', 'latin1');

export class UpstreamConn implements H1Upstream {
  readonly socket: net.Socket;
  /** What the pool has under the connection's key (its idle list, its count). */
  readonly host: PoolHost;
  /** The exchange that owns the connection (null: idle, or let go). */
  owner: H1ResponseSink | null = null;
  /** Times this connection was handed out; > 1 means it was reused from the pool. */
  uses = 0;
  connected = false;
  closed = false;
  /** Counted in its key's open connections (until it closes or leaves the pool: forget). */
  counted = true;
  private lastError: Error | null = null;
  /**
   * The idle timer, made once and re-armed (refresh) each time the connection goes back to the
   * pool: a new Timeout per request was ~150 bytes of garbage per request. `idleArmed` says whether
   * it counts: a connection handed out again is not closed by it, and it is not cleared per request.
   */
  private idleTimer: NodeJS.Timeout | null = null;
  private idleArmed = false;
  private readonly pool: UpstreamPool;
  private readonly limits: H1Limits;

  // The response being read.
  private state = RES_NONE;
  private method = '';
  /** Bytes received and not yet parsed (a partial head, or what came after it). */
  private buf: Buffer | null = null;
  private kind: ResponseBodyKind = 'none';
  private remaining = 0;
  private decoder: ChunkedDecoder | null = null;
  /** A chunked body's end was read: its trailers, passed on once the bytes after it are judged. */
  private endedWith: Buffer | null = null;
  private readonly chunkSink: ChunkSink;
  /** The connection may carry another exchange once this one is over. */
  private reusable = true;
  /** Bytes of this response's interim (1xx) heads so far: together bounded like one head. */
  private interimBytes = 0;

  constructor(pool: UpstreamPool, socket: net.Socket, host: PoolHost, limits: H1Limits) {
    this.pool = pool;
    this.socket = socket;
    this.host = host;
    this.limits = limits;
    this.chunkSink = {
      data: (chunk) => this.owner?.onResponseData(chunk),
      end: (trailers) => {
        this.endedWith = trailers;
      },
    };
    socket.on('data', (chunk: Buffer) => {
      const owner = this.owner;
      if (owner === null) {
        socket.destroy(); // bytes on an idle connection: the upstream broke the protocol
        return;
      }
      try {
        this.onData(chunk);
      } catch (err) {
        this.ownerFault(owner, 'upstream data', err);
      }
    });
    socket.on('end', () => {
      const owner = this.owner;
      if (owner === null) {
        socket.destroy();
        return;
      }
      try {
        this.onEnd();
      } catch (err) {
        this.ownerFault(owner, 'upstream end', err);
      }
    });
    socket.on('drain', () => {
      const owner = this.owner;
      if (owner === null) return;
      try {
        owner.onRequestDrain();
      } catch (err) {
        this.ownerFault(owner, 'upstream drain', err);
      }
    });
    socket.on('error', (err) => {
      this.lastError = err;
    });
    socket.on('close', () => {
      this.closed = true;
      this.clearIdle();
      if (this.idleTimer !== null) clearTimeout(this.idleTimer); // nothing keeps a closed connection
      this.pool.forget(this);
      const owner = this.owner;
      this.owner = null;
      if (owner === null || (this.state !== RES_HEAD && this.state !== RES_BODY)) return;
      try {
        owner.onUpstreamClosed(this.lastError, this.state === RES_HEAD && this.buf === null, this.uses > 1);
      } catch (err) {
        owner.fault('upstream close', err);
      }
    });
  }

  private ownerFault(owner: H1ResponseSink, where: string, err: unknown): void {
    this.close();
    owner.fault(where, err);
  }

  // ---- the request (H1Upstream) ------------------------------------------------------------

  /** The head and the first body bytes leave in one write (corked for a tick). */
  start(head: MessageHead, line: RequestLine, chunked: boolean, sink: H1ResponseSink): void {
    this.begin(head.method, sink);
    const up = this.socket;
    corkForTick(up);
    up.write(serializeRequestHead(head, line, chunked), 'latin1');
  }

  /** As start, with the head already written out as `text` (the inbound bridge's); `bodyFollows` corks it. */
  startWritten(text: string, method: string, bodyFollows: boolean, sink: H1ResponseSink): void {
    this.begin(method, sink);
    const up = this.socket;
    if (!bodyFollows) {
      up.write(text, 'latin1');
      return;
    }
    corkForTick(up);
    up.write(text, 'latin1');
  }

  private begin(method: string, sink: H1ResponseSink): void {
    this.owner = sink;
    this.method = method;
    this.state = RES_HEAD;
    this.buf = null;
    this.interimBytes = 0;
    this.decoder = null;
    this.endedWith = null;
  }

  writeBody(part: Buffer): boolean {
    return this.socket.write(part);
  }

  writeChunk(data: Buffer): boolean {
    const up = this.socket;
    up.cork();
    up.write(encodeChunkHeader(data.length));
    up.write(data);
    const ok = up.write(CRLF);
    up.uncork();
    return ok;
  }

  endChunks(trailers: Buffer): void {
    this.socket.write(trailers.length === 0 ? LAST_CHUNK : Buffer.concat([LAST_CHUNK_START, trailers, CRLF]));
  }

  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  release(): void {
    this.state = RES_NONE;
    if (this.reusable && !this.closed) this.pool.release(this);
    else this.close();
  }

  close(): void {
    this.reusable = false;
    this.owner = null;
    this.socket.destroy();
  }

  takeForTunnel(): { readonly socket: net.Socket; readonly rest: Buffer | null } {
    // What came after the 101 belongs to the tunnel: nothing more is parsed as a response.
    const rest = this.buf;
    this.buf = null;
    this.state = RES_DONE;
    this.owner = null;
    const s = this.socket;
    s.removeAllListeners('data');
    s.removeAllListeners('end');
    s.removeAllListeners('drain');
    this.pool.forget(this);
    return { socket: s, rest };
  }

  // ---- the response ------------------------------------------------------------------------

  private onData(chunk: Buffer): void {
    if (this.state === RES_BODY) {
      this.forwardBody(chunk);
      return;
    }
    if (this.state !== RES_HEAD) {
      this.close(); // bytes after the response ended
      return;
    }
    this.buf = this.buf === null ? chunk : Buffer.concat([this.buf, chunk]);
    while (this.buf !== null && this.state === RES_HEAD) {
      const owner = this.owner;
      if (owner === null) return;
      const buf: Buffer = this.buf;
      const r = parseResponseHead(buf, 0, buf.length, this.limits);
      if (r.kind === 'incomplete') return;
      if (r.kind === 'error') {
        this.buf = null;
        this.close();
        owner.onBadResponse(r.message);
        return;
      }
      this.buf = r.end < buf.length ? buf.subarray(r.end) : null;
      const head = r.head;
      if (head.status >= 200 || head.status === 101) {
        this.onHead(owner, head);
        continue;
      }
      // Interim heads are passed on as they come, whether or not the client reads them: an
      // upstream that sent them without end grew the proxy without bound. Together they get the
      // bound of one head (http1.maxHeaderBytes); past it the response is a bad one.
      this.interimBytes += r.end;
      if (this.interimBytes > this.limits.maxHeaderBytes) {
        this.buf = null;
        this.close();
        owner.onBadResponse(`interim (1xx) responses over ${this.limits.maxHeaderBytes} bytes`);
        return;
      }
      owner.onInterim(head);
    }
  }

  private onHead(owner: H1ResponseSink, head: MessageHead): void {
    const kind = responseBodyKind(this.method, head);
    if (!owner.onResponseHead(head, kind, false)) return;
    this.kind = kind;
    if (head.connectionClose) this.reusable = false;
    if (kind === 'none' || (kind === 'length' && head.contentLength === 0)) {
      if (this.buf !== null) this.reusable = false;
      this.buf = null;
      this.endResponse(NO_TRAILERS);
      return;
    }
    this.state = RES_BODY;
    if (kind === 'length') this.remaining = head.contentLength;
    else if (kind === 'chunked') this.decoder = new ChunkedDecoder(this.limits);
    const rest = this.buf;
    this.buf = null;
    if (rest !== null) this.forwardBody(rest);
  }

  private forwardBody(chunk: Buffer): void {
    switch (this.kind) {
      case 'length': {
        const used = Math.min(this.remaining, chunk.length);
        this.owner?.onResponseData(used === chunk.length ? chunk : chunk.subarray(0, used));
        this.remaining -= used;
        if (this.remaining === 0) {
          if (used < chunk.length) this.reusable = false;
          this.endResponse(NO_TRAILERS);
        }
        return;
      }
      case 'chunked': {
        const used = this.decoder!.write(chunk, this.chunkSink);
        if (used < 0) {
          // Part of the response is already out: the owner can only tell its client by a reset.
          const owner = this.owner;
          this.close();
          owner?.onResponseBroken();
          return;
        }
        const trailers = this.endedWith;
        if (trailers === null) return;
        this.endedWith = null;
        if (used < chunk.length) this.reusable = false;
        this.endResponse(trailers);
        return;
      }
      case 'close':
        this.owner?.onResponseData(chunk);
        return;
      case 'none':
        this.close();
    }
  }

  /** The response is whole; the owner may release the connection inside (nothing follows here). */
  private endResponse(trailers: Buffer): void {
    this.state = RES_DONE;
    this.owner?.onResponseEnd(trailers);
  }

  private onEnd(): void {
    if (this.state === RES_BODY && this.kind === 'close') {
      this.reusable = false;
      this.endResponse(NO_TRAILERS);
      return;
    }
    this.socket.destroy();
  }

  // ---- the pool's idle timer -----------------------------------------------------------------

  /** The connection waits in the pool: it closes after `ms` unless handed out again first. */
  setIdleTimer(ms: number): void {
    if (ms <= 0) return;
    this.idleArmed = true;
    // A pool's idle timeout is one value for all its connections: the timer keeps the first.
    if (this.idleTimer === null) this.idleTimer = setTimeout(() => this.onIdleTimer(), ms).unref();
    else this.idleTimer.refresh();
  }

  /** The connection was handed out: the idle timer no longer counts (it fires, if it does, for nothing). */
  clearIdle(): void {
    this.idleArmed = false;
  }

  private onIdleTimer(): void {
    if (this.idleArmed) this.socket.destroy();
  }
}
