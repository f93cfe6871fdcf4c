// What one scrape of one proxy says about its routes (the trellis_route_* families of
// src/proxy/telemetry/route-metrics.ts: requests by outcome, latency, retries, per parent, route
// and backend) and its circuit breakers (trellis_breaker_events_total per backend), and what the
// proxy did over a window: the newer snapshot minus the older, per series (a series absent from
// the older one counts from 0; after a restart the newer alone counts). Memory: at most
// MAX_ROUTE_SERIES_PER_INSTANCE series and MAX_BREAKER_BACKENDS backends per snapshot (the rest
// is left out and counted), and a series whose counts did not change since the previous snapshot
// is the previous one's object, so an idle route costs nothing per snapshot. A changed one costs
// about 250 bytes: with ~70 snapshots held (window-history.ts), a proxy whose 500 series all
// change at every scrape holds ~9 MB of the control plane's heap (measured), an idle one ~0.
import { bucketDeltas } from '../../core/golden-metrics.ts';
import { parseSampleValue, type CumulativeBucket, type PromSample } from '../../core/prom-parse.ts';
import {
  ROUTE_DURATION,
  ROUTE_LABELS,
  ROUTE_REQUESTS,
  ROUTE_RETRIES,
} from '../../core/route-metric-names.ts';

/** Series kept per proxy and snapshot (the proxy itself records at most 2,000). */
export const MAX_ROUTE_SERIES_PER_INSTANCE = 500;
/** Backends whose breaker events are kept per proxy and snapshot. */
export const MAX_BREAKER_BACKENDS = 500;

/** Who a route series is for, as the proxy labels it. */
export interface RouteSeriesLabels {
  readonly parent_namespace: string;
  readonly parent_name: string;
  readonly parent_port: number;
  readonly route_kind: string;
  readonly route_namespace: string;
  readonly route_name: string;
  readonly backend_namespace: string;
  readonly backend_name: string;
  readonly backend_port: number;
}

/** The counters of one route series (totals since the proxy started, or over a window). */
export interface RouteCounts {
  readonly success: number;
  readonly failure: number;
  readonly timeout: number;
  readonly retried: number;
  readonly budgetExhausted: number;
  /** Cumulative latency buckets in seconds, sorted by bound. */
  readonly latency: readonly CumulativeBucket[];
}

export interface RouteSeriesCounts extends RouteCounts {
  readonly labels: RouteSeriesLabels;
}

/**
 * One series as a snapshot keeps it: the latency as counts per bound in a typed array, the bounds
 * and the key shared with the snapshot before (about 250 bytes a series with 14 bounds).
 */
export interface StoredSeries extends Omit<RouteCounts, 'latency'> {
  readonly key: string;
  readonly labels: RouteSeriesLabels;
  /** Sorted; the cumulative count at each is `counts[i]`. */
  readonly bounds: readonly number[];
  readonly counts: Float64Array;
}

/** One backend's circuit breaker events (trellis_breaker_events_total). */
export interface BreakerCounts {
  readonly tripped: number;
  readonly allTripped: number;
  readonly overflow: number;
}

export interface RouteSnapshot {
  readonly atMs: number;
  /** By series key (routeSeriesKey). */
  readonly series: ReadonlyMap<string, StoredSeries>;
  /** By the proxy's backend label ("web.shop.svc:80"). */
  readonly breakers: ReadonlyMap<string, BreakerCounts>;
  /** Series and backends left out over the bounds. */
  readonly dropped: number;
}

const REQUESTS = ROUTE_REQUESTS;
const RETRIES = ROUTE_RETRIES;
const LATENCY_BUCKET = `${ROUTE_DURATION}_bucket`;
const BREAKER_EVENTS = 'trellis_breaker_events_total';

/** The key of a series: its label values, in order. */
function seriesKey(labels: Readonly<Record<string, string>>): string {
  let key = '';
  for (const name of ROUTE_LABELS) key += `${labels[name] ?? ''}\u0000`;
  return key;
}

interface Building {
  labels: Readonly<Record<string, string>>;
  success: number;
  failure: number;
  timeout: number;
  retried: number;
  budgetExhausted: number;
  latency: Map<number, number>;
}

/** Whether a page declared its breakers (any trellis_breaker_events_total sample). */
export function hasBreakers(samples: readonly PromSample[]): boolean {
  return samples.some((s) => s.name === BREAKER_EVENTS);
}

/**
 * Reads the route and breaker families of one scrape; `previous` (the proxy's last snapshot)
 * lends its objects to series that did not change.
 */
export function routeSnapshot(
  samples: readonly PromSample[],
  atMs: number,
  previous: RouteSnapshot | null,
): RouteSnapshot {
  const building = new Map<string, Building>();
  const breakers = new Map<string, { tripped: number; allTripped: number; overflow: number }>();
  // Keys left out, to count each once (the page is bounded: 8 MiB).
  const dropped = new Set<string>();
  for (const s of samples) {
    if (s.name === BREAKER_EVENTS) {
      const backend = s.labels.backend ?? '';
      let b = breakers.get(backend);
      if (b === undefined) {
        if (breakers.size >= MAX_BREAKER_BACKENDS) {
          dropped.add(`breaker\u0000${backend}`);
          continue;
        }
        breakers.set(backend, (b = { tripped: 0, allTripped: 0, overflow: 0 }));
      }
      const event = s.labels.event;
      if (event === 'tripped') b.tripped += s.value;
      else if (event === 'all_tripped') b.allTripped += s.value;
      else if (event === 'overflow') b.overflow += s.value;
      continue;
    }
    if (s.name !== REQUESTS && s.name !== RETRIES && s.name !== LATENCY_BUCKET) continue;
    if (!Number.isFinite(s.value) || s.value < 0) continue;
    const key = seriesKey(s.labels);
    let b = building.get(key);
    if (b === undefined) {
      if (building.size >= MAX_ROUTE_SERIES_PER_INSTANCE) {
        dropped.add(key);
        continue;
      }
      b = {
        labels: s.labels,
        success: 0,
        failure: 0,
        timeout: 0,
        retried: 0,
        budgetExhausted: 0,
        latency: new Map(),
      };
      building.set(key, b);
    }
    const outcome = s.labels.outcome;
    if (s.name === LATENCY_BUCKET) {
      const le = parseSampleValue(s.labels.le ?? '');
      if (le !== null && !Number.isNaN(le)) b.latency.set(le, (b.latency.get(le) ?? 0) + s.value);
    } else if (s.name === REQUESTS) {
      if (outcome === 'success') b.success += s.value;
      else if (outcome === 'failure') b.failure += s.value;
      else if (outcome === 'timeout') b.timeout += s.value;
    } else if (outcome === 'retried') b.retried += s.value;
    else if (outcome === 'budget_exhausted') b.budgetExhausted += s.value;
  }
  const series = new Map<string, StoredSeries>();
  let lastBounds: readonly number[] = [];
  for (const [key, b] of building) {
    const sorted = [...b.latency.entries()].sort((x, y) => x[0] - y[0]);
    const counts = Float64Array.from(sorted, ([, count]) => count);
    const known = previous?.series.get(key);
    // Bounds are the same from series to series and scrape to scrape: one array serves them all.
    let bounds = known?.bounds ?? lastBounds;
    if (
      !sameNumbers(
        bounds,
        sorted.map(([le]) => le),
      )
    )
      bounds = sorted.map(([le]) => le);
    lastBounds = bounds;
    if (known !== undefined && known.bounds === bounds && sameCounts(known, b, counts)) {
      series.set(known.key, known);
      continue;
    }
    series.set(known?.key ?? key, {
      key: known?.key ?? key,
      labels: known?.labels ?? labelsOf(b.labels),
      success: b.success,
      failure: b.failure,
      timeout: b.timeout,
      retried: b.retried,
      budgetExhausted: b.budgetExhausted,
      bounds,
      counts,
    });
  }
  return { atMs, series, breakers, dropped: dropped.size };
}

function labelsOf(l: Readonly<Record<string, string>>): RouteSeriesLabels {
  return {
    parent_namespace: l.parent_namespace ?? '',
    parent_name: l.parent_name ?? '',
    parent_port: Number(l.parent_port ?? 0),
    route_kind: l.route_kind ?? '',
    route_namespace: l.route_namespace ?? '',
    route_name: l.route_name ?? '',
    backend_namespace: l.backend_namespace ?? '',
    backend_name: l.backend_name ?? '',
    backend_port: Number(l.backend_port ?? 0),
  };
}

function sameNumbers(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function sameCounts(a: StoredSeries, b: Omit<RouteCounts, 'latency'>, counts: Float64Array): boolean {
  return (
    a.success === b.success &&
    a.failure === b.failure &&
    a.timeout === b.timeout &&
    a.retried === b.retried &&
    a.budgetExhausted === b.budgetExhausted &&
    sameNumbers(a.counts, counts)
  );
}

/** The cumulative buckets of a stored series. */
function bucketsOf(s: StoredSeries): CumulativeBucket[] {
  return s.bounds.map((le, i) => ({ le, count: s.counts[i]! }));
}

const COUNTERS = ['success', 'failure', 'timeout', 'retried', 'budgetExhausted'] as const;

const NOTHING: RouteCounts = {
  success: 0,
  failure: 0,
  timeout: 0,
  retried: 0,
  budgetExhausted: 0,
  latency: [],
};

/** Whether a counter went down (or a series or backend went away) from `older` to `newer`: a restart. */
export function routesRestarted(older: RouteSnapshot, newer: RouteSnapshot): boolean {
  for (const [key, was] of older.series) {
    const now = newer.series.get(key);
    if (now === undefined || COUNTERS.some((c) => now[c] < was[c])) return true;
    const total = (c: Float64Array): number => c[c.length - 1] ?? 0;
    if (total(now.counts) < total(was.counts)) return true;
  }
  for (const [backend, was] of older.breakers) {
    const now = newer.breakers.get(backend);
    if (now === undefined || now.tripped < was.tripped || now.allTripped < was.allTripped) return true;
  }
  return false;
}

/** What one proxy did over a window, per series and per breaker backend. */
export interface RouteWindow {
  readonly series: readonly RouteSeriesCounts[];
  readonly breakers: ReadonlyMap<string, BreakerCounts>;
}

/** `newest` minus `base` (restarted: `newest` alone), for every series of `newest`. */
export function routeWindow(newest: RouteSnapshot, base: RouteSnapshot, restarted: boolean): RouteWindow {
  const series: RouteSeriesCounts[] = [];
  for (const [key, now] of newest.series) {
    const was = restarted ? undefined : base.series.get(key);
    if (was === now) {
      series.push({ ...NOTHING, labels: now.labels }); // unchanged: nothing happened
      continue;
    }
    const d = (c: (typeof COUNTERS)[number]): number => now[c] - (was?.[c] ?? 0);
    series.push({
      labels: now.labels,
      success: d('success'),
      failure: d('failure'),
      timeout: d('timeout'),
      retried: d('retried'),
      budgetExhausted: d('budgetExhausted'),
      latency: bucketDeltas(bucketsOf(now), was === undefined ? [] : bucketsOf(was)),
    });
  }
  const breakers = new Map<string, BreakerCounts>();
  for (const [backend, now] of newest.breakers) {
    const was = restarted ? undefined : base.breakers.get(backend);
    breakers.set(backend, {
      tripped: now.tripped - (was?.tripped ?? 0),
      allTripped: now.allTripped - (was?.allTripped ?? 0),
      overflow: now.overflow - (was?.overflow ?? 0),
    });
  }
  return { series, breakers };
}
