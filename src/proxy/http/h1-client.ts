// The upstream (client) side of the HTTP/1 path: for each exchange of its session (h1-session.ts)
// it picks the endpoint (outbound/balance.ts), acquires a pooled connection to it through the
// context's connector, sends the request head and body, reads the response and says whether the
// connection may be reused. The session sees one upstream whatever the connection is: a plain
// byte stream (its own pooled TCP connections, or mTLS to a meshed endpoint for an Upgrade),
// where the head is serialized and the response parsed here, or the mesh's HTTP/1-over-HTTP/2
// connection (direct-upstream.ts, mesh/h1-over-h2.ts), which takes the parsed head and gives back
// a parsed response; both end in the same H1ClientSink calls.
//
// One client per downstream connection, reused by each of its exchanges (nothing is allocated per
// request here that the session did not allocate before). A failed connect goes once to another
// endpoint (retriesElsewhere); every other retry is the session's decision (outbound/routes.ts).
import type net from 'node:net';
import { performance } from 'node:perf_hooks';
import type { ConnectFailureReason, ProxyErrorReason } from '../errors.ts';
import type { H1Limits, MessageHead } from './h1-parser.ts';
import { parseResponseHead } from './h1-parser.ts';
import { ChunkedDecoder, CRLF, encodeChunkHeader, type ChunkSink } from './chunked.ts';
import { serializeRequestHead, withoutField, type RequestLine } from './h1-serialize.ts';
import { directOf, wasUnprocessed, type DirectResponseSink } from './direct-upstream.ts';
import type { AcquireCallback, UpstreamConn, UpstreamOwner, UpstreamPool } from './upstream-pool.ts';
import type { Pick } from '../outbound/discovery.ts';
import { pickEndpoint, retriesElsewhere, type Discovery, type EndpointOutcome } from '../outbound/balance.ts';
import type { EndpointSink } from '../outbound/balance.ts';
import type { Target } from '../../core/target.ts';

/**
 * Acquires a connection for one HTTP/1 request to a picked endpoint, plain or meshed as the
 * endpoint is (the runtime builds it; mesh/outbound.ts for meshed endpoints): `cb` runs as for
 * UpstreamPool.acquire. `upgrade`: the request asks for a protocol upgrade (its own connection).
 */
export type H1Connect = (pick: Pick, upgrade: boolean, owner: UpstreamOwner, cb: AcquireCallback) => void;

/** Where a request goes (the session's routing, with a route's rewrites applied). */
export interface H1Route {
  readonly target: Target;
  readonly path: string;
  /** Host field to send (replacing the client's), or null to keep it. */
  readonly host: string | null;
}

/** How the response body reaches the session: none, by length, chunked (decoded here) or until close. */
export type ResponseBodyKind = 'none' | 'length' | 'chunked' | 'close';

/** What the client tells the exchange it carries (the server side: h1-session.ts). */
export interface H1ClientSink {
  /** Whether the exchange still waits for an upstream for `route` (else a late answer is let go). */
  awaitsUpstream(route: H1Route | null): boolean;
  /** No endpoint or no connection: the exchange is answered with `reason`. */
  onUpstreamFailed(reason: ProxyErrorReason, message: string): void;
  /** The request head went to a connected upstream: the body may follow. */
  onUpstreamReady(): void;
  /** An interim (1xx) response head. */
  onInterim(head: MessageHead): void;
  /**
   * The final response head and how its body comes (`bodyLater`: in a later tick); false when the
   * exchange did not take it (a retry, an upgrade, an error answered): the client stops there.
   */
  onResponseHead(head: MessageHead, kind: ResponseBodyKind, bodyLater: boolean): boolean;
  onResponseData(chunk: Buffer): void;
  /** The response ended; `trailers` as "name: value\r\n" lines (may be empty). */
  onResponseEnd(trailers: Buffer): void;
  /** A response head the upstream got wrong (nothing of it was sent on). */
  onBadResponse(message: string): void;
  /** A response body the upstream got wrong after part of it went to the client. */
  onResponseBroken(): void;
  /**
   * The upstream closed during the exchange: `beforeResponse` when nothing of a response came;
   * `resendable` when the connection was reused from the pool or says it never processed the
   * request (the session may send it once more).
   */
  onUpstreamClosed(err: Error | null, beforeResponse: boolean, resendable: boolean): void;
  /** The upstream takes request body bytes again. */
  onRequestDrain(): void;
  /** A fault of the session's own code under an upstream event (fault.ts). */
  fault(where: string, err: unknown): void;
}

export const RES_NONE = 0;
export const RES_HEAD = 1; // waiting for the response head
export const RES_BODY = 2;
export const RES_DONE = 3;

const NO_TRAILERS = Buffer.alloc(0);

export interface H1ClientContext {
  readonly limits: H1Limits;
  readonly pool: UpstreamPool;
  readonly discovery: Discovery | null;
  readonly connect: H1Connect;
}

export class H1Client implements UpstreamOwner, DirectResponseSink, EndpointSink {
  private readonly ctx: H1ClientContext;
  private readonly sink: H1ClientSink;
  /** State of the response (RES_*), read by the session. */
  state = RES_NONE;
  /** The request being sent: its head, how the head is written, and whether its body is chunked. */
  req: MessageHead | null = null;
  private line: RequestLine | null = null;
  private chunked = false;
  private conn: UpstreamConn | null = null;
  /** The upstream takes parsed heads and gives decoded bodies (direct-upstream.ts). */
  private direct = false;
  private reusable = true;
  /** The endpoint this exchange was sent to and when it was picked. */
  private pick: Pick | null = null;
  private pickedAt = 0;
  /** The exchange's last picked endpoint, kept until reset() (a live tap reports it). */
  lastPick: Pick | null = null;
  /** The route whose endpoint is being picked or connected to (a late answer is released). */
  private picking: H1Route | null = null;
  /** The connect failure that sent this exchange to another endpoint (at most once). */
  private connectRetried: { reason: ConnectFailureReason; err: Error | undefined } | null = null;
  private resBuf: Buffer | null = null;
  private resKind: ResponseBodyKind = 'none';
  private resRemaining = 0;
  private resDecoder: ChunkedDecoder | null = null;
  /** A chunk of request body met a full upstream buffer (writeChunks). */
  private full = false;
  private readonly reqSink: ChunkSink;
  private readonly resSink: ChunkSink;
  private readonly acquired: AcquireCallback;

  /** `idHeader`: the inbound client-identity field, the proxy's to set (dropped from trailers too). */
  constructor(ctx: H1ClientContext, sink: H1ClientSink, idHeader: string) {
    this.ctx = ctx;
    this.sink = sink;
    this.reqSink = {
      data: (chunk) => {
        const up = this.conn!.socket;
        up.write(encodeChunkHeader(chunk.length));
        up.write(chunk);
        if (!up.write(CRLF)) this.full = true;
      },
      end: (sent) => {
        const up = this.conn!.socket;
        // Inbound: the client-identity header is the proxy's to set, in trailers as in the head.
        const trailers = idHeader === '' || sent.length === 0 ? sent : withoutField(sent, idHeader);
        up.write(trailers.length === 0 ? '0\r\n\r\n' : Buffer.concat([Buffer.from('0\r\n'), trailers, CRLF]));
      },
    };
    this.resSink = {
      data: (chunk) => this.sink.onResponseData(chunk),
      end: (trailers) => this.endResponse(trailers),
    };
    this.acquired = (conn, error, err) => {
      try {
        this.onAcquired(conn, error, err);
      } catch (e) {
        this.sink.fault('h1 upstream acquired', e);
      }
    };
  }

  // ---- the exchange's requests ---------------------------------------------------------------

  /** The request the next connect sends: its head, as `line` rewrites it, its body chunked or not. */
  begin(req: MessageHead, line: RequestLine, chunked: boolean): void {
    this.req = req;
    this.line = line;
    this.chunked = chunked;
  }

  /**
   * Picks an endpoint of the route's target (outbound/balance.ts; synchronously when the
   * endpoints are known) and acquires a connection to it. `failed`: the previous attempt's pick on
   * a retry (`otherOnly`: it must go elsewhere).
   */
  connect(route: H1Route, failed: Pick | null, otherOnly: boolean): void {
    this.picking = route;
    pickEndpoint(this.ctx.discovery, route.target, failed, this, otherOnly);
  }

  onEndpoint(outcome: EndpointOutcome): void {
    try {
      this.onPicked(outcome);
    } catch (err) {
      this.sink.fault('h1 endpoint pick', err);
    }
  }

  private onPicked(outcome: EndpointOutcome): void {
    if (!this.sink.awaitsUpstream(this.picking)) {
      if (typeof outcome === 'object' && !('error' in outcome)) outcome.done(); // the exchange ended meanwhile
      return;
    }
    if (outcome === 'no-other-endpoint') {
      const first = this.connectRetried!;
      this.sink.onUpstreamFailed(first.reason, `${first.reason}: ${first.err?.message ?? 'no connection'}`);
      return;
    }
    if ('error' in outcome) {
      this.sink.onUpstreamFailed(outcome.error, outcome.detail);
      return;
    }
    this.pick = outcome;
    this.lastPick = outcome;
    this.pickedAt = performance.now();
    this.ctx.connect(outcome, this.req!.upgrade !== null, this, this.acquired);
  }

  private onAcquired(conn: UpstreamConn | null, error: ConnectFailureReason | null, err?: Error): void {
    if (!this.sink.awaitsUpstream(this.picking)) {
      // The client went away, or the exchange was answered meanwhile (its body was cut short).
      if (conn !== null) this.ctx.pool.release(conn);
      return;
    }
    if (conn === null) {
      const failed = this.pick;
      if (failed !== null && retriesElsewhere(failed, error!, this.connectRetried !== null)) {
        // Nothing was sent: the request goes to another endpoint once.
        this.connectRetried = { reason: error!, err };
        this.pick = null;
        this.connect(this.picking!, failed, true);
        return;
      }
      this.sink.onUpstreamFailed(error!, `${error}: ${err?.message ?? 'no connection'}`);
      return;
    }
    this.conn = conn;
    this.reusable = true;
    this.state = RES_HEAD;
    const up = conn.socket;
    const direct = directOf(up);
    this.direct = direct !== null;
    // A byte stream gets the head and the first body bytes in one write (corked for a tick); a
    // direct upstream takes the parsed head, and any body bytes as they come.
    if (direct !== null) direct.startRequest(this.req!, this.line!, this.chunked, this);
    else {
      up.cork();
      up.write(serializeRequestHead(this.req!, this.line!, this.chunked), 'latin1');
      process.nextTick(uncork, up);
    }
    this.sink.onUpstreamReady();
  }

  /** Writes request body bytes as they are (a Content-Length body); false: the upstream is full. */
  writeBody(part: Buffer): boolean {
    return this.conn!.socket.write(part);
  }

  /**
   * Decodes a chunk of the client's chunked body with `decoder` and sends it re-encoded: the bytes
   * of `chunk` used (negative: the body is malformed). `paused` is set when the upstream is full.
   */
  writeChunks(decoder: ChunkedDecoder, chunk: Buffer): number {
    const up = this.conn!.socket;
    this.full = false;
    up.cork();
    const used = decoder.write(chunk, this.reqSink);
    up.uncork();
    return used;
  }

  /** The last writeChunks met a full upstream: the client should wait for onRequestDrain. */
  get blocked(): boolean {
    return this.full;
  }

  // ---- the connection ------------------------------------------------------------------------

  /** Stops reading the response (the client is full). */
  pause(): void {
    this.conn?.socket.pause();
  }

  /** Reads the response body again. */
  resume(): void {
    if (this.conn !== null && this.state === RES_BODY) this.conn.socket.resume();
  }

  /** Closes the connection, whose state is now unknown (it is never reused). */
  destroy(): void {
    this.reusable = false;
    this.conn?.socket.destroy();
  }

  /** The exchange lets go of its connection, which closes (its response is not read to the end). */
  drop(): void {
    const conn = this.conn;
    this.conn = null;
    if (conn !== null) {
      conn.owner = null;
      conn.socket.destroy();
    }
  }

  /** The exchange is over: its connection goes back to the pool when it can be reused (`requestSent`). */
  finish(requestSent: boolean): void {
    const conn = this.conn;
    this.conn = null;
    if (conn === null) return;
    if (this.reusable && requestSent) this.ctx.pool.release(conn);
    else {
      conn.owner = null;
      conn.socket.destroy();
    }
  }

  /** A new attempt of the same request follows (a retry): the last response is forgotten. */
  restart(): void {
    this.state = RES_NONE;
    this.resBuf = null;
  }

  /** Forgets the exchange (its connection was let go): ready for the next one. */
  reset(): void {
    this.lastPick = null;
    this.req = null;
    this.line = null;
    this.direct = false;
    this.resBuf = null;
    this.resDecoder = null;
    this.state = RES_NONE;
    this.connectRetried = null;
    this.picking = null;
    this.releasePick();
  }

  /**
   * The upstream answered 101: its connection leaves this client for a tunnel, with what it sent
   * after the 101 (`rest`, read before).
   */
  takeForTunnel(): UpstreamConn {
    const conn = this.conn!;
    this.conn = null;
    // What came after the 101 belongs to the tunnel: nothing more is parsed as a response.
    this.resBuf = null;
    this.state = RES_DONE;
    return conn;
  }

  /** Bytes received after the response head (before its body was read), or null. */
  get rest(): Buffer | null {
    return this.resBuf;
  }

  // ---- the endpoint's verdict (balance/backend-guard.ts) ---------------------------------------

  /** The endpoint failed the exchange (before it is released). */
  blame(): void {
    this.pick?.fail?.();
  }

  /** The endpoint answered at `now` (ms); `failed`: the breaker's verdict. */
  answered(now: number, failed: boolean): void {
    const pick = this.pick;
    if (pick === null) return;
    this.pick = null;
    pick.done(now - this.pickedAt, failed);
  }

  /** The attempt's pick, handed to the caller (a retry reports it); null when none. */
  takePick(): Pick | null {
    const pick = this.pick;
    this.pick = null;
    return pick;
  }

  /** Ends the picked endpoint's count of this request (without an RTT: it failed or ended). */
  releasePick(): void {
    const pick = this.pick;
    this.pick = null;
    pick?.done();
  }

  // ---- upstream events (UpstreamOwner, DirectResponseSink) -------------------------------------

  fault(where: string, err: unknown): void {
    this.sink.fault(where, err);
  }

  onUpstreamDrain(): void {
    this.sink.onRequestDrain();
  }

  onUpstreamData(chunk: Buffer): void {
    if (this.state === RES_BODY) {
      this.forwardBody(chunk);
      return;
    }
    if (this.state !== RES_HEAD) {
      this.destroy(); // bytes after the response ended
      return;
    }
    this.resBuf = this.resBuf === null ? chunk : Buffer.concat([this.resBuf, chunk]);
    this.parseResponse();
  }

  onDirectHead(head: MessageHead): void {
    if (this.state !== RES_HEAD) {
      this.destroy();
      return;
    }
    if (head.status < 200) {
      this.sink.onInterim(head);
      return;
    }
    this.onHead(head);
  }

  onDirectEnd(trailers: Buffer): void {
    if (this.state === RES_BODY && this.resKind === 'chunked') this.endResponse(trailers);
  }

  onUpstreamEnd(): void {
    if (this.state === RES_BODY && this.resKind === 'close') {
      this.reusable = false;
      this.endResponse(NO_TRAILERS);
      return;
    }
    this.conn?.socket.destroy();
  }

  onUpstreamClose(_hadError: boolean, err: Error | null): void {
    const conn = this.conn;
    this.conn = null;
    if (this.state === RES_DONE || this.state === RES_NONE) return;
    const resendable = conn !== null && (conn.uses > 1 || wasUnprocessed(err));
    this.sink.onUpstreamClosed(err, this.state === RES_HEAD && this.resBuf === null, resendable);
  }

  // ---- the response --------------------------------------------------------------------------

  private parseResponse(): void {
    while (this.resBuf !== null && this.state === RES_HEAD) {
      const buf = this.resBuf;
      const r = parseResponseHead(buf, 0, buf.length, this.ctx.limits);
      if (r.kind === 'incomplete') return;
      if (r.kind === 'error') {
        this.resBuf = null;
        this.destroy();
        this.sink.onBadResponse(r.message);
        return;
      }
      this.resBuf = r.end < buf.length ? buf.subarray(r.end) : null;
      const head = r.head;
      if (head.status < 200 && head.status !== 101) {
        this.sink.onInterim(head);
        continue;
      }
      this.onHead(head);
    }
  }

  private onHead(head: MessageHead): void {
    const req = this.req!;
    const kind: ResponseBodyKind =
      req.method === 'HEAD' || head.status === 204 || head.status === 304 ? 'none' : head.bodyKind;
    const bodyLater = this.direct && kind !== 'none' && !(kind === 'length' && head.contentLength === 0);
    if (!this.sink.onResponseHead(head, kind, bodyLater)) return;
    this.resKind = kind;
    if (head.connectionClose) this.reusable = false;
    if (kind === 'none' || (kind === 'length' && head.contentLength === 0)) {
      if (this.resBuf !== null) this.reusable = false;
      this.resBuf = null;
      this.endResponse(NO_TRAILERS);
      return;
    }
    this.state = RES_BODY;
    if (kind === 'length') this.resRemaining = head.contentLength;
    else if (kind === 'chunked' && !this.direct) this.resDecoder = new ChunkedDecoder(this.ctx.limits);
    const rest = this.resBuf;
    this.resBuf = null;
    if (rest !== null) this.forwardBody(rest);
  }

  private forwardBody(chunk: Buffer): void {
    switch (this.resKind) {
      case 'length': {
        const used = Math.min(this.resRemaining, chunk.length);
        this.sink.onResponseData(used === chunk.length ? chunk : chunk.subarray(0, used));
        this.resRemaining -= used;
        if (this.resRemaining === 0) {
          if (used < chunk.length) this.reusable = false;
          this.endResponse(NO_TRAILERS);
        }
        return;
      }
      case 'chunked': {
        if (this.direct) {
          this.sink.onResponseData(chunk); // decoded already; its end comes as onDirectEnd
          return;
        }
        const used = this.resDecoder!.write(chunk, this.resSink);
        if (used < 0) {
          // Part of the response is already out: the client can only learn of the error by a reset.
          this.destroy();
          this.sink.onResponseBroken();
          return;
        }
        if (this.state === RES_DONE && used < chunk.length) this.reusable = false;
        return;
      }
      case 'close':
        this.sink.onResponseData(chunk);
        return;
    }
  }

  private endResponse(trailers: Buffer): void {
    this.state = RES_DONE;
    this.sink.onResponseEnd(trailers);
  }
}

function uncork(s: net.Socket): void {
  s.uncork();
}
