// The live numbers of `trellis routes` (GET /api/route-stats): per route and per (route, backend),
// summed over every client proxy that sent traffic by that route (the route level records in the
// caller's proxy), over the window of `trellis stat`: requests and how they ended, success rate,
// requests per second, latency percentiles, retries (per second, and per request), requests not
// retried for want of budget; and per backend its circuit breakers (breaker-state.ts). Counters
// add up across proxies before rates are taken (each proxy's over its own span), and latency
// histograms are merged (histogram-merge.ts) before quantiles are read.
import type { ScrapeTarget } from './collector.ts';
import {
  backendOfLabel,
  summariseBreakers,
  type BackendBreakers,
  type BreakerSummary,
} from './breaker-state.ts';
import { mergeBuckets, quantileMs } from './histogram-merge.ts';
import type { BreakerCounts, RouteCounts, RouteWindow } from './route-snapshot.ts';

/** What one proxy tells about routes: its window (null before two scrapes) and its breakers. */
export interface InstanceRoutes {
  readonly target: ScrapeTarget;
  readonly window: RouteWindow | null;
  /** The span of `window`, in seconds. */
  readonly seconds: number;
  /** Its /debug/breakers at the last scrape (null: it guards no backend, or did not answer). */
  readonly breakers: ReadonlyMap<string, BackendBreakers> | null;
}

/** The numbers of a route or backend over the window (rates and percentiles null without data). */
export interface LiveStats {
  /** Requests that ended in the window: successes + failures + timeouts. */
  readonly requests: number;
  readonly successes: number;
  readonly failures: number;
  /** Ended by a timeout (the route's request or backendRequest timeout, grpc-timeout, the proxy's). */
  readonly timeouts: number;
  /** Attempts sent again. */
  readonly retries: number;
  /** Retries the policy asked for and the Service's retry budget refused. */
  readonly budget_exhausted: number;
  /** successes / requests, 0..1. */
  readonly success: number | null;
  readonly rps: number | null;
  readonly retries_per_s: number | null;
  /** retries / requests. */
  readonly retry_ratio: number | null;
  readonly latency_p50_ms: number | null;
  readonly latency_p95_ms: number | null;
  readonly latency_p99_ms: number | null;
}

export interface RouteRef {
  readonly parent_namespace: string;
  readonly parent_name: string;
  readonly route_kind: string;
  readonly route_namespace: string;
  readonly route_name: string;
}

export interface RouteStat extends RouteRef, LiveStats {}

export interface BackendStat extends RouteRef, LiveStats {
  readonly backend_namespace: string;
  readonly backend_name: string;
  readonly backend_port: number;
  /** Its circuit breakers in the client proxies; null when none guards it. */
  readonly breaker: BreakerSummary | null;
}

export interface RouteStatsAnswer {
  /** The longest span the numbers cover, in seconds; null while no proxy has two scrapes. */
  readonly window_s: number | null;
  readonly routes: readonly RouteStat[];
  readonly backends: readonly BackendStat[];
}

/** Which parents to answer for (absent: every one). */
export interface RouteStatsFilter {
  readonly namespace?: string | undefined;
  readonly service?: string | undefined;
}

/** Sums of one route or backend over proxies. */
class Sum {
  success = 0;
  failure = 0;
  timeout = 0;
  retried = 0;
  budgetExhausted = 0;
  rps: number | null = null;
  retriesPerS: number | null = null;
  readonly latency: RouteCounts['latency'][] = [];

  add(c: RouteCounts, seconds: number): void {
    this.success += c.success;
    this.failure += c.failure;
    this.timeout += c.timeout;
    this.retried += c.retried;
    this.budgetExhausted += c.budgetExhausted;
    if (seconds > 0) {
      this.rps = (this.rps ?? 0) + (c.success + c.failure + c.timeout) / seconds;
      this.retriesPerS = (this.retriesPerS ?? 0) + c.retried / seconds;
    }
    this.latency.push(c.latency);
  }

  stats(): LiveStats {
    const requests = this.success + this.failure + this.timeout;
    const latency = mergeBuckets(this.latency);
    return {
      requests,
      successes: this.success,
      failures: this.failure,
      timeouts: this.timeout,
      retries: this.retried,
      budget_exhausted: this.budgetExhausted,
      success: requests > 0 ? this.success / requests : null,
      rps: this.rps,
      retries_per_s: this.retriesPerS,
      retry_ratio: requests > 0 ? this.retried / requests : null,
      latency_p50_ms: quantileMs(0.5, latency),
      latency_p95_ms: quantileMs(0.95, latency),
      latency_p99_ms: quantileMs(0.99, latency),
    };
  }
}

const order = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** The route and backend numbers of the parents `filter` names, sorted by parent, route, backend. */
export function routeStats(
  instances: readonly InstanceRoutes[],
  filter: RouteStatsFilter = {},
): RouteStatsAnswer {
  const routes = new Map<string, { ref: RouteRef; sum: Sum }>();
  const backends = new Map<string, { ref: RouteRef; ns: string; name: string; port: number; sum: Sum }>();
  let windowS: number | null = null;
  for (const { window, seconds } of instances) {
    if (window === null) continue;
    windowS = Math.max(windowS ?? 0, seconds);
    for (const s of window.series) {
      const l = s.labels;
      if (filter.namespace !== undefined && l.parent_namespace !== filter.namespace) continue;
      if (filter.service !== undefined && l.parent_name !== filter.service) continue;
      const ref: RouteRef = {
        parent_namespace: l.parent_namespace,
        parent_name: l.parent_name,
        route_kind: l.route_kind,
        route_namespace: l.route_namespace,
        route_name: l.route_name,
      };
      const routeKey = JSON.stringify(Object.values(ref));
      let route = routes.get(routeKey);
      if (route === undefined) routes.set(routeKey, (route = { ref, sum: new Sum() }));
      route.sum.add(s, seconds);
      const backendKey = JSON.stringify([routeKey, l.backend_namespace, l.backend_name, l.backend_port]);
      let backend = backends.get(backendKey);
      if (backend === undefined) {
        backend = {
          ref,
          ns: l.backend_namespace,
          name: l.backend_name,
          port: l.backend_port,
          sum: new Sum(),
        };
        backends.set(backendKey, backend);
      }
      backend.sum.add(s, seconds);
    }
  }
  const breakers = breakersByBackend(instances);
  return {
    window_s: windowS,
    routes: [...routes.entries()]
      .sort((a, b) => order(a[0], b[0]))
      .map(([, r]) => ({ ...r.ref, ...r.sum.stats() })),
    backends: [...backends.entries()]
      .sort((a, b) => order(a[0], b[0]))
      .map(([, b]) => ({
        ...b.ref,
        backend_namespace: b.ns,
        backend_name: b.name,
        backend_port: b.port,
        ...b.sum.stats(),
        breaker: breakers(b.ns, b.name, b.port),
      })),
  };
}

/** Looks up the breaker summary of a backend Service port over the proxies that guard it. */
function breakersByBackend(
  instances: readonly InstanceRoutes[],
): (namespace: string, name: string, port: number) => BreakerSummary | null {
  const states = new Map<string, BackendBreakers[]>();
  const events = new Map<string, BreakerCounts[]>();
  const keyOf = (label: string, own: string): string | null => {
    const b = backendOfLabel(label, own);
    return b === null ? null : `${b.namespace}/${b.name}:${b.port}`;
  };
  for (const { target, window, breakers } of instances) {
    for (const [label, state] of breakers ?? []) {
      const key = keyOf(label, target.namespace);
      if (key !== null) states.set(key, [...(states.get(key) ?? []), state]);
    }
    for (const [label, counts] of window?.breakers ?? []) {
      const key = keyOf(label, target.namespace);
      if (key !== null) events.set(key, [...(events.get(key) ?? []), counts]);
    }
  }
  return (namespace, name, port) => {
    const key = `${namespace}/${name}:${port}`;
    const s = states.get(key);
    return s === undefined ? null : summariseBreakers(s, events.get(key) ?? []);
  };
}
