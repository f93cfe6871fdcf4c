// Containing a fault of the proxy's own code to the connection or stream it happened on. Peers'
// input is refused by the parsers long before it could make a handler throw; what is left is a
// bug of ours. Node would end the whole process on an exception thrown from a socket event or a
// timer, taking every other connection with it, so each entry point from the event loop into a
// handler (socket events, timers, the callbacks of the pools) catches what its handler throws,
// reports it here and closes only what that handler owned. The own HTTP/2 connection
// (h2/connection.ts, its try around onBytes) and the node:http2 exchange (h2-exchange.ts guard)
// do the same in their own terms.
import type { Logger } from '../core/log.ts';
import type { Direction, ProxyMetrics } from './telemetry/metrics.ts';

/** What reporting a fault needs: the handler's logger, metrics and direction. */
export interface FaultScope {
  readonly log: Logger;
  readonly metrics: Pick<ProxyMetrics, 'proxyError'>;
  readonly direction: Direction;
}

/**
 * Counts the fault as `internal-error` and logs it with its stack (the logger's rate limit
 * applies: a bug that every request hits costs a few lines a second, not one per request).
 * `where` names the entry point ("h1 downstream data", ...). Never throws.
 */
export function reportFault(scope: FaultScope, where: string, err: unknown): void {
  try {
    scope.metrics.proxyError(scope.direction, 'internal-error');
    scope.log.error('handler fault: its connection is closed', { code: 'TRELLIS_ERR_INTERNAL', where, err });
  } catch {
    // Reporting must not turn a contained fault into an uncontained one.
  }
}
