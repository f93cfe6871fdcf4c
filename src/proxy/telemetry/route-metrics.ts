// Metrics per route and backend (the Gateway API's parent, route and backend, as Linkerd's
// outbound_http_route_* families name them): requests by outcome, their latency, and retries.
// A RouteSeries is made once per compiled backend of a route table (outbound/routes.ts keeps it
// with the table), so recording a request is a few field updates, no label lookup. The number of
// series is bounded (MAX_ROUTE_SERIES): past it, further pairs are not recorded, and that is
// counted in trellis_route_series_dropped_total.
import { isFailedExchange } from './exchange-verdict.ts';
import type { Counter, CounterFamily, Histogram, HistogramFamily, Registry } from '../../core/prometheus.ts';
import {
  ROUTE_DURATION,
  ROUTE_LABELS,
  ROUTE_REQUESTS,
  ROUTE_RETRIES,
} from '../../core/route-metric-names.ts';

/** At most this many (route, backend) series per proxy. */
export const MAX_ROUTE_SERIES = 2000;

/** Who a route series is for: the Service port the app addressed, the route, the backend. */
export interface RouteLabels {
  readonly parentNamespace: string;
  readonly parentName: string;
  readonly parentPort: number;
  readonly routeKind: string;
  readonly routeNamespace: string;
  readonly routeName: string;
  readonly backendNamespace: string;
  readonly backendName: string;
  readonly backendPort: number;
}

export class RouteSeries {
  private readonly success: Counter;
  private readonly failure: Counter;
  private readonly timeout: Counter;
  private readonly latency: Histogram;
  private readonly retriedCount: Counter;
  private readonly exhausted: Counter;

  constructor(
    outcomes: readonly [Counter, Counter, Counter],
    latency: Histogram,
    retries: readonly [Counter, Counter],
  ) {
    [this.success, this.failure, this.timeout] = outcomes;
    this.latency = latency;
    [this.retriedCount, this.exhausted] = retries;
  }

  /**
   * One finished request routed by this rule to this backend: `status` the answer's (0: none
   * was sent), `failed` the exchange's verdict (transport error, grpc-status != 0). A failure is
   * what trellis_response_total classifies as one: failed, no status, or a 5xx.
   */
  record(latencyMs: number, status: number, failed: boolean, timedOut: boolean): void {
    (timedOut ? this.timeout : isFailedExchange(status, failed) ? this.failure : this.success).value += 1;
    this.latency.observe(latencyMs / 1000);
  }

  /** A retry of a request routed here: sent again, or not for want of budget. */
  retried(outcome: 'retried' | 'budget-exhausted'): void {
    (outcome === 'retried' ? this.retriedCount : this.exhausted).value += 1;
  }
}

export class RouteMetrics {
  private readonly requests: CounterFamily;
  private readonly latency: HistogramFamily;
  private readonly retries: CounterFamily;
  private readonly dropped: Counter;
  private readonly mirrors: readonly [Counter, Counter, Counter];
  /** By label values: a table compiled again finds its series. */
  private readonly made = new Map<string, RouteSeries>();

  constructor(registry: Registry, latencyBuckets: readonly number[]) {
    this.requests = registry.counter(
      ROUTE_REQUESTS,
      'Outbound requests a route rule sent to a backend, by outcome (success; failure: a 5xx, no response, or a gRPC error; timeout: a route or response timeout).',
      [...ROUTE_LABELS, 'outcome'],
    );
    this.latency = registry.histogram(
      ROUTE_DURATION,
      'Time from the start of a routed request to the end of its response, by route and backend.',
      ROUTE_LABELS,
      latencyBuckets,
    );
    this.retries = registry.counter(
      ROUTE_RETRIES,
      'Routed requests sent again (retried), or not because the retry budget was spent (budget_exhausted), by route and backend.',
      [...ROUTE_LABELS, 'outcome'],
    );
    this.dropped = registry
      .counter(
        'trellis_route_series_dropped_total',
        `Route and backend pairs not recorded because ${MAX_ROUTE_SERIES} already are.`,
      )
      .labels();
    const mirrors = registry.counter(
      'trellis_route_mirrors_total',
      'Copies of routed requests sent to RequestMirror backends (sent: answered; failed; dropped: over the bound, no outbound listener, or a body not kept).',
      ['outcome'],
    );
    this.mirrors = [mirrors.labels('sent'), mirrors.labels('failed'), mirrors.labels('dropped')];
  }

  /** One request mirror's end. */
  mirrored(outcome: 'sent' | 'failed' | 'dropped'): void {
    this.mirrors[outcome === 'sent' ? 0 : outcome === 'failed' ? 1 : 2].value += 1;
  }

  /** The series of one (route, backend) pair, or null past the bound (counted). */
  series(l: RouteLabels): RouteSeries | null {
    const values = [
      l.parentNamespace,
      l.parentName,
      String(l.parentPort),
      l.routeKind,
      l.routeNamespace,
      l.routeName,
      l.backendNamespace,
      l.backendName,
      String(l.backendPort),
    ];
    const key = values.join('\u0000');
    const known = this.made.get(key);
    if (known !== undefined) return known;
    if (this.made.size >= MAX_ROUTE_SERIES) {
      this.dropped.value += 1;
      return null;
    }
    const series = new RouteSeries(
      [
        this.requests.labels(...values, 'success'),
        this.requests.labels(...values, 'failure'),
        this.requests.labels(...values, 'timeout'),
      ],
      this.latency.labels(...values),
      [this.retries.labels(...values, 'retried'), this.retries.labels(...values, 'budget_exhausted')],
    );
    this.made.set(key, series);
    return series;
  }
}
