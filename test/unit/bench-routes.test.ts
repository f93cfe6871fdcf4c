// The routes benchmark's set-up and judgement (bench/routes/): the ten-rule route is valid, its
// every rule retries 503 (attempts 2), and the benchmark's load (GET /) matches the catch-all rule,
// last in the matcher's precedence order, as docs/benchmark.md says; the storm route retries 503
// with attempts 3; the PASS/FAIL lines sit at 0.90x and 1.3x.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { routesFromYaml, request } from './routes-helpers.ts';
import { compileRouteTable, matchRoute, NO_MATCHING_RULE } from '../../src/core/routes/matcher.ts';
import { stormYaml, tenRulesYaml } from '../../bench/routes/route-files.ts';
import { judgeRoutes } from '../../bench/routes/report.ts';
import type { StormResult } from '../../bench/routes/storm.ts';

const SERVICE = { name: 'server', namespace: 'default', port: 80 };

test('the ten-rule route: valid, retries on every rule, GET / hits the last candidate', () => {
  const routes = routesFromYaml(tenRulesYaml(SERVICE));
  const table = compileRouteTable(routes, () => true);
  assert.equal(routes[0]!.kind, 'HTTPRoute');
  assert.equal(table.http?.length, 10);
  for (const c of table.http!)
    assert.deepEqual(c.result.rule.retry, { codes: [503], attempts: 2, backoffMs: null });
  const m = matchRoute(table, request('/'));
  assert.ok(m !== null && m !== NO_MATCHING_RULE);
  assert.equal(m.rule.ruleIndex, 9);
  assert.equal(table.http!.at(-1)!.result, m, 'the load matches the last rule in precedence');
  // The other rules are reachable (their matches are what the scan tests first).
  const hit = (path: string, headers: Record<string, string> = {}, method = 'GET') => {
    const r = matchRoute(table, request(path, headers, method));
    return r !== null && r !== NO_MATCHING_RULE ? r.rule.ruleIndex : -1;
  };
  assert.equal(hit('/healthz'), 0);
  assert.equal(hit('/api/v2/x', { 'x-canary': 'true' }), 3);
  assert.equal(hit('/api/x', {}, 'POST'), 5);
  assert.equal(hit('/x', { 'x-tenant': 'blue' }), 6);
  assert.equal(hit('/x?debug=1'), 8);
});

test('the storm route retries 503 with attempts 3', () => {
  const table = compileRouteTable(routesFromYaml(stormYaml(SERVICE)), () => true);
  const m = matchRoute(table, request('/'));
  assert.ok(m !== null && m !== NO_MATCHING_RULE);
  assert.deepEqual(m.rule.retry, { codes: [503], attempts: 3, backoffMs: null });
});

test('judgement lines: routed >= 0.90x unrouted, storm <= 1.3x', () => {
  const storm = (ratio: number): StormResult => ({
    durationS: 10,
    connections: 50,
    wrkRequests: 10_000,
    clientRequests: 10_000,
    upstreamRequests: Math.round(ratio * 10_000),
    retried: 0,
    budgetExhausted: 0,
    ratio,
    budgetBound: 1.23,
    non2xx: 10_000,
    socketErrors: 0,
  });
  assert.deepEqual(
    judgeRoutes({ rps: 0.9 }, storm(1.3)).map((t) => t.pass),
    [true, true],
  );
  assert.deepEqual(
    judgeRoutes({ rps: 0.899 }, storm(1.301)).map((t) => t.pass),
    [false, false],
  );
  assert.deepEqual(
    judgeRoutes({}, undefined).map((t) => t.pass),
    [null, null],
  );
});
