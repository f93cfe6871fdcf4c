// The route level's bookkeeping (src/proxy/outbound/routes.ts): which targets name a Service, the
// first request's bounded wait for the routes, a table that arrives later, and the bound on
// watched Service ports. The watch is a scripted fake; matching itself is tested in
// routes-matcher.test.ts and on the data path in test/e2e/routes-mesh.test.ts.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { silentLogger } from '../../src/core/log.ts';
import type { RouteTable } from '../../src/core/routes/matcher.ts';
import { MAX_WATCHED, OutboundRoutes, serviceOf } from '../../src/proxy/outbound/routes.ts';
import type { RouteWatchOptions } from '../../src/proxy/route/watch-client.ts';
import { routesFromYaml } from './routes-helpers.ts';
import { compileRouteTable } from '../../src/core/routes/matcher.ts';
import { NO_TRAFFIC_POLICY } from '../../src/core/routes/service-annotations.ts';
import { compileRouteSet, type PolicedRouteTable } from '../../src/proxy/route/route-table.ts';

const TABLE: RouteTable = compileRouteTable(
  routesFromYaml(`
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: r, namespace: default }
spec:
  parentRefs: [{ group: "", kind: Service, name: web }]
  rules: [{ backendRefs: [{ name: web, port: 80 }] }]
`),
  () => true,
);

function routesWith(
  onStart: (o: RouteWatchOptions) => void,
  waitMs = 50,
): { routes: OutboundRoutes; started: RouteWatchOptions[] } {
  const started: RouteWatchOptions[] = [];
  const routes = new OutboundRoutes({
    address: '127.0.0.1:1',
    namespace: 'shop',
    waitMs,
    log: silentLogger,
    startWatch: (o) => {
      started.push(o);
      onStart(o);
      return { close() {} };
    },
  });
  return { routes, started };
}

describe('serviceOf', () => {
  it('names a Service the way the Gateway API does: NAME, NAME.NS, NAME.NS.svc[.zone]', () => {
    assert.deepEqual(serviceOf({ host: 'web', port: 80 }, 'shop'), {
      namespace: 'shop',
      name: 'web',
      port: 80,
    });
    assert.deepEqual(serviceOf({ host: 'Web.Other.', port: 81 }, 'shop'), {
      namespace: 'other',
      name: 'web',
      port: 81,
    });
    assert.deepEqual(serviceOf({ host: 'web.other.svc.cluster.local', port: 8 }, 'shop'), {
      namespace: 'other',
      name: 'web',
      port: 8,
    });
    assert.equal(serviceOf({ host: 'api.example.com', port: 443 }, 'shop'), null);
  });

  it('never throws, and a name it accepts keeps the port', () => {
    fc.assert(
      fc.property(fc.string(), fc.integer({ min: 1, max: 65535 }), (host, port) => {
        const s = serviceOf({ host, port }, 'ns');
        if (s !== null) assert.equal(s.port, port);
      }),
    );
  });
});

describe('OutboundRoutes', () => {
  it('the first request waits for the first table; later ones get it at once', async () => {
    const { routes, started } = routesWith((o) => setTimeout(() => o.onTable(TABLE), 5), 5000);
    const first = routes.tableFor({ host: 'web', port: 80 });
    assert.ok(first instanceof Promise);
    assert.equal(await first, TABLE);
    assert.equal(routes.tableFor({ host: 'web', port: 80 }), TABLE);
    assert.equal(started.length, 1);
    assert.deepEqual(
      {
        ns: started[0]!.namespace,
        svc: started[0]!.service,
        port: started[0]!.port,
        client: started[0]!.clientNamespace,
      },
      { ns: 'shop', svc: 'web', port: 80, client: 'shop' },
    );
    routes.close();
  });

  it('no answer within the wait: the request goes on without routes, and a later table applies', async () => {
    let deliver: ((t: RouteTable) => void) | null = null;
    const { routes } = routesWith((o) => (deliver = o.onTable), 30);
    assert.equal(await routes.tableFor({ host: 'web', port: 80 }), null);
    assert.equal(routes.tableFor({ host: 'web', port: 80 }), null);
    deliver!(TABLE);
    assert.equal(routes.tableFor({ host: 'web', port: 80 }), TABLE);
    // An empty set (every route detached) is "no routes" again.
    deliver!({ http: null, grpc: null });
    assert.equal(routes.tableFor({ host: 'web', port: 80 }), null);
    routes.close();
  });

  it('names that are not Services are never watched, and the watches are bounded', async () => {
    const { routes, started } = routesWith((o) => o.onTable({ http: null, grpc: null }), 10);
    assert.equal(routes.tableFor({ host: 'api.example.com', port: 443 }), null);
    // All at once: each first request waits out waitMs (10 ms, ~14 ms on a busy machine), one after
    // the other that was 14 s; the bound is taken when tableFor is called, so it counts the same.
    const names = Array.from({ length: MAX_WATCHED + 5 }, (_, i) => `s${i}`);
    await Promise.all(names.map((host) => routes.tableFor({ host, port: 80 })));
    assert.equal(started.length, MAX_WATCHED);
    routes.close();
  });
});

describe('OutboundRoutes against a control plane without the Routes API', () => {
  it('a watch that fails before its first table lets the first request go on at once', async () => {
    const { routes } = routesWith((o) => setImmediate(() => o.onEnd?.()), 60_000);
    const started = performance.now();
    assert.equal(await routes.tableFor({ host: 'web', port: 80 }), null);
    // Not the 60 s wait: before, a Kubernetes control plane (no Routes API: UNIMPLEMENTED) made
    // every first request to a Service port wait for the whole fail-fast time.
    assert.ok(performance.now() - started < 5_000);
    routes.close();
  });
});

describe('retry budget across route updates', () => {
  const RETRYING: RouteTable = compileRouteTable(
    routesFromYaml(`
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: r, namespace: shop }
spec:
  parentRefs: [{ group: "", kind: Service, name: web }]
  rules: [{ backendRefs: [{ name: web, port: 80 }], retry: { codes: [503], attempts: 2 } }]
`),
    () => true,
  );
  const withBudget = (ratio: number): PolicedRouteTable => ({
    ...RETRYING,
    // A new object each update, as every route set decoded from the control plane is.
    policy: { ...NO_TRAFFIC_POLICY, budget: { ratio, minPerSecond: 10, windowMs: 10_000 } },
  });
  const request = { method: 'GET', pathAndQuery: '/', headers: {}, grpc: false, authority: 'web' };

  it('keeps its counts when an update brings the same budget, and starts afresh when the budget changes', async () => {
    let deliver!: (table: PolicedRouteTable) => void;
    const { routes } = routesWith((o) => (deliver = o.onTable as typeof deliver), 1000);
    const target = { host: 'web', port: 80 };
    const first = routes.tableFor(target);
    deliver(withBudget(0.2));
    const budgetOf = (table: PolicedRouteTable) => {
      const decision = routes.decide(target, table, request);
      assert.ok(decision !== null && decision.kind === 'forward' && decision.retry !== null);
      return decision.retry.budget;
    };
    const before = budgetOf((await first)!);
    const same = withBudget(0.2);
    deliver(same);
    assert.equal(budgetOf(same), before, 'an equal budget in a new update is the same budget');
    const changed = withBudget(0.5);
    deliver(changed);
    assert.notEqual(budgetOf(changed), before, 'a changed budget is a new one');
    routes.close();
  });
});

describe("a route's own annotations", () => {
  // Two routes of Service web: `own` has annotations of its own (laid over the Service's), `plain`
  // has none and takes the Service's. Tables as the control plane's route sets compile them.
  const tableWith = (ownLimit: string): PolicedRouteTable => {
    const spec = (path: string) =>
      JSON.stringify({
        parentRefs: [{ group: '', kind: 'Service', name: 'web' }],
        rules: [
          {
            matches: [{ path: { type: 'PathPrefix', value: path } }],
            backendRefs: [{ name: 'web', port: 80 }],
          },
        ],
      });
    const compiled = compileRouteSet({
      routes: [
        {
          kind: 'HTTPRoute',
          namespace: 'shop',
          name: 'own',
          createdMs: 0,
          specJson: spec('/own'),
          annotations: { 'retry.trellis.io/limit': ownLimit },
        },
        {
          kind: 'HTTPRoute',
          namespace: 'shop',
          name: 'plain',
          createdMs: 1,
          specJson: spec('/plain'),
          annotations: {},
        },
      ],
      unresolvedBackends: [],
      serviceAnnotations: { 'retry.trellis.io/http': '503' },
      extensions: [],
    });
    assert.ok(compiled.ok, compiled.ok ? '' : compiled.problem);
    return compiled.table;
  };
  const retriesOf = (routes: OutboundRoutes, table: PolicedRouteTable, path: string): number | null => {
    const request = { method: 'GET', pathAndQuery: path, headers: {}, grpc: false, authority: 'web' };
    const decision = routes.decide({ host: 'web', port: 80 }, table, request);
    assert.ok(decision !== null && decision.kind === 'forward');
    return decision.retry?.retries ?? null;
  };

  it('apply to their route only, and follow the route through table updates', async () => {
    let deliver!: (table: PolicedRouteTable) => void;
    const { routes } = routesWith((o) => (deliver = o.onTable as typeof deliver), 1000);
    const watching = routes.tableFor({ host: 'web', port: 80 });
    const first = tableWith('4');
    deliver(first);
    assert.equal(await watching, first);
    for (let i = 0; i < 3; i++) {
      assert.equal(retriesOf(routes, first, '/own'), 4);
      assert.equal(retriesOf(routes, first, '/plain'), 1, "the Service's policy");
    }
    const updated = tableWith('2');
    deliver(updated);
    assert.equal(retriesOf(routes, updated, '/own'), 2, 'the updated annotation');
    assert.equal(retriesOf(routes, updated, '/plain'), 1);
    routes.close();
  });
});
