// The upstream (client) side of the HTTP/1 path: for each exchange of its session (h1-session.ts)
// it picks the endpoint (outbound/balance.ts), acquires a connection to it through the context's
// connector, sends the request head and body and passes the response on. The connection is one
// H1Upstream (h1-upstream.ts) whatever it is: a pooled byte connection (upstream-conn.ts: plain,
// or mTLS for an Upgrade to a meshed endpoint), which serializes the request and parses the
// response, or a stream of the mesh's HTTP/2 connection to the endpoint (mesh/h1-over-h2.ts).
//
// One client per downstream connection, reused by each of its exchanges (nothing is allocated per
// request here that the session did not allocate before). A failed connect goes once to another
// endpoint (retriesElsewhere); every other retry is the session's decision (outbound/routes.ts).
import type net from 'node:net';
import { performance } from 'node:perf_hooks';
import type { ConnectFailureReason, ProxyErrorReason } from '../errors.ts';
import type { MessageHead } from './h1-parser.ts';
import type { ChunkedDecoder, ChunkSink } from './chunked.ts';
import { withoutField, type RequestLine } from './h1-serialize.ts';
import type { H1ResponseSink, H1Upstream, ResponseBodyKind } from './h1-upstream.ts';
import type { Pick } from '../outbound/discovery.ts';
import { pickEndpoint, retriesElsewhere, type Discovery, type EndpointOutcome } from '../outbound/balance.ts';
import type { EndpointSink } from '../outbound/balance.ts';
import type { Target } from '../../core/target.ts';
import type { Endpoint } from '../../core/endpoints.ts';

/** Gets the connection an H1Connect acquired, or why there is none. */
export type H1UpstreamCallback = (
  up: H1Upstream | null,
  error: ConnectFailureReason | null,
  err?: Error,
) => void;

/**
 * Acquires a connection for one HTTP/1 request to a picked endpoint, plain or meshed as the
 * endpoint is (the runtime builds it; mesh/outbound.ts for meshed endpoints): `cb` gets it (at
 * once when one is idle), or why not. `upgrade`: the request asks for a protocol upgrade (a byte
 * connection of its own). `owner` is the exchange that will start it (a waiting acquire is
 * withdrawn by it).
 */
export type H1Connect = (pick: Pick, upgrade: boolean, owner: H1ResponseSink, cb: H1UpstreamCallback) => void;

/** Where a request goes (the session's routing, with a route's rewrites applied). */
export interface H1Route {
  readonly target: Target;
  readonly path: string;
  /** Host field to send (replacing the client's), or null to keep it. */
  readonly host: string | null;
}

/**
 * What the client tells the exchange it carries (the server side: h1-session.ts): how getting an
 * upstream went, then the upstream's response as the upstream gave it (H1ResponseSink).
 */
export interface H1ClientSink extends H1ResponseSink {
  /** Whether the exchange still waits for an upstream for `route` (else a late answer is let go). */
  awaitsUpstream(route: H1Route | null): boolean;
  /** No endpoint or no connection: the exchange is answered with `reason`. */
  onUpstreamFailed(reason: ProxyErrorReason, message: string): void;
  /** The request head went to a connected upstream: the body may follow. */
  onUpstreamReady(): void;
}

export const RES_NONE = 0;
export const RES_HEAD = 1; // waiting for the response head
export const RES_BODY = 2;
export const RES_DONE = 3;

export interface H1ClientContext {
  readonly discovery: Discovery | null;
  readonly connect: H1Connect;
}

export class H1Client implements H1ResponseSink, EndpointSink {
  private readonly ctx: H1ClientContext;
  private readonly sink: H1ClientSink;
  /** State of the response (RES_*), read by the session. */
  state = RES_NONE;
  /** The request being sent: its head, how the head is written, and whether its body is chunked. */
  req: MessageHead | null = null;
  private line: RequestLine | null = null;
  private chunked = false;
  private up: H1Upstream | null = null;
  /** The endpoint this exchange was sent to and when it was picked. */
  private pick: Pick | null = null;
  private pickedAt = 0;
  /** The endpoint of the exchange's last pick, kept after the pick is reported (per-peer metrics). */
  endpoint: Endpoint | null = null;
  /** The exchange's last picked endpoint, kept until reset() (a live tap reports it). */
  lastPick: Pick | null = null;
  /** The route whose endpoint is being picked or connected to (a late answer is released). */
  private picking: H1Route | null = null;
  /** The connect failure that sent this exchange to another endpoint (at most once). */
  private connectRetried: { reason: ConnectFailureReason; err: Error | undefined } | null = null;
  /** A chunk of request body met a full upstream (writeChunks). */
  private full = false;
  /** Decoded chunks of the client's chunked request body, on to the upstream. */
  private readonly reqSink: ChunkSink;
  private readonly acquired: H1UpstreamCallback;

  /** `idHeader`: the inbound client-identity field, the proxy's to set (dropped from trailers too). */
  constructor(ctx: H1ClientContext, sink: H1ClientSink, idHeader: string) {
    this.ctx = ctx;
    this.sink = sink;
    this.reqSink = {
      data: (chunk) => {
        if (!this.up!.writeChunk(chunk)) this.full = true;
      },
      // Inbound: the client-identity header is the proxy's to set, in trailers as in the head.
      end: (sent) =>
        this.up!.endChunks(idHeader === '' || sent.length === 0 ? sent : withoutField(sent, idHeader)),
    };
    this.acquired = (up, error, err) => {
      try {
        this.onAcquired(up, error, err);
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
    this.endpoint = outcome.endpoint;
    this.lastPick = outcome;
    this.pickedAt = performance.now();
    this.ctx.connect(outcome, this.req!.upgrade !== null, this, this.acquired);
  }

  private onAcquired(up: H1Upstream | null, error: ConnectFailureReason | null, err?: Error): void {
    if (!this.sink.awaitsUpstream(this.picking)) {
      // The client went away, or the exchange was answered meanwhile (its body was cut short).
      up?.release();
      return;
    }
    if (up === null) {
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
    this.up = up;
    this.state = RES_HEAD;
    up.start(this.req!, this.line!, this.chunked, this);
    this.sink.onUpstreamReady();
  }

  /** Writes request body bytes as they are (a Content-Length body); false: the upstream is full. */
  writeBody(part: Buffer): boolean {
    return this.up!.writeBody(part);
  }

  /**
   * Decodes a chunk of the client's chunked body with `decoder` and sends it on: the bytes of
   * `chunk` used (negative: the body is malformed). `blocked` is set when the upstream is full.
   */
  writeChunks(decoder: ChunkedDecoder, chunk: Buffer): number {
    this.full = false;
    return decoder.write(chunk, this.reqSink);
  }

  /** The last writeChunks met a full upstream: the client should wait for onRequestDrain. */
  get blocked(): boolean {
    return this.full;
  }

  // ---- the connection ------------------------------------------------------------------------

  /** Stops reading the response (the client is full). */
  pause(): void {
    this.up?.pause();
  }

  /** Reads the response body again. */
  resume(): void {
    if (this.up !== null && this.state === RES_BODY) this.up.resume();
  }

  /** Closes the connection, whose state is now unknown (it is never reused). */
  destroy(): void {
    this.drop();
  }

  /** The exchange lets go of its connection, which closes (its response is not read to the end). */
  drop(): void {
    const up = this.up;
    this.up = null;
    up?.close();
  }

  /** The exchange is over: its connection goes back to the pool when it can be reused (`requestSent`). */
  finish(requestSent: boolean): void {
    const up = this.up;
    this.up = null;
    if (up === null) return;
    if (requestSent) up.release();
    else up.close();
  }

  /** A new attempt of the same request follows (a retry): the last response is forgotten. */
  restart(): void {
    this.state = RES_NONE;
  }

  /** Forgets the exchange (its connection was let go): ready for the next one. */
  reset(): void {
    this.lastPick = null;
    this.req = null;
    this.line = null;
    this.state = RES_NONE;
    this.connectRetried = null;
    this.picking = null;
    this.endpoint = null;
    this.releasePick();
  }

  /**
   * The upstream answered 101: its byte connection leaves this client for a tunnel, with what it
   * sent after the 101; null when the connection is not a byte stream.
   */
  takeForTunnel(): { readonly socket: net.Socket; readonly rest: Buffer | null } | null {
    const up = this.up;
    this.up = null;
    this.state = RES_DONE;
    return up === null ? null : up.takeForTunnel();
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

  // ---- the upstream's response (H1ResponseSink), passed on to the session ------------------------

  fault(where: string, err: unknown): void {
    this.sink.fault(where, err);
  }

  onRequestDrain(): void {
    this.sink.onRequestDrain();
  }

  onInterim(head: MessageHead): void {
    if (this.state === RES_HEAD) this.sink.onInterim(head);
  }

  onResponseHead(head: MessageHead, kind: ResponseBodyKind, bodyLater: boolean): boolean {
    if (this.state !== RES_HEAD) {
      this.drop();
      return false;
    }
    if (!this.sink.onResponseHead(head, kind, bodyLater)) return false;
    this.state = RES_BODY;
    return true;
  }

  onResponseData(chunk: Buffer): void {
    this.sink.onResponseData(chunk);
  }

  onResponseEnd(trailers: Buffer): void {
    this.state = RES_DONE;
    this.sink.onResponseEnd(trailers);
  }

  onBadResponse(message: string): void {
    this.up = null;
    this.sink.onBadResponse(message);
  }

  onResponseBroken(): void {
    this.up = null;
    this.sink.onResponseBroken();
  }

  onUpstreamClosed(err: Error | null, beforeResponse: boolean, resendable: boolean): void {
    this.up = null;
    if (this.state === RES_DONE || this.state === RES_NONE) return;
    this.sink.onUpstreamClosed(err, beforeResponse, resendable);
  }
}
