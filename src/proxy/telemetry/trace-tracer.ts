// A proxy's tracing: the hooks where requests are forwarded call start() (which joins the request
// to its trace and rewrites its context fields, trace-propagation.ts), and recordExchange
// (exchange-record.ts) calls finish() for an exchange that has a span: the span gets the
// OpenTelemetry HTTP semantic-convention attributes and Trellis's own from the exchange's
// description (the access log entry, built only for traced exchanges), and goes to the exporter.
// A proxy without a collector has no Tracer at all (null): its hooks cost one null check.
import type { DescribedExchange } from './exchange-record.ts';
import type { Direction } from './metrics.ts';
import {
  carryAttempt,
  carryAttemptObject,
  joinTrace,
  joinTraceObject,
  type HeaderObject,
} from './trace-propagation.ts';
import { nextAttemptSpan, wallNowMs, type FinishedSpan, type TraceSpan } from './trace-span.ts';
import type { SpanSink } from './trace-export.ts';
import type { Target } from '../../core/target.ts';

export interface TracerOptions {
  /** Share of requests without a sampling decision that start a trace (0..1). */
  readonly sampleRatio: number;
  readonly sink: SpanSink;
  /** This proxy's identity (SPIFFE ID), null without one. */
  readonly ownIdentity: () => string | null;
}

/** What a forwarding hook knows about the request's other side. */
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
   */
  start(fields: string[], direction: Direction, peer: SpanPeer): TraceSpan | null {
    const span = joinTrace(fields, direction === 'inbound' ? 'server' : 'client', this.opts.sampleRatio);
    if (span !== null) this.remember(span, direction, peer);
    return span;
  }

  private remember(span: TraceSpan, direction: Direction, peer: SpanPeer): void {
    const own = this.opts.ownIdentity() ?? '';
    span.peerAddress = peer.address;
    span.clientIdentity = direction === 'inbound' ? (peer.identity ?? '') : own;
    span.serverIdentity = direction === 'inbound' ? own : (peer.identity ?? '');
    span.server = peer.server ?? null;
  }

  /** start() for a node:http2 header object (the HTTP/2 paths), rewritten in place when traced. */
  startObject(headers: HeaderObject, direction: Direction, peer: SpanPeer): TraceSpan | null {
    const span = joinTraceObject(
      headers,
      direction === 'inbound' ? 'server' : 'client',
      this.opts.sampleRatio,
    );
    if (span !== null) this.remember(span, direction, peer);
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
    this.finish(span, status, true, exchange, reason);
    const next = nextAttemptSpan(span);
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
    this.finish(span, status, true, exchange, reason);
    const next = nextAttemptSpan(span);
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

/** host and port of an authority ("host", "host:port", "[v6]:port"); port 80 when none is given. */
export function splitAuthority(authority: string): { host: string; port: number } {
  const colon = authorityColon(authority);
  const port = authorityPort(authority, colon);
  if (port === -1) return { host: authority, port: 80 };
  return { host: colon === -1 ? authority : authority.slice(0, colon), port };
}

/** Where the port of an authority starts (its ':'), -1 when it has none after the host. */
function authorityColon(authority: string): number {
  const colon = authority.lastIndexOf(':');
  if (colon === -1) return -1;
  // The host before it is "[...]" (an IPv6 literal) or has no ':' of its own.
  if (authority.charCodeAt(0) === 0x5b && authority.indexOf(']') === colon - 1) return colon;
  return authority.indexOf(':') === colon ? colon : -1;
}

function finishedSpan(
  span: TraceSpan,
  status: number,
  failed: boolean,
  exchange: DescribedExchange,
  reason: string | undefined,
): FinishedSpan {
  const e = exchange.accessLogEntry();
  const proxyError = reason ?? e.error;
  const q = e.path.indexOf('?');
  const attrs: (string | number)[] = [
    'http.request.method',
    e.method,
    'url.path',
    q === -1 ? e.path : e.path.slice(0, q),
    'url.scheme',
    'http',
  ];
  if (status > 0) attrs.push('http.response.status_code', status);
  const server = span.server;
  if (server !== null) attrs.push('server.address', server.host, 'server.port', server.port);
  else if (e.authority !== '') {
    const { host, port } = splitAuthority(e.authority);
    attrs.push('server.address', host, 'server.port', port);
  }
  if (span.peerAddress !== '') attrs.push('network.peer.address', span.peerAddress);
  if (span.userAgent !== '') attrs.push('user_agent.original', span.userAgent);
  attrs.push(
    'network.protocol.name',
    'http',
    'trellis.direction',
    e.direction,
    'trellis.protocol',
    e.protocol,
  );
  if (span.clientIdentity !== '') attrs.push('trellis.client.identity', span.clientIdentity);
  if (span.serverIdentity !== '') attrs.push('trellis.server.identity', span.serverIdentity);
  if (span.kind === 'client') {
    attrs.push('trellis.retry_count', span.retryCount);
    // OpenTelemetry's own attribute, recorded from the first resend on.
    if (span.retryCount > 0) attrs.push('http.request.resend_count', span.retryCount);
  }
  if (proxyError !== undefined) attrs.push('trellis.proxy_error', proxyError);
  const route = exchange.matchedRoute;
  if (route != null) attrs.push('trellis.route', route.route.label, 'trellis.route.rule', route.ruleLabel);
  const grpc = exchange.grpcStatus;
  if (grpc !== undefined && /^\d{1,2}$/.test(grpc))
    attrs.push('rpc.system', 'grpc', 'rpc.grpc.status_code', Number(grpc));
  // HTTP semantic conventions: 5xx is an error on both sides, 4xx on the client side only.
  const error = failed || status === 0 || status >= 500 || (span.kind === 'client' && status >= 400);
  return {
    span,
    name: e.method === '' ? 'HTTP' : e.method,
    endMs: wallNowMs(),
    attributes: attrs,
    error,
    statusMessage: proxyError ?? '',
  };
}
