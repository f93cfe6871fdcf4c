// The live part of `trellis routes SERVICE`: the control plane's numbers per route and per (route,
// backend) (GET /api/route-stats, src/control/metrics/route-stats.ts) joined with the routes and
// backends the Service's view lists (src/control/routes/view.ts), so a route or backend without
// traffic in the window still has its row. Two tables, as `linkerd viz routes` and `viz stat`
// print them: routes with SUCCESS, RPS, LATENCY_P50/P95/P99, RETRIES, TIMEOUTS; backends with
// their weights, SUCCESS, RPS, LATENCY_P99 and circuit breaker state. -o json: the same rows.
import type { BreakerSummary } from '../control/metrics/breaker-state.ts';
import type { BackendStat, LiveStats, RouteStat, RouteStatsAnswer } from '../control/metrics/route-stats.ts';
import type { ServiceRoutesView } from '../control/routes/view.ts';
import { alignColumns } from './columns.ts';
import { formatLatency, formatPercent, formatRps } from './live-view.ts';

export interface RouteLiveRow extends LiveStats {
  readonly kind: string;
  readonly namespace: string;
  readonly name: string;
  /**
   * Whether the route is attached to the Service now (false: numbers of a route since removed;
   * null: unknown, with --control there is no view of the routes at hand).
   */
  readonly attached: boolean | null;
}

export interface BackendLiveRow extends LiveStats {
  readonly route_kind: string;
  readonly route_namespace: string;
  readonly route_name: string;
  readonly namespace: string;
  readonly name: string;
  readonly port: number | null;
  /** Its weight in each rule of the route that names it (empty: not named by the route now). */
  readonly weights: readonly number[];
  readonly breaker: BreakerSummary | null;
}

export interface LiveRows {
  /** The span the numbers cover, in seconds (null: no numbers yet). */
  readonly window_s: number | null;
  /** Why there are no numbers (no control plane, ...); null when there are. */
  readonly stats_error: string | null;
  readonly route_stats: readonly RouteLiveRow[];
  readonly backend_stats: readonly BackendLiveRow[];
}

const NO_TRAFFIC: LiveStats = {
  requests: 0,
  successes: 0,
  failures: 0,
  timeouts: 0,
  retries: 0,
  budget_exhausted: 0,
  success: null,
  rps: null,
  retries_per_s: null,
  retry_ratio: null,
  latency_p50_ms: null,
  latency_p95_ms: null,
  latency_p99_ms: null,
};

const STAT_FIELDS = Object.keys(NO_TRAFFIC) as (keyof LiveStats)[];

/** The numbers of a row (without its names). */
function statsOf(s: LiveStats): LiveStats {
  return Object.fromEntries(STAT_FIELDS.map((k) => [k, s[k]])) as unknown as LiveStats;
}

const routeKey = (kind: string, namespace: string, name: string): string => `${kind}/${namespace}/${name}`;

/** The rows of both tables: the view's routes and backends, with the numbers where there are some. */
export function liveRows(
  view: ServiceRoutesView | null,
  answer: RouteStatsAnswer | null,
  error: string | null,
): LiveRows {
  const routeStats = new Map<string, RouteStat>();
  for (const r of answer?.routes ?? [])
    routeStats.set(routeKey(r.route_kind, r.route_namespace, r.route_name), r);
  const backendStats = new Map<string, BackendStat>();
  const backendKey = (route: string, ns: string, name: string, port: number | null): string =>
    `${route}\u0000${ns}/${name}:${port ?? '-'}`;
  for (const b of answer?.backends ?? [])
    backendStats.set(
      backendKey(
        routeKey(b.route_kind, b.route_namespace, b.route_name),
        b.backend_namespace,
        b.backend_name,
        b.backend_port,
      ),
      b,
    );

  const routes: RouteLiveRow[] = [];
  const backends: BackendLiveRow[] = [];
  const listedBackends = new Set<string>();
  for (const route of view?.routes ?? []) {
    const key = routeKey(route.kind, route.namespace, route.name);
    const stats = routeStats.get(key);
    routeStats.delete(key);
    routes.push({
      kind: route.kind,
      namespace: route.namespace,
      name: route.name,
      attached: true,
      ...statsOf(stats ?? NO_TRAFFIC),
    });
    const weights = new Map<string, { ns: string; name: string; port: number | null; weights: number[] }>();
    for (const rule of route.rules)
      for (const b of rule.backends) {
        const k = backendKey(key, b.namespace, b.name, b.port);
        const known = weights.get(k);
        if (known === undefined)
          weights.set(k, { ns: b.namespace, name: b.name, port: b.port, weights: [b.weight] });
        else known.weights.push(b.weight);
      }
    for (const [k, b] of weights) {
      const stats = backendStats.get(k);
      listedBackends.add(k);
      backends.push({
        route_kind: route.kind,
        route_namespace: route.namespace,
        route_name: route.name,
        namespace: b.ns,
        name: b.name,
        port: b.port,
        weights: b.weights,
        ...statsOf(stats ?? NO_TRAFFIC),
        breaker: stats?.breaker ?? null,
      });
    }
  }
  // Numbers of routes and backends the view does not list (removed since, or no view at hand).
  for (const r of routeStats.values())
    routes.push({
      kind: r.route_kind,
      namespace: r.route_namespace,
      name: r.route_name,
      attached: view === null ? null : false,
      ...statsOf(r),
    });
  for (const [k, b] of backendStats) {
    if (listedBackends.has(k)) continue;
    backends.push({
      route_kind: b.route_kind,
      route_namespace: b.route_namespace,
      route_name: b.route_name,
      namespace: b.backend_namespace,
      name: b.backend_name,
      port: b.backend_port,
      weights: [],
      ...statsOf(b),
      breaker: b.breaker,
    });
  }
  return {
    window_s: answer?.window_s ?? null,
    stats_error: error,
    route_stats: routes,
    backend_stats: backends,
  };
}

/** "httproute/NAME.NS", as `trellis apply` names a route. */
function routeName(kind: string, namespace: string, name: string): string {
  return `${kind.toLowerCase()}/${name}.${namespace}`;
}

/** Retries in the window with their share of the requests, and those the budget refused. */
function formatRetries(s: LiveStats): string {
  if (s.requests === 0 && s.retries === 0 && s.budget_exhausted === 0) return '-';
  const ratio = s.retry_ratio === null ? '' : ` (${(s.retry_ratio * 100).toFixed(1)}%)`;
  return `${s.retries}${ratio}${s.budget_exhausted > 0 ? ` +${s.budget_exhausted} over budget` : ''}`;
}

/** A backend's breakers: closed, or how many endpoints are open or probing, and trips in the window. */
export function formatBreaker(b: BreakerSummary | null): string {
  if (b === null) return '-';
  const parts = [];
  if (b.open > 0) parts.push(`${b.open}/${b.endpoints} open`);
  if (b.probing > 0) parts.push(`${b.probing}/${b.endpoints} probing`);
  if (parts.length === 0) parts.push(b.endpoints === 0 ? 'no endpoints' : 'closed');
  if (b.trips > 0) parts.push(`${b.trips} trip${b.trips === 1 ? '' : 's'}`);
  if (b.all_tripped > 0) parts.push(`${b.all_tripped} failed fast`);
  if (b.overflow > 0) parts.push(`${b.overflow} overflow`);
  return parts.join(', ');
}

/** The two tables, with a line saying what window they cover (or why there are no numbers). */
export function liveTables(rows: LiveRows, windowText: string): string[] {
  if (rows.stats_error !== null) return [`No live numbers: ${rows.stats_error}`];
  const span = rows.window_s === null ? 'no scrapes yet' : `${rows.window_s.toFixed(0)}s covered`;
  const lines = [`Live, last ${windowText} (${span}):`];
  if (rows.route_stats.length > 0)
    lines.push(
      ...alignColumns([
        ['ROUTE', 'SUCCESS', 'RPS', 'LATENCY_P50', 'LATENCY_P95', 'LATENCY_P99', 'RETRIES', 'TIMEOUTS'],
        ...rows.route_stats.map((r) => [
          routeName(r.kind, r.namespace, r.name) + (r.attached === false ? ' (not attached)' : ''),
          formatPercent(r.success),
          formatRps(r.rps),
          formatLatency(r.latency_p50_ms),
          formatLatency(r.latency_p95_ms),
          formatLatency(r.latency_p99_ms),
          formatRetries(r),
          r.requests === 0 && r.timeouts === 0 ? '-' : String(r.timeouts),
        ]),
      ]),
    );
  if (rows.backend_stats.length > 0)
    lines.push(
      '',
      ...alignColumns([
        ['ROUTE', 'BACKEND', 'WEIGHT', 'SUCCESS', 'RPS', 'LATENCY_P99', 'BREAKER'],
        ...rows.backend_stats.map((b) => [
          routeName(b.route_kind, b.route_namespace, b.route_name),
          `${b.namespace}/${b.name}:${b.port ?? '-'}`,
          b.weights.length === 0 ? '-' : b.weights.join(','),
          formatPercent(b.success),
          formatRps(b.rps),
          formatLatency(b.latency_p99_ms),
          formatBreaker(b.breaker),
        ]),
      ]),
    );
  return lines;
}
