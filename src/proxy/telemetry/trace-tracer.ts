// A proxy's tracing: the hooks where requests are forwarded call start() (which joins the request
// to its trace and rewrites its context fields, trace-propagation.ts), and recordExchange
// (exchange-record.ts) calls finish() for an exchange that has a span: the span gets the
// OpenTelemetry HTTP semantic-convention attributes and Trellis's own from the exchange's
// description (the access log entry, built only for traced exchanges), and goes to the exporter.
// A proxy without a collector has no Tracer at all (null): its hooks cost one null check.
import type { DescribedExchange } from './exchange-record.ts';
import type { Direction, HttpProtocol } from './metrics.ts';
import {
  carryAttempt,
  carryAttemptObject,
  joinTrace,
  joinTraceObject,
  type HeaderObject,
} from './trace-propagation.ts';
import {
  nextAttemptSpan,
  underRequestSpan,
  wallNowMs,
  type FinishedSpan,
  type TraceSpan,
} from './trace-span.ts';
import type { SpanSink } from './trace-export.ts';
import type { Target } from '../../core/target.ts';

export interface TracerOptions {
  /** Share of requests without a sampling decision that start a trace (0..1). */
  readonly sampleRatio: number;
  readonly sink: SpanSink;
  /** This proxy's identity (SPIFFE ID), null without one. */
  readonly ownIdentity: () => string | null;
}

/** What a finished span takes from its exchange (DescribedExchange.describeRequest fills it in). */
export interface RequestFacts {
  direction: Direction;
  protocol: HttpProtocol;
  method: string;
  /** The request's authority ('' when none). */
  authority: string;
  /** The request target, query included. */
  path: string;
  /** The trellis-proxy-error reason of a response the proxy made, undefined when none. */
  error: string | undefined;
}

/** What a forwarding hook knows about the request's other side (Tracer.start takes its parts). */
export interface SpanPeer {
  /** The address the request came from (inbound) or goes to (outbound, when known), '' when not. */
  readonly address: string;
  /** Inbound over mTLS: the client's verified identity. */
  readonly identity: string | null;
  /** Where the request goes, when the hook knows better than its Host (outbound: the routed target). */
  readonly server?: Target | undefined;
}

export class Tracer {
  private readonly opts: TracerOptions;

  constructor(opts: TracerOptions) {
    this.opts = opts;
  }

  /**
   * Joins a request about to be forwarded to its trace: a span when it is traced (its `fields`,
   * [name, value, ...], then carry the span as the next hop's parent), else null (fields untouched).
   * The other side is given as SpanPeer's parts (an object per call was garbage per request).
   */
  start(
    fields: string[],
    direction: Direction,
    address: string,
    identity: string | null,
    server?: Target,
  ): TraceSpan | null {
    const span = joinTrace(fields, direction === 'inbound' ? 'server' : 'client', this.opts.sampleRatio);
    if (span !== null) this.remember(span, direction, address, identity, server);
    return span;
  }

  private remember(
    span: TraceSpan,
    direction: Direction,
    address: string,
    identity: string | null,
    server: Target | undefined,
  ): void {
    const own = this.opts.ownIdentity() ?? '';
    span.peerAddress = address;
    span.clientIdentity = direction === 'inbound' ? (identity ?? '') : own;
    span.serverIdentity = direction === 'inbound' ? own : (identity ?? '');
    span.server = server ?? null;
  }

  /** start() for a node:http2 header object (the HTTP/2 paths), rewritten in place when traced. */
  startObject(
    headers: HeaderObject,
    direction: Direction,
    address: string,
    identity: string | null,
    server?: Target,
  ): TraceSpan | null {
    const span = joinTraceObject(
      headers,
      direction === 'inbound' ? 'server' : 'client',
      this.opts.sampleRatio,
    );
    if (span !== null) this.remember(span, direction, address, identity, server);
    return span;
  }

  /**
   * Records a traced exchange that is over (`status` 0: no response was sent); `reason`: the
   * trellis-proxy-error reason when the exchange's own description does not give it (an attempt).
   */
  finish(
    span: TraceSpan,
    status: number,
    failed: boolean,
    exchange: DescribedExchange,
    reason?: string,
  ): void {
    this.opts.sink.add(finishedSpan(span, status, failed, exchange, reason));
    // The last attempt of a retried request this proxy started the trace of ends the request's span.
    const request = span.request;
    if (request !== null) {
      request.retryCount = span.retryCount;
      this.opts.sink.add(finishedSpan(request, status, failed, exchange, reason));
    }
  }

  /** The failed attempt of a retry ends: under a request span of its own when it is a root. */
  private finishAttempt(
    span: TraceSpan,
    status: number,
    exchange: DescribedExchange,
    reason: string | undefined,
  ): TraceSpan {
    const attempt = span.parentSpanId === null ? underRequestSpan(span) : span;
    this.opts.sink.add(finishedSpan(attempt, status, true, exchange, reason));
    return attempt;
  }

  /**
   * A retry of a traced request: the failed attempt's CLIENT span ends (`status` its answer, 0
   * none; `reason` why it failed when the proxy decided), and the next attempt gets its own span,
   * a sibling with the retry count one more, which the request's context fields (`fields`, as
   * start() left them) carry from now on. Returns the new span.
   */
  retry(
    span: TraceSpan,
    fields: string[],
    status: number,
    exchange: DescribedExchange,
    reason?: string,
  ): TraceSpan {
    const next = nextAttemptSpan(this.finishAttempt(span, status, exchange, reason));
    carryAttempt(fields, next);
    return next;
  }

  /** retry() for a node:http2 header object (the HTTP/2 paths). */
  retryObject(
    span: TraceSpan,
    headers: HeaderObject,
    status: number,
    exchange: DescribedExchange,
    reason?: string,
  ): TraceSpan {
    const next = nextAttemptSpan(this.finishAttempt(span, status, exchange, reason));
    carryAttemptObject(headers, next);
    return next;
  }

  close(): Promise<void> {
    return this.opts.sink.close();
  }
}

/** The port of an authority ("host", "host:port", "[v6]:port"): 80 when none is given, -1 when it is not one. */
function authorityPort(authority: string, colon: number): number {
  if (colon === -1) return 80;
  const n = authority.length - colon - 1;
  if (n === 0 || n > 5) return -1;
  let port = 0;
  for (let i = colon + 1; i < authority.length; i++) {
    const d = authority.charCodeAt(i) - 0x30;
    if (d < 0 || d > 9) return -1;
    port = port * 10 + d;
  }
  return port;
}

/** Where the port of an authority starts (its ':'), -1 when it has none after the host. */
function authorityColon(authority: string): number {
  const colon = authority.lastIndexOf(':');
  if (colon === -1) return -1;
  // The host before it is "[...]" (an IPv6 literal) or has no ':' of its own.
  if (authority.charCodeAt(0) === 0x5b && authority.indexOf(']') === colon - 1) return colon;
  return authority.indexOf(':') === colon ? colon : -1;
}

/**
 * The finished span handed to the sink: one object and one attribute list, reused for every span
 * of the process (SpanSink.add encodes a span before it returns and keeps nothing of it). A list
 * and a record per span, grown by push, were most of what tracing left to the garbage collector.
 */
class SpanRecord implements FinishedSpan {
  span!: TraceSpan;
  name = '';
  endMs = 0;
  readonly attributes: (string | number)[] = [];
  error = false;
  statusMessage = '';
  stableFrom = 0;
  /** Attributes put so far (the list's length is set to it when the span is complete). */
  private count = 0;

  put(key: string, value: string | number): void {
    const attrs = this.attributes;
    attrs[this.count++] = key;
    attrs[this.count++] = value;
  }

  // The last authority split (a proxy's requests mostly name the same one): its host and port.
  private authority = '';
  private host = '';
  private port = 80;

  /** server.address and server.port of an authority ("host", "host:port", "[v6]:port"). */
  putAuthority(authority: string): void {
    if (authority !== this.authority) {
      const colon = authorityColon(authority);
      const port = authorityPort(authority, colon);
      this.host = port === -1 || colon === -1 ? authority : authority.slice(0, colon);
      this.port = port === -1 ? 80 : port;
      this.authority = authority;
    }
    this.put('server.address', this.host);
    this.put('server.port', this.port);
  }

  /** Starts the next span: no attributes yet. */
  reset(): void {
    this.count = 0;
  }

  /** The attributes put from now on repeat from span to span (FinishedSpan.stableFrom). */
  markStable(): void {
    this.stableFrom = this.count;
  }

  /** Ends the list after the attributes put (it keeps its capacity for the next span). */
  seal(): void {
    if (this.attributes.length !== this.count) this.attributes.length = this.count;
  }
}

const record = new SpanRecord();

/** The one RequestFacts object (finishedSpan reads it before the next span is finished). */
const facts: RequestFacts = {
  direction: 'inbound',
  protocol: 'http1',
  method: '',
  authority: '',
  path: '',
  error: undefined,
};

/** What `exchange` tells a span, without an access log entry when it can. */
function requestFacts(exchange: DescribedExchange): RequestFacts {
  if (exchange.describeRequest !== undefined) {
    exchange.describeRequest(facts);
    return facts;
  }
  const e = exchange.accessLogEntry();
  facts.direction = e.direction;
  facts.protocol = e.protocol;
  facts.method = e.method;
  facts.authority = e.authority;
  facts.path = e.path;
  facts.error = e.error;
  return facts;
}

function finishedSpan(
  span: TraceSpan,
  status: number,
  failed: boolean,
  exchange: DescribedExchange,
  reason: string | undefined,
): FinishedSpan {
  const e = requestFacts(exchange);
  const proxyError = reason ?? e.error;
  const q = e.path.indexOf('?');
  const r = record;
  r.reset();
  // What changes from request to request.
  r.put('http.request.method', e.method);
  r.put('url.path', q === -1 ? e.path : e.path.slice(0, q));
  if (status > 0) r.put('http.response.status_code', status);
  if (span.kind !== 'server') {
    r.put('trellis.retry_count', span.retryCount);
    // OpenTelemetry's own attribute, recorded from the first resend on.
    if (span.retryCount > 0) r.put('http.request.resend_count', span.retryCount);
  }
  if (proxyError !== undefined) r.put('trellis.proxy_error', proxyError);
  const grpc = exchange.grpcStatus;
  if (grpc !== undefined && /^\d{1,2}$/.test(grpc)) {
    r.put('rpc.system', 'grpc');
    r.put('rpc.grpc.status_code', Number(grpc));
  }
  // What repeats for every request of a connection, peer or route: encoded once (trace-otlp.ts).
  r.markStable();
  r.put('url.scheme', 'http');
  const server = span.server;
  if (server !== null) {
    r.put('server.address', server.host);
    r.put('server.port', server.port);
  } else if (e.authority !== '') r.putAuthority(e.authority);
  if (span.peerAddress !== '') r.put('network.peer.address', span.peerAddress);
  if (span.userAgent !== '') r.put('user_agent.original', span.userAgent);
  r.put('network.protocol.name', 'http');
  r.put('trellis.direction', e.direction);
  r.put('trellis.protocol', e.protocol);
  if (span.clientIdentity !== '') r.put('trellis.client.identity', span.clientIdentity);
  if (span.serverIdentity !== '') r.put('trellis.server.identity', span.serverIdentity);
  const route = exchange.matchedRoute;
  if (route != null) {
    r.put('trellis.route', route.route.label);
    r.put('trellis.route.rule', route.ruleLabel);
  }
  r.seal();
  // HTTP semantic conventions: 5xx is an error on both sides, 4xx on the client side only.
  r.error = failed || status === 0 || status >= 500 || (span.kind !== 'server' && status >= 400);
  r.span = span;
  r.name = e.method === '' ? 'HTTP' : e.method;
  r.endMs = exchange.endedWallMs ?? wallNowMs();
  r.statusMessage = proxyError ?? '';
  return r;
}
