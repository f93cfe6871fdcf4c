// The successive snapshots of one proxy's traffic in one direction, kept long enough to answer
// `trellis stat -t WINDOW` for any window up to `maxWindowMs`, in bounded memory: every snapshot
// of the last `denseMs`, older ones thinned to one per `sparseStepMs` (a delta needs only its two
// ends, and whether the proxy restarted between them, which a kept snapshot inherits from those
// dropped before it). With the defaults (10 min, 65 s dense, 15 s steps) and a scrape every 2 s
// that is at most about 70 snapshots. A window's delta runs from the newest snapshot back to the newest one
// at least the window older (the oldest while the history is shorter), so the span it covers is
// reported with it: at least the window asked for once the history is long enough, at most one
// step longer.
import { bucketDeltas, type ProxySnapshot } from '../../core/golden-metrics.ts';
import type { CumulativeBucket } from '../../core/prom-parse.ts';

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

export interface HistoryBounds {
  /** The longest window a delta may be asked for. */
  readonly maxWindowMs: number;
  /** Snapshots younger than this are all kept. */
  readonly denseMs: number;
  /** Older ones are kept at least this far apart. */
  readonly sparseStepMs: number;
}

export const DEFAULT_HISTORY_BOUNDS: HistoryBounds = {
  maxWindowMs: 600_000,
  // A little over a minute, so that `-t 1m` is answered without a thinned base.
  denseMs: 65_000,
  sparseStepMs: 15_000,
};

/** Whether a counter went down between two snapshots: the proxy restarted in between. */
function restartedBetween(older: ProxySnapshot, newer: ProxySnapshot): boolean {
  return (
    newer.responses < older.responses ||
    newer.successes < older.successes ||
    newer.readBytes < older.readBytes ||
    newer.writeBytes < older.writeBytes
  );
}

/** A kept snapshot; `restarted`: a counter went down since the kept snapshot before it. */
interface Entry {
  readonly snapshot: ProxySnapshot;
  restarted: boolean;
}

export class SnapshotHistory {
  private readonly bounds: HistoryBounds;
  private entries: Entry[] = [];

  constructor(bounds: HistoryBounds = DEFAULT_HISTORY_BOUNDS) {
    this.bounds = bounds;
  }

  /** How many snapshots are held (for tests of the bound). */
  get size(): number {
    return this.entries.length;
  }

  latest(): ProxySnapshot | null {
    return this.entries[this.entries.length - 1]?.snapshot ?? null;
  }

  /** Adds the newest snapshot, then forgets what no window needs. */
  push(snapshot: ProxySnapshot): void {
    const latest = this.latest();
    this.entries.push({ snapshot, restarted: latest !== null && restartedBetween(latest, snapshot) });
    const now = snapshot.atMs;
    const { maxWindowMs, denseMs, sparseStepMs } = this.bounds;
    // Keep the newest snapshot that is at least the longest window old as the base of its deltas.
    let first = 0;
    while (first + 1 < this.entries.length && this.entries[first + 1]!.snapshot.atMs <= now - maxWindowMs)
      first++;
    const kept: Entry[] = [];
    let restartDropped = false;
    for (let i = first; i < this.entries.length; i++) {
      const entry = this.entries[i]!;
      const previous = kept[kept.length - 1];
      const at = entry.snapshot.atMs;
      if (previous === undefined || at > now - denseMs || at - previous.snapshot.atMs >= sparseStepMs) {
        if (restartDropped) entry.restarted = true;
        restartDropped = false;
        kept.push(entry);
      } else {
        restartDropped ||= entry.restarted;
      }
    }
    this.entries = kept;
  }

  /** Newest minus the base of `windowMs` (restarted in between: the newest alone); null before two. */
  delta(windowMs: number): WindowDelta | null {
    const n = this.entries.length;
    if (n < 2) return null;
    const newest = this.entries[n - 1]!.snapshot;
    let base = 0;
    while (base + 1 < n - 1 && this.entries[base + 1]!.snapshot.atMs <= newest.atMs - windowMs) base++;
    const oldest = this.entries[base]!.snapshot;
    const restarted = this.entries.slice(base + 1).some((e) => e.restarted);
    const since = (pick: (s: ProxySnapshot) => number): number =>
      restarted ? pick(newest) : pick(newest) - pick(oldest);
    return {
      responses: since((s) => s.responses),
      successes: since((s) => s.successes),
      seconds: (newest.atMs - oldest.atMs) / 1000,
      latencyBuckets: bucketDeltas(newest.latencyBuckets, restarted ? [] : oldest.latencyBuckets),
      readBytes: since((s) => s.readBytes),
      writeBytes: since((s) => s.writeBytes),
    };
  }
}
