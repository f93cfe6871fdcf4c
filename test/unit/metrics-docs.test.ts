// docs/metrics.md stays true: every family of the proxy's registry (each lazily created family
// made to appear) and of the control plane's operator auth is documented with its type and labels;
// the Grafana dashboard in deploy/grafana/ is valid JSON whose every PromQL expression uses
// documented metric names. The live pages (control plane with identity, proxies under
// `trellis run`) are checked the same way by test/long/prometheus.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ProxyMetrics } from '../../src/proxy/telemetry/metrics.ts';
import { OperatorAuth } from '../../src/control/operator-auth.ts';
import {
  documentedFamilies,
  grafanaDashboard,
  isDocumentedSeries,
  promqlMetricNames,
  undocumented,
} from '../helpers/metrics-docs.ts';

test('every family of the proxy and the operator auth is in docs/metrics.md', () => {
  const proxy = new ProxyMetrics();
  proxy.identityExpiry(Date.now() + 3600_000);
  proxy.responseFinished('inbound', 'http1', 200, 3, false);
  proxy.meshConnection('inbound', 'spiffe://cluster.local/ns/a/sa/b');
  proxy.authorized({ server: 's', policy: 'p' }, 'allow');
  assert.deepEqual(undocumented(proxy.render()), []);
  const auth = new OperatorAuth({ token: null, tokenSource: 'test' });
  assert.deepEqual(undocumented(auth.metrics()), []);
});

test('the docs check finds an undocumented family, a wrong type and an undocumented label', () => {
  const docs = documentedFamilies();
  assert.ok(docs.size >= 20, `only ${docs.size} families parsed from docs/metrics.md`);
  assert.deepEqual(
    docs.get('trellis_response_total')?.labels,
    new Set(['direction', 'protocol', 'status_code', 'classification']),
  );
  const page = [
    '# TYPE trellis_new_thing_total counter',
    'trellis_new_thing_total 1',
    '# TYPE trellis_tcp_open_connections counter',
    'trellis_tcp_open_connections{direction="inbound"} 1',
    '# TYPE trellis_response_latency_seconds histogram',
    'trellis_response_latency_seconds_bucket{direction="inbound",route="x",le="+Inf"} 1',
  ].join('\n');
  assert.deepEqual(undocumented(page), [
    'trellis_new_thing_total (counter) is not in docs/metrics.md',
    'trellis_tcp_open_connections is a counter, docs/metrics.md says gauge',
    'trellis_response_latency_seconds has label route, not in docs/metrics.md',
  ]);
});

test('promqlMetricNames: metric names only, not functions, labels, strings or variables', () => {
  assert.deepEqual(
    promqlMetricNames(
      'histogram_quantile(0.99, sum by (namespace, le) (rate(a_bucket{x=~"$v", y="sum"}[$__rate_interval]))) / on (namespace) b_total',
    ),
    ['a_bucket', 'b_total'],
  );
});

test('the Grafana dashboard is valid JSON whose queries use documented metrics', () => {
  const dashboard = grafanaDashboard();
  const docs = documentedFamilies();
  const titles = dashboard.panels.map((p) => p.title);
  for (const wanted of ['Success rate', 'Requests per second', 'Latency p50', 'Latency p95', 'Latency p99']) {
    assert.ok(titles.includes(wanted), `no panel ${wanted}`);
  }
  assert.equal(
    new Set(dashboard.panels.map((p) => p.id)).size,
    dashboard.panels.length,
    'panel ids are unique',
  );
  const exprs = [
    ...dashboard.panels.flatMap((p) => p.targets.map((t) => t.expr)),
    ...dashboard.templating.list.flatMap((v) =>
      v.type === 'query'
        ? [(v.query as { query: string }).query.replace(/^label_values\((.*), *\w+\)$/, '$1')]
        : [],
    ),
  ];
  assert.ok(exprs.length >= 8);
  for (const expr of exprs) {
    const names = promqlMetricNames(expr);
    assert.ok(names.length > 0, `no metric in ${expr}`);
    for (const name of names)
      assert.ok(isDocumentedSeries(name, docs), `${name} (in ${expr}) is not in docs/metrics.md`);
    assert.match(
      expr,
      /by \(namespace, workload, direction|^trellis_response_total/,
      `not by workload and direction: ${expr}`,
    );
  }
});
