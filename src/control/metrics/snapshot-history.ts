// The successive golden-metrics snapshots of one proxy's traffic in one direction (a
// WindowHistory, window-history.ts, which bounds them), and what the proxy did over a window:
// `trellis stat -t WINDOW` for any window up to 10 minutes.
import { bucketDeltas, type ProxySnapshot } from '../../core/golden-metrics.ts';
import type { CumulativeBucket } from '../../core/prom-parse.ts';
import { DEFAULT_HISTORY_BOUNDS, WindowHistory, type HistoryBounds } from './window-history.ts';

export { DEFAULT_HISTORY_BOUNDS, type HistoryBounds } from './window-history.ts';

/** What one instance did over a window. */
export interface WindowDelta {
  readonly responses: number;
  readonly successes: number;
  /** The span the delta covers, in seconds. */
  readonly seconds: number;
  readonly latencyBuckets: readonly CumulativeBucket[];
  readonly readBytes: number;
  readonly writeBytes: number;
}

/** Whether a counter went down between two snapshots: the proxy restarted in between. */
function restartedBetween(older: ProxySnapshot, newer: ProxySnapshot): boolean {
  return (
    newer.responses < older.responses ||
    newer.successes < older.successes ||
    newer.readBytes < older.readBytes ||
    newer.writeBytes < older.writeBytes
  );
}

export class SnapshotHistory extends WindowHistory<ProxySnapshot> {
  constructor(bounds: HistoryBounds = DEFAULT_HISTORY_BOUNDS) {
    super(restartedBetween, bounds);
  }

  /** Newest minus the base of `windowMs` (restarted in between: the newest alone); null before two. */
  delta(windowMs: number): WindowDelta | null {
    const span = this.span(windowMs);
    if (span === null) return null;
    const { newest, base, restarted } = span;
    const since = (pick: (s: ProxySnapshot) => number): number =>
      restarted ? pick(newest) : pick(newest) - pick(base);
    return {
      responses: since((s) => s.responses),
      successes: since((s) => s.successes),
      seconds: span.seconds,
      latencyBuckets: bucketDeltas(newest.latencyBuckets, restarted ? [] : base.latencyBuckets),
      readBytes: since((s) => s.readBytes),
      writeBytes: since((s) => s.writeBytes),
    };
  }
}
