// Attacks on traffic management through its route level (src/proxy/outbound/routes.ts and the
// pure route model under src/core/routes/), each a regression test of a hole that was open:
// a route author mirroring clients' requests to another namespace's Service, a client spelling
// one Service many ways to get a retry budget (and a Routes watch) per spelling, timeouts too
// long for a Node timer, a prefix rewrite that makes a network-path reference ("//host"), header
// filters on framing fields, a consumer route lifting another Service's retry budget, and
// request bodies kept for retries without a bound for the whole proxy.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { silentLogger } from '../../src/core/log.ts';
import type { ApiRouteSetOutput } from '../../src/api/client.ts';
import { unresolvedBackends } from '../../src/control/routes/status.ts';
import { ServiceDiscovery, type PickOutcome } from '../../src/proxy/outbound/discovery.ts';
import { H1RouteRule } from '../../src/proxy/http/h1-route-rule.ts';
import { parseRequestHead } from '../../src/proxy/http/h1-parser.ts';
import {
  attemptLimit,
  KeptBodies,
  MAX_TIMER_MS,
  MAX_WATCHED,
  OutboundRoutes,
  retryAfter,
  type RouteDecision,
} from '../../src/proxy/outbound/routes.ts';
import { RetryBudget } from '../../src/proxy/outbound/retry-budget.ts';
import type { Resolver } from '../../src/proxy/resolve/resolver.ts';
import { staticEndpoint } from '../../src/proxy/resolve/static.ts';
import { parseTrafficAnnotations } from '../../src/core/routes/service-annotations.ts';
import { compileRouteSet, type PolicedRouteTable } from '../../src/proxy/route/route-table.ts';
import type { RouteWatchOptions } from '../../src/proxy/route/watch-client.ts';
import { routesFromYaml } from './routes-helpers.ts';

/** A route set as the control plane sends it: `yaml`'s routes, with the backends it could not resolve. */
function routeSet(yaml: string, services: Record<string, number[]>): PolicedRouteTable {
  const routes = routesFromYaml(yaml);
  const index = new Map(Object.entries(services).map(([k, ports]) => [k, ports.map((port) => ({ port }))]));
  const set: ApiRouteSetOutput = {
    routes: routes.map((r) => ({
      kind: r.kind,
      namespace: r.namespace,
      name: r.name,
      createdMs: 0,
      specJson: JSON.stringify(r.spec),
      annotations: {},
    })),
    unresolvedBackends: [...new Set(routes.flatMap((r) => unresolvedBackends(r, index)))],
    serviceAnnotations: {},
    extensions: [],
  } as unknown as ApiRouteSetOutput;
  const compiled = compileRouteSet(set);
  assert.ok(compiled.ok, compiled.ok ? '' : compiled.problem);
  return compiled.table;
}

function routesWith(onStart: (o: RouteWatchOptions) => void): {
  routes: OutboundRoutes;
  started: RouteWatchOptions[];
} {
  const started: RouteWatchOptions[] = [];
  const routes = new OutboundRoutes({
    address: '127.0.0.1:1',
    namespace: 'shop',
    waitMs: 1000,
    log: silentLogger,
    startWatch: (o) => {
      started.push(o);
      onStart(o);
      return { close() {} };
    },
  });
  return { routes, started };
}

const H1_LIMITS = { maxRequestLineBytes: 8192, maxHeaderBytes: 64 * 1024, maxHeaders: 128 };

const GET = { method: 'GET', pathAndQuery: '/', headers: {}, grpc: false, authority: 'web' };

describe('RequestMirror across namespaces', () => {
  it("a route never mirrors to another namespace's Service (RefNotPermitted), only to its own", () => {
    // The route author of `shop` would have every client of web (whatever its namespace and
    // identity) send a copy of each request to finance's ledger.
    const table = routeSet(
      `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: web, namespace: shop }
spec:
  parentRefs: [{ group: "", kind: Service, name: web, port: 80 }]
  rules:
    - filters:
        - type: RequestMirror
          requestMirror: { backendRef: { name: ledger, namespace: finance, port: 80 } }
        - type: RequestMirror
          requestMirror: { backendRef: { name: shadow, port: 80 } }
      backendRefs: [{ name: web, port: 80 }]
`,
      { 'shop/web': [80], 'shop/shadow': [80], 'finance/ledger': [80] },
    );
    const { routes } = routesWith(() => undefined);
    const decision = routes.decide({ host: 'web', port: 80 }, table, GET);
    assert.ok(decision !== null && decision.kind === 'forward');
    assert.deepEqual(decision.mirrors, [{ host: 'shadow.shop.svc', port: 80 }]);
    routes.close();
  });
});

describe('one Service port, many spellings', () => {
  const RETRYING = routeSet(
    `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: r, namespace: shop }
spec:
  parentRefs: [{ group: "", kind: Service, name: web, port: 80 }]
  rules: [{ backendRefs: [{ name: web, port: 80 }], retry: { codes: [503], attempts: 3 } }]
`,
    { 'shop/web': [80] },
  );
  // How an app in namespace shop may name the Service web.shop:80: each of these is the same
  // Service port to discovery, the control plane and the routes.
  const SPELLINGS = [
    'web',
    'WEB',
    'web.',
    'web.shop',
    'Web.Shop.',
    'web.shop.svc',
    'web.shop.svc.cluster.local',
    'WEB.SHOP.SVC.CLUSTER.LOCAL.',
  ];

  it('share one Routes watch and one retry budget, so a client cannot multiply either', async () => {
    const { routes, started } = routesWith((o) => o.onTable(RETRYING));
    const budgets = new Set<unknown>();
    for (const host of SPELLINGS) {
      const target = { host, port: 80 };
      const table = await routes.tableFor(target);
      assert.ok(table !== null, host);
      const decision = routes.decide(target, table, GET);
      assert.ok(decision !== null && decision.kind === 'forward' && decision.retry !== null, host);
      budgets.add(decision.retry.budget);
    }
    assert.equal(started.length, 1, 'one watch for the Service port');
    assert.equal(budgets.size, 1, 'one retry budget for the Service port');
    routes.close();
  });

  it('a failing backend sees at most the budget however the requests are spelled', async () => {
    // The budget's floor is 10 retries a second over its 10 s window (100), plus 20% of the
    // requests: 1,000 requests that all fail may add at most 300 retries (1.3x), whichever
    // spelling each names. Each spelling with its own budget gave every one of them its retries.
    const { routes } = routesWith((o) => o.onTable(RETRYING));
    const requests = 1000;
    const retried = await retriesDrawn(requests, async (i) => {
      const target = { host: SPELLINGS[i % SPELLINGS.length]!, port: 80 };
      return routes.decide(target, (await routes.tableFor(target))!, GET);
    });
    assert.ok(retried <= 0.2 * requests + 100, `${retried} retries for ${requests} requests`);
    routes.close();
  });
});

/**
 * Every request's decision (each must forward with a retry policy) retried as often as the
 * policy and its budget allow, as if every attempt failed: the retries drawn in all.
 */
async function retriesDrawn(
  requests: number,
  decide: (i: number) => RouteDecision | null | Promise<RouteDecision | null>,
): Promise<number> {
  let retried = 0;
  for (let i = 0; i < requests; i++) {
    const decision = await decide(i);
    assert.ok(decision !== null && decision.kind === 'forward' && decision.retry !== null);
    for (let attempt = 0; attempt < decision.retry.retries; attempt++) {
      if (!decision.retry.budget.tryWithdraw()) break;
      retried++;
    }
  }
  return retried;
}

describe('circuit breaking, many spellings', () => {
  it('an endpoint tripped for web.shop is tripped for every spelling of it', async () => {
    // The control plane answers every spelling it accepts with the Service's one endpoint.
    const asked: string[] = [];
    const resolver: Resolver = {
      resolve(target, onUpdate) {
        asked.push(target);
        queueMicrotask(() => onUpdate({ kind: 'reset', endpoints: [staticEndpoint('127.0.0.1:9001')] }));
        return { cancel() {} };
      },
    };
    const d = new ServiceDiscovery({
      resolver,
      failFastMs: 1000,
      idleMs: 0,
      log: silentLogger,
      namespace: 'shop',
    });
    const { policy } = parseTrafficAnnotations({
      'balancer.trellis.io/failure-accrual': 'consecutive',
      'balancer.trellis.io/failure-accrual-max-failures': '1',
      'balancer.trellis.io/failure-accrual-min-penalty': '1m',
      'balancer.trellis.io/failure-accrual-max-penalty': '1m',
    });
    d.applyTrafficPolicy({ namespace: 'shop', name: 'web', port: 80 }, policy);
    const first = await d.pick({ host: 'web.shop', port: 80 });
    assert.ok(!('error' in first));
    first.fail?.();
    first.done(1, true);
    const spellings = ['web.shop', 'web', 'WEB', 'web.shop.', 'Web.Shop', 'web.shop.svc', 'WEB.SHOP.SVC.'];
    const outcomes: PickOutcome[] = [];
    for (const host of spellings) outcomes.push(await d.pick({ host, port: 80 }));
    assert.deepEqual(
      outcomes.map((o) => ('error' in o ? o.error : 'picked')),
      spellings.map(() => 'all-endpoints-tripped'),
    );
    assert.deepEqual(asked, ['web.shop:80'], 'one resolution for the Service port');
    d.close();
  });
});

describe('limits longer than a Node timer', () => {
  it('attemptLimit and retryAfter never ask for a timer over 2^31-1 ms (it would fire at once)', () => {
    const now = 1000;
    const day = 24 * 3_600_000;
    // timeouts.request of 99999h (a valid Gateway API duration), a 30-day grpc-timeout.
    for (const requestMs of [99_999 * 3_600_000, 30 * day]) {
      const limit = attemptLimit(now + requestMs, { requestMs, attemptMs: null }, 0, now);
      assert.ok(limit.ms > 0 && limit.ms <= MAX_TIMER_MS, `${requestMs}: ${limit.ms}`);
      assert.equal(limit.reason, 'request-timeout');
    }
    const perAttempt = attemptLimit(Infinity, { requestMs: null, attemptMs: 99_999 * 3_600_000 }, 0, now);
    assert.ok(perAttempt.ms > 0 && perAttempt.ms <= MAX_TIMER_MS);
    const retry = {
      codes: [503],
      grpcCodes: [],
      retries: 1,
      backoffMs: 99_999 * 3_600_000,
      budget: new RetryBudget(),
    };
    const delay = retryAfter(retry, 0, { status: 503, grpcStatus: null }, Infinity, now, { next: () => 0.5 });
    assert.ok(typeof delay === 'number' && delay > 0 && delay <= MAX_TIMER_MS, String(delay));
  });
});

describe('URLRewrite ReplacePrefixMatch', () => {
  it('never sends a network-path reference ("//host") to the backend', () => {
    const table = routeSet(
      `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: strip, namespace: shop }
spec:
  parentRefs: [{ group: "", kind: Service, name: web, port: 80 }]
  rules:
    - matches: [{ path: { type: PathPrefix, value: /api } }]
      filters:
        - type: URLRewrite
          urlRewrite: { path: { type: ReplacePrefixMatch, replacePrefixMatch: / } }
      backendRefs: [{ name: web, port: 80 }]
`,
      { 'shop/web': [80] },
    );
    const { routes } = routesWith(() => undefined);
    const sent = (pathAndQuery: string): string => {
      const decision = routes.decide({ host: 'web', port: 80 }, table, { ...GET, pathAndQuery });
      assert.ok(decision !== null && decision.kind === 'forward', pathAndQuery);
      return decision.pathAndQuery;
    };
    assert.equal(sent('/api/v1/x?q=1'), '/v1/x?q=1');
    assert.equal(sent('/api//evil.example/x'), '/evil.example/x');
    assert.equal(sent('/api///evil.example'), '/evil.example');
    assert.equal(sent('/api/%2F%2fevil.example/x?q=//a'), '/evil.example/x?q=//a');
    assert.equal(sent('/api/%5Cevil.example'), '/evil.example');
    // Only the start: empty segments further on are the app's to read.
    assert.equal(sent('/api/a//b'), '/a//b');
    routes.close();
  });
});

describe('header filters on fields the proxy writes itself', () => {
  const routeWith = (filter: string) => `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: hdr, namespace: shop }
spec:
  parentRefs: [{ group: "", kind: Service, name: web, port: 80 }]
  rules:
    - filters: [${filter}]
      backendRefs: [{ name: web, port: 80 }]
`;
  it('are refused: a Content-Length set or removed by a route smuggled the body upstream as a request', () => {
    // Seen before the fix through a client proxy to an unmeshed endpoint: with `set:
    // content-length: 0`, a POST whose body was "GET /smuggled HTTP/1.1..." reached the app as
    // two requests, the second never matched by any route.
    for (const name of [
      'Content-Length',
      'transfer-encoding',
      'Connection',
      'keep-alive',
      'TE',
      'upgrade',
      'host',
    ])
      for (const kind of ['requestHeaderModifier', 'responseHeaderModifier'])
        for (const op of [
          `set: [{ name: ${name}, value: '0' }]`,
          `add: [{ name: ${name}, value: '0' }]`,
          `remove: [${name}]`,
        ]) {
          const type = kind === 'requestHeaderModifier' ? 'RequestHeaderModifier' : 'ResponseHeaderModifier';
          assert.throws(
            () => routesFromYaml(routeWith(`{ type: ${type}, ${kind}: { ${op} } }`)),
            /the proxy writes this field itself/,
            `${kind} ${op}`,
          );
        }
    // Other fields stay the route's to change.
    assert.equal(
      routesFromYaml(
        routeWith(
          `{ type: RequestHeaderModifier, requestHeaderModifier: { set: [{ name: x-content-length, value: '0' }], remove: [x-host] } }`,
        ),
      ).length,
      1,
    );
  });
});

describe("a consumer route and another namespace's retry budget", () => {
  it('a route cannot lift the budget that protects the Service it retries against', async () => {
    // A consumer route of namespace shop for finance's ledger retries every 503 ten times and
    // asks, by its own annotations, for a budget without limits. The budget is the Service's.
    const routes = routesFromYaml(`
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: hammer
  namespace: shop
  annotations:
    retry.trellis.io/budget-ratio: '1'
    retry.trellis.io/budget-min-per-second: '100000'
spec:
  parentRefs: [{ group: "", kind: Service, name: ledger, namespace: finance, port: 80 }]
  rules: [{ backendRefs: [{ name: ledger, namespace: finance, port: 80 }], retry: { codes: [503], attempts: 10 } }]
`);
    const compiled = compileRouteSet({
      routes: routes.map((r) => ({
        kind: r.kind,
        namespace: r.namespace,
        name: r.name,
        createdMs: 0,
        specJson: JSON.stringify(r.spec),
        annotations: r.annotations ?? {},
      })),
      unresolvedBackends: [],
      serviceAnnotations: {},
      extensions: [],
    } as unknown as ApiRouteSetOutput);
    assert.ok(compiled.ok, compiled.ok ? '' : compiled.problem);
    const { routes: outbound } = routesWith((o) => o.onTable(compiled.table));
    const target = { host: 'ledger.finance', port: 80 };
    const table = await outbound.tableFor(target);
    const requests = 1000;
    const retried = await retriesDrawn(requests, () =>
      outbound.decide(target, table!, { ...GET, authority: 'ledger.finance' }),
    );
    // The default budget: 20% of the requests plus 10 a second over 10 s.
    assert.ok(retried <= 0.2 * requests + 100, `${retried} retries for ${requests} requests`);
    outbound.close();
  });
});

describe('HTTP/1 request bodies kept for retries', () => {
  it('take room in the proxy-wide bound, and give it back when the exchange ends', async () => {
    const table = routeSet(
      `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: r, namespace: shop }
spec:
  parentRefs: [{ group: "", kind: Service, name: web, port: 80 }]
  rules: [{ backendRefs: [{ name: web, port: 80 }], retry: { codes: [503] } }]
`,
      { 'shop/web': [80] },
    );
    const { routes } = routesWith((o) => o.onTable(table));
    const target = { host: 'web', port: 80 };
    await routes.tableFor(target);
    const kept = new KeptBodies(100 * 1024);
    const post = (length: number) => {
      const text = `POST / HTTP/1.1\r\nHost: web\r\nContent-Length: ${length}\r\n\r\n`;
      const result = parseRequestHead(Buffer.from(text, 'latin1'), 0, text.length, H1_LIMITS);
      assert.ok(result.kind === 'ok');
      const parsed = result.head;
      const rule = new H1RouteRule();
      const route = { target, path: '/', host: null };
      const decision = rule.decide(routes, table, route, parsed);
      assert.ok(decision !== null && decision.kind === 'forward');
      rule.forwardBy(decision, parsed, route, null, kept);
      return rule;
    };
    const first = post(64 * 1024);
    assert.ok(first.retry !== null && first.body !== null, 'the first body fits and is kept');
    const second = post(64 * 1024);
    assert.equal(second.retry, null, 'no room for the second: not kept, not retried');
    assert.equal(second.body, null);
    assert.equal(kept.bytes, 64 * 1024);
    first.reset();
    assert.equal(kept.bytes, 0);
    const third = post(64 * 1024);
    assert.ok(third.retry !== null, 'room again once the first exchange ended');
    third.releaseBody();
    assert.equal(kept.bytes, 0);
    routes.close();
  });
});

describe('the bound on watched Service ports', () => {
  it('a client naming a thousand Services once does not leave later ones without routes', async () => {
    const table = routeSet(
      `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: r, namespace: shop }
spec:
  parentRefs: [{ group: "", kind: Service, name: web, port: 80 }]
  rules: [{ backendRefs: [{ name: web, port: 80 }] }]
`,
      { 'shop/web': [80] },
    );
    // Every watch answers at once: web with its route, every other name with no routes.
    const { routes, started } = routesWith((o) =>
      queueMicrotask(() => o.onTable(o.service === 'web' ? table : { http: null, grpc: null })),
    );
    // Names asked for once: two-label names read as Service NAME of namespace LABEL.
    for (let i = 0; i < MAX_WATCHED; i++) await routes.tableFor({ host: `site${i}.com`, port: 80 });
    assert.equal(started.length, MAX_WATCHED);
    const web = await routes.tableFor({ host: 'web', port: 80 });
    assert.equal(web, table, 'web is watched and its routes apply');
    assert.equal(routes.evicted, 1);
    assert.equal(routes.tableFor({ host: 'web.shop', port: 80 }), table);
    routes.close();
  });

  it("a route's backend keeps its own watch (its circuit breaking policy) while the route is used", async () => {
    const table = routeSet(
      `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: r, namespace: shop }
spec:
  parentRefs: [{ group: "", kind: Service, name: web, port: 80 }]
  rules: [{ backendRefs: [{ name: web-v2, port: 80 }] }]
`,
      { 'shop/web': [80], 'shop/web-v2': [80] },
    );
    const started: string[] = [];
    const open = new Map<string, number>();
    const routes = new OutboundRoutes({
      address: '127.0.0.1:1',
      namespace: 'shop',
      waitMs: 1000,
      log: silentLogger,
      onPolicy: () => undefined,
      startWatch: (o) => {
        started.push(o.service);
        open.set(o.service, (open.get(o.service) ?? 0) + 1);
        queueMicrotask(() => o.onTable(o.service === 'web' ? table : { http: null, grpc: null }));
        return { close: () => open.set(o.service, open.get(o.service)! - 1) };
      },
    });
    const target = { host: 'web', port: 80 };
    const send = async () => {
      const decision = routes.decide(target, (await routes.tableFor(target))!, GET);
      assert.ok(decision !== null && decision.kind === 'forward');
      await new Promise((r) => setImmediate(r)); // the backend's watch answers
    };
    await send();
    assert.deepEqual(started, ['web', 'web-v2']);
    // A thousand names asked for once, with requests to web among them.
    for (let i = 0; i < MAX_WATCHED; i++) {
      await routes.tableFor({ host: `site${i}.com`, port: 80 });
      if (i % 100 === 0) await send();
    }
    await send();
    assert.ok(routes.evicted > 0);
    // Asked for with every request to web: still watched, and never watched twice at once.
    assert.equal(open.get('web-v2'), 1, 'the backend is watched');
    assert.equal(open.get('web'), 1);
    routes.close();
  });
});
