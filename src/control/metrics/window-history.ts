// The successive snapshots of one proxy (of any kind: its golden metrics, its route series), kept
// long enough to answer a window of up to `maxWindowMs`, in bounded memory: every snapshot of the
// last `denseMs`, older ones thinned to one per `sparseStepMs` (a window needs only its two ends,
// and whether the proxy restarted between them, which a kept snapshot inherits from those dropped
// before it). With the defaults (10 min, 65 s dense, 15 s steps) and a scrape every 2 s that is at
// most about 70 snapshots. A window runs from the newest snapshot back to the newest one at least
// the window older (the oldest while the history is shorter), so the span it covers is reported
// with it: at least the window asked for once the history is long enough, at most one step longer.

/** A snapshot: taken at `atMs`. */
export interface Timed {
  readonly atMs: number;
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

/** The two ends of a window; `restarted`: the proxy restarted in between (the newest alone counts). */
export interface WindowSpan<S extends Timed> {
  readonly newest: S;
  readonly base: S;
  readonly restarted: boolean;
  /** newest.atMs - base.atMs, in seconds. */
  readonly seconds: number;
}

/** A kept snapshot; `restarted`: a counter went down since the kept snapshot before it. */
interface Entry<S> {
  readonly snapshot: S;
  restarted: boolean;
}

export class WindowHistory<S extends Timed> {
  private readonly bounds: HistoryBounds;
  private readonly restartedBetween: (older: S, newer: S) => boolean;
  private entries: Entry<S>[] = [];

  /** `restartedBetween`: whether a counter went down from `older` to `newer`. */
  constructor(
    restartedBetween: (older: S, newer: S) => boolean,
    bounds: HistoryBounds = DEFAULT_HISTORY_BOUNDS,
  ) {
    this.restartedBetween = restartedBetween;
    this.bounds = bounds;
  }

  /** How many snapshots are held (for tests of the bound). */
  get size(): number {
    return this.entries.length;
  }

  latest(): S | null {
    return this.entries[this.entries.length - 1]?.snapshot ?? null;
  }

  /** Adds the newest snapshot, then forgets what no window needs. */
  push(snapshot: S): void {
    const latest = this.latest();
    this.entries.push({ snapshot, restarted: latest !== null && this.restartedBetween(latest, snapshot) });
    const now = snapshot.atMs;
    const { maxWindowMs, denseMs, sparseStepMs } = this.bounds;
    // Keep the newest snapshot that is at least the longest window old as the base of its deltas.
    let first = 0;
    while (first + 1 < this.entries.length && this.entries[first + 1]!.snapshot.atMs <= now - maxWindowMs)
      first++;
    const kept: Entry<S>[] = [];
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

  /** The newest snapshot and the base of `windowMs`; null before two. */
  span(windowMs: number): WindowSpan<S> | null {
    const n = this.entries.length;
    if (n < 2) return null;
    const newest = this.entries[n - 1]!.snapshot;
    let base = 0;
    while (base + 1 < n - 1 && this.entries[base + 1]!.snapshot.atMs <= newest.atMs - windowMs) base++;
    const oldest = this.entries[base]!.snapshot;
    return {
      newest,
      base: oldest,
      restarted: this.entries.slice(base + 1).some((e) => e.restarted),
      seconds: (newest.atMs - oldest.atMs) / 1000,
    };
  }
}
