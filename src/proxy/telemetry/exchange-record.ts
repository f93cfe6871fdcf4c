// One finished HTTP exchange, recorded in one place whatever its protocol, direction or path
// through the proxy (forwarded, refused by policy, answered by the proxy itself): the golden
// metrics always, and the access log line when an access log is configured. The line's fields are
// gathered only then (the exchange describes itself through accessLogEntry), so a proxy without an
// access log builds nothing more per request than the metrics need.
import type { AccessLog, AccessLogEntry } from './access-log.ts';
import type { Direction, HttpProtocol, ProxyMetrics } from './metrics.ts';

/** Where exchanges are recorded: every handler's context has these two. */
export interface ExchangeRecords {
  readonly metrics: Pick<ProxyMetrics, 'responseFinished'>;
  readonly accessLog: AccessLog | null;
}

/** An exchange that can describe itself for the access log (asked only when there is one). */
export interface DescribedExchange {
  accessLogEntry(): AccessLogEntry;
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
  if (to.accessLog !== null) to.accessLog.record(exchange.accessLogEntry());
}
