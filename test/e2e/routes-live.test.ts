// `trellis routes SERVICE` with live numbers, end to end on one machine: `trellis up`, a Service
// with a route (retries on 503, a request timeout on /slow) and a circuit breaker
// (balancer.trellis.io/failure-accrual), `trellis run` of an app that fails some requests, a known
// number of requests through the workload's own outbound listener (as its app would send them),
// then the numbers `trellis routes -o json` reports, exact over a window that covers them all:
// requests by outcome, retries, the breaker that the last failures tripped. The app is
// test/fixtures/hello-server.ts (/flaky/: 503 on a first hit, /fail/: 503, /slow/: 2 s).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runningControlFile } from '../../src/api/control-file.ts';
import type { RouteStatsAnswer } from '../../src/control/metrics/route-stats.ts';
import type { LiveRows } from '../../src/cli/routes-live.ts';
import { NODE, REPO } from '../helpers/proxy-process.ts';
import { freePort, runCli, startCli, startUp, waitFor } from '../helpers/cli.ts';
import { sendRequest } from '../helpers/mesh-echo.ts';
import { removeTempDir } from '../helpers/temp-dir.ts';

const APP = join(REPO, 'test/fixtures/hello-server.ts');

const CONFIG = `apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
  annotations:
    balancer.trellis.io/failure-accrual: consecutive
    balancer.trellis.io/failure-accrual-max-failures: "4"
spec:
  ports: [{ name: http, port: 80, targetPort: http }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: web-retries, namespace: shop }
spec:
  parentRefs: [{ group: "", kind: Service, name: web, port: 80 }]
  rules:
    - matches: [{ path: { type: PathPrefix, value: /slow } }]
      timeouts: { request: 300ms }
      backendRefs: [{ name: web, port: 80 }]
    - retry: { codes: [503], attempts: 1, backoff: 10ms }
      backendRefs: [{ name: web, port: 80, weight: 1 }]
`;

test(
  'trellis routes shows the live numbers of a route and its backend, exact',
  { timeout: 90_000 },
  async (t) => {
    const root = await mkdtemp(join(tmpdir(), 'trellis-routes-live-'));
    t.after(() => removeTempDir(root));
    const up = await startUp(t, root);
    const file = join(root, 'web.yaml');
    await writeFile(file, CONFIG);
    const applied = await runCli(['apply', '-f', file, '--state', root]);
    assert.equal(applied.code, 0, applied.stderr);
    const appPort = await freePort();
    const run = startCli(t, [
      ...['run', '--state', root, '--name', 'web', '--namespace', 'shop', '--port', String(appPort)],
      ...['--', NODE, APP, String(appPort)],
    ]);
    const outbound = await waitFor('the workload', async () => {
      const port = /outbound 127\.0\.0\.1:(\d+)/.exec(run.stderr())?.[1];
      return port === undefined ? null : Number(port);
    });
    const control = `http://${(await runningControlFile(root))!.http}`;
    const api = async <T>(path: string): Promise<T> => (await (await fetch(`${control}${path}`)).json()) as T;

    // The control plane scrapes the proxy once before any routed request, so the window of 10
    // minutes covers every one of them.
    await waitFor('a first scrape of the proxy', async () => {
      const stats = await api<{ name: string; meshed: string }[]>('/api/stat?namespace=shop');
      return stats.some((s) => s.name === 'web' && s.meshed === '1/1') ? true : null;
    });
    const send = (path: string) => sendRequest(outbound, `http://web.shop${path}`);
    // Until the route is in force a first hit of /flaky/ is not retried (and not counted per route).
    let n = 0;
    await waitFor('the route to be in force', async () =>
      (await send(`/flaky/warm-${n++}`)).status === 200 ? true : null,
    );

    for (let i = 0; i < 6; i++) assert.equal((await send(`/ok/${i}`)).status, 200);
    const slow = await send('/slow/1');
    assert.equal(slow.status, 504);
    assert.equal(slow.headers['trellis-proxy-error'], 'request-timeout');
    for (let i = 0; i < 3; i++) assert.equal((await send(`/flaky/${i}`)).status, 200, 'retried once');
    // Four failed attempts in a row trip the endpoint's breaker (on the last one).
    for (let i = 0; i < 2; i++) assert.equal((await send(`/fail/${i}`)).status, 503);

    // 1 warm-up + 6 + 1 + 3 + 2 routed requests: 10 answered 200, 2 failed, 1 timed out; 6 retries.
    await waitFor('the numbers of every request', async () => {
      const answer = await api<RouteStatsAnswer>('/api/route-stats?namespace=shop&service=web&window=10m');
      const b = answer.backends[0];
      return b !== undefined && b.requests === 13 && b.breaker?.open === 1 ? true : null;
    });
    // The same numbers as JSON and as tables (both asked at once: each is a process).
    const args = ['routes', 'web', '-n', 'shop', '-t', '10m', '--state', root];
    const [json, table] = await Promise.all([runCli([...args, '-o', 'json']), runCli(args)]);
    assert.equal(json.code, 0, json.stderr);
    const rows = JSON.parse(json.stdout) as LiveRows;
    assert.equal(rows.stats_error, null);
    const [route, ...otherRoutes] = rows.route_stats;
    assert.deepEqual(otherRoutes, []);
    assert.deepEqual(
      {
        route: `${route!.kind}/${route!.namespace}/${route!.name}`,
        attached: route!.attached,
        requests: route!.requests,
        successes: route!.successes,
        failures: route!.failures,
        timeouts: route!.timeouts,
        retries: route!.retries,
        budget_exhausted: route!.budget_exhausted,
      },
      {
        route: 'HTTPRoute/shop/web-retries',
        attached: true,
        requests: 13,
        successes: 10,
        failures: 2,
        timeouts: 1,
        retries: 6,
        budget_exhausted: 0,
      },
    );
    assert.equal(route!.success, 10 / 13);
    assert.equal(route!.retry_ratio, 6 / 13);
    assert.ok(route!.rps! > 0 && rows.window_s! > 0);
    assert.ok(
      route!.latency_p99_ms! >= route!.latency_p50_ms! && route!.latency_p99_ms! >= 250,
      'the timeout is the slowest',
    );
    const [backend, ...otherBackends] = rows.backend_stats;
    assert.deepEqual(otherBackends, []);
    assert.deepEqual(
      [
        backend!.namespace,
        backend!.name,
        backend!.port,
        backend!.weights,
        backend!.requests,
        backend!.retries,
      ],
      ['shop', 'web', 80, [1, 1], 13, 6],
    );
    const breaker = backend!.breaker!;
    assert.deepEqual(
      [breaker.mode, breaker.proxies, breaker.endpoints, breaker.open, breaker.closed, breaker.trips],
      ['consecutive', 1, 1, 1, 0, 1],
    );

    assert.equal(table.code, 0, table.stderr);
    const live = table.stdout.slice(table.stdout.indexOf('Live, last 10m'));
    assert.match(
      live,
      /^ROUTE\s+SUCCESS\s+RPS\s+LATENCY_P50\s+LATENCY_P95\s+LATENCY_P99\s+RETRIES\s+TIMEOUTS$/m,
    );
    assert.match(
      live,
      /^httproute\/web-retries\.shop\s+76\.92%\s+\S+rps\s+\S+\s+\S+\s+\S+\s+6 \(46\.2%\)\s+1$/m,
    );
    assert.match(live, /^ROUTE\s+BACKEND\s+WEIGHT\s+SUCCESS\s+RPS\s+LATENCY_P99\s+BREAKER$/m);
    assert.match(
      live,
      /^httproute\/web-retries\.shop\s+shop\/web:80\s+1,1\s+76\.92%\s+\S+\s+\S+\s+1\/1 open, 1 trip$/m,
    );

    assert.equal(await run.stop(), 0, run.stderr());
    assert.equal(await up.stop(), 0, up.stderr());
  },
);
