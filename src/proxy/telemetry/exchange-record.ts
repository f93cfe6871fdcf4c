// One finished HTTP exchange, recorded in one place whatever its protocol, direction or path
// through the proxy (forwarded, refused by policy, answered by the proxy itself): the golden
// metrics always, and the access log line when an access log is configured. The line's fields are
// gathered only then (the exchange describes itself through accessLogEntry), so a proxy without an
// access log builds nothing more per request than the metrics need. A traced exchange (one the
// forwarding hook gave a span, trace-tracer.ts) also ends its span here, for every protocol.
// The route rule that forwarded an outbound exchange (matchedRoute) names the route in both.
// A live tap (tap-hub.ts) is offered the exchange here too; without one attached this costs one
// null check (the hub hangs itself on the metrics object, which every path already carries).
import type { AccessLog, AccessLogEntry } from './access-log.ts';
import type { Direction, HttpProtocol, ProxyMetrics } from './metrics.ts';
import type { PeerSeries } from './peer-metrics.ts';
import type { TraceSpan } from './trace-span.ts';
import type { RequestFacts, Tracer } from './trace-tracer.ts';

/** Where finished exchanges go while a tap is attached (tap-hub.ts); it asks the exchange for more. */
export interface ExchangeTap {
  offer(
    direction: Direction,
    protocol: HttpProtocol,
    status: number,
    latencyMs: number,
    exchange: DescribedExchange,
  ): void;
}

/** A tap's view of an exchange's other side (asked only when a tap wants the exchange). */
export interface TapPeer {
  /** Inbound: the client's address; outbound: the endpoint's ("HOST:PORT"); '' when unknown. */
  readonly address: string;
  /** Inbound: the client's verified identity (mTLS); outbound: the endpoint's, when it is meshed. */
  readonly identity: string | null;
}

/**
 * The route rule an outbound exchange was forwarded by: the compiled rule itself
 * (core/routes/matcher.ts CompiledRule), handed over by reference once per exchange; its labels
 * were made when the route table was compiled, so naming the route costs no string per request.
 */
export interface ExchangeRoute {
  readonly route: { readonly kind: string; readonly label: string };
  readonly ruleLabel: string;
}

/** Where exchanges are recorded: every handler's context has these two. */
export interface ExchangeRecords {
  readonly metrics: Pick<ProxyMetrics, 'responseFinished'> & { readonly tap?: ExchangeTap | null };
  readonly accessLog: AccessLog | null;
  /** Where traced exchanges' spans go (null or absent: tracing is off). */
  readonly tracer?: Tracer | null;
}

/** An exchange that can describe itself for the access log (asked only when there is one). */
export interface DescribedExchange {
  accessLogEntry(): AccessLogEntry;
  /** The exchange's span when it is traced (trace-tracer.ts); null or absent when not. */
  readonly traceSpan?: TraceSpan | null;
  /** When the response's end went out (ms since the Unix epoch), when known: the span ends there. */
  readonly endedWallMs?: number | undefined;
  /** gRPC exchanges: the grpc-status the response ended with (a span attribute). */
  readonly grpcStatus?: string | undefined;
  /** The series of the workload at the other end (peer-metrics.ts); null or absent: not counted by peer. */
  readonly peerSeries?: PeerSeries | null;
  /** Outbound: the route rule the exchange was forwarded by; null or absent when none matched. */
  readonly matchedRoute?: ExchangeRoute | null;
  /** Who is at the other end, for a live tap; absent: the tap knows only the access log's peer. */
  tapPeer?(): TapPeer;
  /**
   * A traced exchange's span asks only these of accessLogEntry(): written into `out` (the tracer's
   * one object), no entry is built per traced request. Absent: the tracer asks accessLogEntry().
   */
  describeRequest?(out: RequestFacts): void;
}

/**
 * Records one finished exchange. `status` is what the client got (0: no response), `latencyMs`
 * the time the latency histogram counts, `failed` its classification.
 */
export function recordExchange(
  to: ExchangeRecords,
  direction: Direction,
  protocol: HttpProtocol,
  status: number,
  latencyMs: number,
  failed: boolean,
  exchange: DescribedExchange,
): void {
  to.metrics.responseFinished(direction, protocol, status, latencyMs, failed);
  exchange.peerSeries?.record(status, latencyMs, failed);
  const tap = to.metrics.tap;
  if (tap != null) tap.offer(direction, protocol, status, latencyMs, exchange);
  if (to.accessLog !== null) to.accessLog.record(exchange.accessLogEntry());
  const span = exchange.traceSpan;
  if (span != null && to.tracer != null) to.tracer.finish(span, status, failed, exchange);
}
