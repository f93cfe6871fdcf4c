// The live tables of `trellis routes` (src/cli/routes-live.ts): the view's routes and backends
// keep their rows without traffic, numbers of a route no longer attached are marked, weights of a
// backend named by several rules are listed, breakers are summarised, and without numbers one
// line says why.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatBreaker, liveRows, liveTables } from '../../src/cli/routes-live.ts';
import type { BackendStat, RouteStat } from '../../src/control/metrics/route-stats.ts';
import type { ServiceRoutesView } from '../../src/control/routes/view.ts';
import type { BreakerSummary } from '../../src/control/metrics/breaker-state.ts';

const backend = (name: string, weight: number) => ({
  namespace: 'shop',
  name,
  port: 80,
  weight,
  share: 50,
  resolved: true,
});

const view: ServiceRoutesView = {
  namespace: 'shop',
  service: 'web',
  ports: [80],
  routes: [
    {
      kind: 'HTTPRoute',
      namespace: 'shop',
      name: 'split',
      role: 'producer',
      creationTimestamp: '2026-01-01T00:00:00.000Z',
      parents: [],
      rules: [
        {
          index: 0,
          name: null,
          matches: [],
          filters: [],
          backends: [backend('v1', 3), backend('v2', 1)],
          timeouts: null,
          retry: null,
        },
        {
          index: 1,
          name: null,
          matches: [],
          filters: [],
          backends: [backend('v1', 1)],
          timeouts: null,
          retry: null,
        },
      ],
    },
  ],
};

const numbers = {
  requests: 10,
  successes: 9,
  failures: 0,
  timeouts: 1,
  retries: 2,
  budget_exhausted: 1,
  success: 0.9,
  rps: 5,
  retries_per_s: 1,
  retry_ratio: 0.2,
  latency_p50_ms: 2,
  latency_p95_ms: 12,
  latency_p99_ms: 1500,
};
const ref = (route: string) => ({
  parent_namespace: 'shop',
  parent_name: 'web',
  route_kind: 'HTTPRoute',
  route_namespace: 'shop',
  route_name: route,
});
const breaker: BreakerSummary = {
  mode: 'consecutive',
  proxies: 2,
  endpoints: 3,
  open: 1,
  probing: 1,
  closed: 1,
  open_endpoints: ['10.0.0.1:80'],
  probing_endpoints: ['10.0.0.2:80'],
  trips: 2,
  all_tripped: 0,
  overflow: 0,
};

test('rows for every routed backend, numbers where there are some, removed routes marked', () => {
  const routes: RouteStat[] = [
    { ...ref('split'), ...numbers },
    { ...ref('old'), ...numbers },
  ];
  const backends: BackendStat[] = [
    { ...ref('split'), backend_namespace: 'shop', backend_name: 'v1', backend_port: 80, ...numbers, breaker },
  ];
  const rows = liveRows(view, { window_s: 10, routes, backends }, null);
  assert.deepEqual(
    rows.route_stats.map((r) => [r.name, r.attached, r.requests]),
    [
      ['split', true, 10],
      ['old', false, 10],
    ],
  );
  assert.deepEqual(
    rows.backend_stats.map((b) => [b.name, b.weights, b.requests, b.success]),
    [
      ['v1', [3, 1], 10, 0.9],
      ['v2', [1], 0, null],
    ],
  );
  const lines = liveTables(rows, '10s');
  assert.deepEqual(lines, [
    'Live, last 10s (10s covered):',
    'ROUTE                              SUCCESS  RPS     LATENCY_P50  LATENCY_P95  LATENCY_P99  RETRIES                   TIMEOUTS',
    'httproute/split.shop               90.00%   5.0rps  2.0ms        12ms         1.50s        2 (20.0%) +1 over budget  1',
    'httproute/old.shop (not attached)  90.00%   5.0rps  2.0ms        12ms         1.50s        2 (20.0%) +1 over budget  1',
    '',
    'ROUTE                 BACKEND     WEIGHT  SUCCESS  RPS     LATENCY_P99  BREAKER',
    'httproute/split.shop  shop/v1:80  3,1     90.00%   5.0rps  1.50s        1/3 open, 1/3 probing, 2 trips',
    'httproute/split.shop  shop/v2:80  1       -        -       -            -',
  ]);
});

test('no numbers: one line says why; breaker cells', () => {
  assert.deepEqual(liveTables(liveRows(view, null, 'no control plane runs'), '10s'), [
    'No live numbers: no control plane runs',
  ]);
  assert.equal(formatBreaker(null), '-');
  assert.equal(formatBreaker({ ...breaker, open: 0, probing: 0, closed: 3, trips: 0 }), 'closed');
  assert.equal(
    formatBreaker({ ...breaker, open: 3, probing: 0, trips: 0, all_tripped: 4 }),
    '3/3 open, 4 failed fast',
  );
});
