// The live numbers of `trellis routes` as the control plane's collector makes them from fake
// scrapes (pages rendered by the proxy's own RouteMetrics, so the format is the real one) and a
// fake clock: per route and per backend, summed over client proxies; rates over each proxy's
// window; latency quantiles of the merged histograms; restarts; breaker state from the proxies'
// /debug/breakers; the bound on series per proxy. Property tests: merging cumulative histograms,
// and the window counts of many proxies equal the sum of what each did.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Registry } from '../../src/core/prometheus.ts';
import { RouteMetrics, type RouteLabels } from '../../src/proxy/telemetry/route-metrics.ts';
import { MetricsCollector, type ScrapeTarget } from '../../src/control/metrics/collector.ts';
import { mergeBuckets } from '../../src/control/metrics/histogram-merge.ts';
import { MAX_ROUTE_SERIES_PER_INSTANCE, routeSnapshot } from '../../src/control/metrics/route-snapshot.ts';
import { parsePrometheusText } from '../../src/core/prom-parse.ts';
import { backendOfLabel, parseBreakerViews } from '../../src/control/metrics/breaker-state.ts';

const BUCKETS = [0.001, 0.01, 0.1, 1];

const labels = (backend: string, route = 'split', parent = 'web'): RouteLabels => ({
  parentNamespace: 'shop',
  parentName: parent,
  parentPort: 80,
  routeKind: 'HTTPRoute',
  routeNamespace: 'shop',
  routeName: route,
  backendNamespace: 'shop',
  backendName: backend,
  backendPort: 8080,
});

/** A client proxy: its route metrics, extra page lines, and its /debug/breakers answer. */
class FakeClient {
  registry = new Registry();
  routes = new RouteMetrics(this.registry, BUCKETS);
  extra: string[] = [];
  breakers: unknown = null;
  down = false;

  /** `n` requests to `backend` answered `status` in `seconds` each, `retries` retries in all. */
  send(l: RouteLabels, n: number, status: number, seconds: number, retries = 0): void {
    const series = this.routes.series(l)!;
    for (let i = 0; i < n; i++) series.record(seconds * 1000, status, false, status === 504);
    for (let i = 0; i < retries; i++) series.retried('retried');
  }

  page(): string {
    return this.registry.render() + this.extra.join('\n') + '\n';
  }

  restart(): void {
    this.registry = new Registry();
    this.routes = new RouteMetrics(this.registry, BUCKETS);
  }
}

function harness() {
  let now = 1_000_000;
  const clients = new Map<string, FakeClient>();
  const collector = new MetricsCollector({
    listTargets: async () =>
      [...clients.keys()].map((admin, i): ScrapeTarget => ({
        namespace: 'shop',
        workload: 'client',
        instance: `client-${i}`,
        admin,
        meshed: true,
      })),
    fetchMetrics: async (admin) =>
      clients.get(admin)?.down === true ? null : (clients.get(admin)?.page() ?? null),
    fetchBreakers: async (admin) => clients.get(admin)?.breakers ?? null,
    now: () => now,
  });
  return {
    collector,
    clients,
    async scrapeAfter(ms: number) {
      now += ms;
      await collector.collect();
    },
  };
}

test('route and backend numbers add up over client proxies, with rates and merged quantiles', async () => {
  const h = harness();
  const [a, b] = [new FakeClient(), new FakeClient()];
  h.clients.set('a:1', a);
  h.clients.set('b:1', b);
  a.send(labels('v1'), 1000, 200, 0.0005); // before the first scrape: in no window
  await h.scrapeAfter(0);
  assert.deepEqual(h.collector.routeStats(), { window_s: null, routes: [], backends: [] });

  a.send(labels('v1'), 90, 200, 0.05, 10); // (10 ms, 100 ms]
  a.send(labels('v1'), 10, 503, 0.5); // failures in (100 ms, 1 s]
  b.send(labels('v2'), 40, 200, 0.05);
  b.send(labels('v2'), 1, 504, 0.5); // a timeout
  b.send(labels('other', 'other', 'api'), 5, 200, 0.05); // another Service
  await h.scrapeAfter(2000);
  const answer = h.collector.routeStats({ namespace: 'shop', service: 'web' });
  assert.equal(answer.window_s, 2);
  assert.equal(answer.routes.length, 1);
  const route = answer.routes[0]!;
  assert.deepEqual(
    [route.route_name, route.requests, route.successes, route.failures, route.timeouts, route.retries],
    ['split', 141, 130, 10, 1, 10],
  );
  assert.equal(route.rps, 70.5); // 100 in 2 s + 41 in 2 s
  assert.equal(route.retries_per_s, 5);
  assert.equal(route.retry_ratio, 10 / 141);
  assert.equal(route.success, 130 / 141);
  // p50: rank 70.5 of the 130 in (10 ms, 100 ms] -> 10 + 90 * 70.5/130 ms.
  assert.equal(route.latency_p50_ms, Math.round((10 + (90 * 70.5) / 130) * 100) / 100);
  assert.deepEqual(
    answer.backends.map((x) => [x.backend_name, x.requests, x.success, x.rps, x.breaker]),
    [
      ['v1', 100, 0.9, 50, null],
      ['v2', 41, 40 / 41, 20.5, null],
    ],
  );
  // No filter: every parent; the other Service's route too.
  assert.deepEqual(
    h.collector.routeStats().routes.map((r) => [r.parent_name, r.route_name]),
    [
      ['api', 'other'],
      ['web', 'split'],
    ],
  );

  // A quiet window: the series stay, with nothing in them.
  await h.scrapeAfter(11_000);
  const quiet = h.collector.routeStats({ service: 'web' });
  assert.deepEqual(
    quiet.backends.map((x) => [x.backend_name, x.requests, x.success, x.rps, x.latency_p99_ms]),
    [
      ['v1', 0, null, 0, null],
      ['v2', 0, null, 0, null],
    ],
  );
  // A longer window still holds it all.
  assert.equal(h.collector.routeStats({ service: 'web' }, 60_000).routes[0]!.requests, 141);
});

test('a restarted proxy counts its new totals; an unchanged series costs no new object', async () => {
  const h = harness();
  const a = new FakeClient();
  h.clients.set('a:1', a);
  a.send(labels('v1'), 100, 200, 0.05);
  await h.scrapeAfter(0);
  a.restart();
  a.send(labels('v1'), 7, 200, 0.05);
  await h.scrapeAfter(2000);
  assert.equal(h.collector.routeStats().routes[0]!.requests, 7);

  const first = routeSnapshot(parsePrometheusText(a.page()), 0, null);
  const second = routeSnapshot(parsePrometheusText(a.page()), 2000, first);
  assert.equal([...second.series.values()][0], [...first.series.values()][0]);
  a.send(labels('v1'), 1, 200, 0.05);
  const third = routeSnapshot(parsePrometheusText(a.page()), 4000, second);
  assert.notEqual([...third.series.values()][0], [...second.series.values()][0]);
});

test('breakers: state per backend over the proxies that guard it, trips over the window', async () => {
  const h = harness();
  const [a, b] = [new FakeClient(), new FakeClient()];
  h.clients.set('a:1', a);
  h.clients.set('b:1', b);
  const events = (tripped: number, label = 'v1.shop.svc:8080') => [
    `trellis_breaker_events_total{backend="${label}",event="tripped"} ${tripped}`,
    `trellis_breaker_events_total{backend="${label}",event="all_tripped"} 0`,
  ];
  const view = (states: string[], backend = 'v1.shop.svc:8080') => [
    {
      backend,
      mode: 'consecutive',
      endpoints: states.map((state, i) => ({ address: `10.0.0.${i + 1}:8080`, state })),
    },
  ];
  a.extra = events(1);
  b.extra = events(0, 'v1.shop:8080'); // the short form of a Service name names the same backend
  a.breakers = view(['closed', 'closed', 'closed']);
  b.breakers = [
    { backend: 'v1.shop:8080', endpoints: 'junk' },
    7,
    null,
    ...view(['closed', 'closed', 'closed'], 'v1.shop:8080'),
  ];
  a.send(labels('v1'), 1, 200, 0.05);
  b.send(labels('v1'), 1, 200, 0.05);
  await h.scrapeAfter(0);
  a.extra = events(3);
  a.breakers = view(['open', 'probing', 'closed']);
  b.breakers = view(['closed', 'open', 'closed'], 'v1.shop:8080');
  await h.scrapeAfter(2000);
  const breaker = h.collector.routeStats().backends[0]!.breaker!;
  assert.deepEqual(breaker, {
    mode: 'consecutive',
    proxies: 2,
    endpoints: 3,
    open: 2,
    probing: 0,
    closed: 1,
    open_endpoints: ['10.0.0.1:8080', '10.0.0.2:8080'],
    probing_endpoints: [],
    trips: 2,
    all_tripped: 0,
    overflow: 0,
  });
  // A proxy whose page shows no breakers is not asked; one that does not answer has none.
  a.extra = [];
  b.down = true;
  await h.scrapeAfter(2000);
  assert.equal(h.collector.routeStats().backends[0]!.breaker, null);

  assert.deepEqual(backendOfLabel('web:80', 'shop'), { namespace: 'shop', name: 'web', port: 80 });
  assert.deepEqual(backendOfLabel('web.x.svc.cluster.local:80', 'shop'), {
    namespace: 'x',
    name: 'web',
    port: 80,
  });
  assert.equal(backendOfLabel('web', 'shop'), null);
  assert.deepEqual(parseBreakerViews({ not: 'a list' }), new Map());
});

test('a proxy page with too many series: the rest is left out and counted', async () => {
  const h = harness();
  const a = new FakeClient();
  h.clients.set('a:1', a);
  for (let i = 0; i < MAX_ROUTE_SERIES_PER_INSTANCE + 20; i++) a.send(labels(`b${i}`), 1, 200, 0.05);
  await h.scrapeAfter(0);
  await h.scrapeAfter(2000);
  assert.equal(h.collector.routeStats().backends.length, MAX_ROUTE_SERIES_PER_INSTANCE);
  assert.match(h.collector.metrics(), /^trellis_control_route_series_dropped_total 40$/m);
});

/** A cumulative histogram over some of `bounds` (always +Inf), from counts per bucket. */
const histogram = fc
  .array(fc.record({ le: fc.constantFrom(0.001, 0.005, 0.01, 0.1, 1, 10), n: fc.nat(50) }), { maxLength: 6 })
  .chain((parts) => fc.nat(50).map((inf) => ({ parts, inf })))
  .map(({ parts, inf }) => {
    const byLe = new Map<number, number>();
    for (const p of parts) byLe.set(p.le, (byLe.get(p.le) ?? 0) + p.n);
    byLe.set(Infinity, inf);
    let running = 0;
    return [...byLe.entries()].sort((x, y) => x[0] - y[0]).map(([le, n]) => ({ le, count: (running += n) }));
  });

test('property: merged histograms never decrease, hold every observation, in any order or grouping', () => {
  fc.assert(
    fc.property(fc.array(histogram, { minLength: 1, maxLength: 5 }), (hs) => {
      const merged = mergeBuckets(hs);
      for (let i = 1; i < merged.length; i++) assert.ok(merged[i]!.count >= merged[i - 1]!.count);
      const total = (h: readonly { count: number }[]) => h[h.length - 1]?.count ?? 0;
      assert.equal(
        total(merged),
        hs.reduce((n, h) => n + total(h), 0),
      );
      assert.deepEqual(mergeBuckets([...hs].reverse()), merged);
      assert.deepEqual(mergeBuckets([mergeBuckets(hs.slice(0, 1)), mergeBuckets(hs.slice(1))]), merged);
      // At each bound of one histogram, the merge holds at least what that one holds.
      for (const h of hs) for (const b of h) assert.ok(merged.find((m) => m.le === b.le)!.count >= b.count);
    }),
    { numRuns: 300 },
  );
});

test('property: over a window that covers them, the counts are the sum of what every proxy did', async () => {
  const traffic = fc.record({
    backend: fc.constantFrom('v1', 'v2'),
    n: fc.nat(20),
    status: fc.constantFrom(200, 503, 504),
    retries: fc.nat(3),
  });
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.array(fc.array(traffic, { maxLength: 4 }), { minLength: 1, maxLength: 3 }), {
        minLength: 1,
        maxLength: 4,
      }),
      async (rounds) => {
        const h = harness();
        const clients = [new FakeClient(), new FakeClient(), new FakeClient()];
        clients.forEach((c, i) => h.clients.set(`c:${i}`, c));
        await h.scrapeAfter(0);
        const want = new Map<
          string,
          { requests: number; failures: number; timeouts: number; retries: number }
        >();
        for (const round of rounds) {
          round.forEach((sends, i) => {
            for (const s of sends) {
              clients[i]!.send(labels(s.backend), s.n, s.status, 0.05, s.retries);
              const w = want.get(s.backend) ?? { requests: 0, failures: 0, timeouts: 0, retries: 0 };
              w.requests += s.n;
              if (s.status === 503) w.failures += s.n;
              if (s.status === 504) w.timeouts += s.n;
              w.retries += s.retries;
              want.set(s.backend, w);
            }
          });
          await h.scrapeAfter(2000);
        }
        const answer = h.collector.routeStats({ service: 'web' }, 600_000);
        for (const b of answer.backends) {
          const w = want.get(b.backend_name)!;
          assert.deepEqual(
            { requests: b.requests, failures: b.failures, timeouts: b.timeouts, retries: b.retries },
            w,
          );
        }
        const requests = [...want.values()].reduce((n, w) => n + w.requests, 0);
        assert.equal(answer.routes[0]?.requests ?? 0, requests);
      },
    ),
    { numRuns: 100 },
  );
});
