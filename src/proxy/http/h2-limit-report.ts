// What happens when an HTTP/2 peer runs into one of the proxy's limits (src/proxy/h2/limits.ts):
// it is counted (trellis_h2_limit_exceeded_total{direction, limit}) and logged, at most one line
// per interval, saying how many more hits it left out, so a flood of attacks cannot become a
// flood of log lines.
import type { Logger } from '../../core/log.ts';
import { LOG_THROTTLE_INTERVAL_MS, LogThrottle } from '../../core/log-rate-limit.ts';
import type { H2Limit } from '../h2/limits.ts';
import type { Direction, ProxyMetrics } from '../telemetry/metrics.ts';

export class H2LimitReport {
  private readonly metrics: Pick<ProxyMetrics, 'h2LimitExceeded'>;
  private readonly log: Logger;
  private readonly direction: Direction;
  private readonly throttle: LogThrottle;

  constructor(
    metrics: Pick<ProxyMetrics, 'h2LimitExceeded'>,
    log: Logger,
    direction: Direction,
    now: () => number = Date.now,
  ) {
    this.metrics = metrics;
    this.log = log;
    this.direction = direction;
    this.throttle = new LogThrottle(LOG_THROTTLE_INTERVAL_MS, now);
  }

  /** `peer` (its identity or address) ran into `limit`; `message` says how. */
  hit(limit: H2Limit, message: string, peer: string): void {
    this.metrics.h2LimitExceeded(this.direction, limit);
    this.throttle.note((skipped) =>
      this.log.warn('an HTTP/2 peer ran into a limit', {
        limit,
        peer,
        detail: message,
        direction: this.direction,
        notLoggedSince: skipped,
      }),
    );
  }
}
