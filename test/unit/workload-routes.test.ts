// The routes of a workload for the dashboard's workload page (src/control/routes/workload-routes.ts):
// the Services it backs (named like it on one machine, or naming it in an endpoint's workload label
// on Kubernetes), each with the view `trellis routes` shows; the Services it calls (named by a
// consumer route of its namespace, or backed by a workload its edges show it calling), each with
// the routes that apply to its calls; and GET /api/workload-routes of the route component
// answering it from a route source, the catalog and the edges.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { silentLogger } from '../../src/core/log.ts';
import type { RouteSnapshot } from '../../src/control/routes/route-set.ts';
import { createRouteComponent } from '../../src/control/routes/component.ts';
import type { RouteSource } from '../../src/control/routes/source.ts';
import {
  servicesCalledBy,
  servicesOfWorkload,
  workloadRoutesView,
} from '../../src/control/routes/workload-routes.ts';
import type { Edge } from '../../src/control/metrics/edges.ts';
import type { ServiceView } from '../../src/control/server.ts';
import { routesFromYaml } from './routes-helpers.ts';

const ROUTES = routesFromYaml(`
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: voting-split, namespace: shop }
spec:
  parentRefs: [{ group: '', kind: Service, name: voting, port: 8080 }]
  rules:
    - backendRefs: [{ name: voting, port: 8080, weight: 90 }, { name: voting-v2, port: 8080, weight: 10 }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: emoji, namespace: shop }
spec:
  parentRefs: [{ group: '', kind: Service, name: emoji, port: 8080 }]
  rules:
    - backendRefs: [{ name: emoji, port: 8080 }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: front, namespace: blog }
spec:
  parentRefs: [{ group: '', kind: Service, name: front, port: 8080 }]
  rules:
    - backendRefs: [{ name: front, port: 8080 }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: shop-to-front, namespace: shop }
spec:
  parentRefs: [{ group: '', kind: Service, name: front, namespace: blog, port: 8080 }]
  rules:
    - timeouts: { request: 2s }
      backendRefs: [{ name: front, namespace: blog, port: 8080 }]
`);

const SNAPSHOT: RouteSnapshot = {
  routes: ROUTES,
  services: new Map([
    ['shop/voting', [{ port: 8080 }]],
    ['shop/voting-api', [{ port: 8080 }]],
    ['shop/emoji', [{ port: 8080 }]],
    ['blog/voting', [{ port: 8080 }]],
    ['blog/front', [{ port: 8080 }]],
  ]),
  serviceAnnotations: new Map(),
};

function service(namespace: string, name: string, workloads: string[]): ServiceView {
  return {
    namespace,
    name,
    ports: [
      {
        port: 8080,
        endpoints: workloads.map((workload, i) => ({
          address: `10.0.0.${i + 1}:8080`,
          weight: 1,
          meshed: true,
          identity: null,
          protocolHint: 'h2',
          labels: { namespace, service: name, workload },
        })),
      },
    ],
  };
}

const CATALOG = [
  service('shop', 'voting', []),
  service('shop', 'voting-api', ['voting']), // Kubernetes: another Service selecting its pods
  service('shop', 'emoji', ['emoji']),
  service('blog', 'front', ['voting']), // the same workload name in another namespace
];

test('a workload backs the Service of its name and those whose endpoints name it, in its namespace', () => {
  assert.deepEqual(servicesOfWorkload(SNAPSHOT, CATALOG, 'shop', 'voting'), ['voting', 'voting-api']);
  assert.deepEqual(servicesOfWorkload(SNAPSHOT, [], 'shop', 'voting'), ['voting'], 'without a catalog');
  assert.deepEqual(servicesOfWorkload(SNAPSHOT, CATALOG, 'blog', 'voting'), ['front', 'voting']);
  assert.deepEqual(servicesOfWorkload(SNAPSHOT, CATALOG, 'shop', 'vote-bot'), [], 'a client only');
});

test("the view: each Service with the routes attached to it, their status and backends' shares", () => {
  const view = workloadRoutesView(SNAPSHOT, CATALOG, 'shop', 'voting');
  assert.equal(view.namespace, 'shop');
  assert.equal(view.workload, 'voting');
  assert.deepEqual(
    view.services.map((s) => [s.service, s.routes.map((r) => r.name)]),
    [
      ['voting', ['voting-split']],
      ['voting-api', []],
    ],
  );
  const route = view.services[0]!.routes[0]!;
  assert.equal(route.role, 'producer');
  assert.deepEqual(
    route.parents[0]!.conditions.map((c) => `${c.type}=${c.status}/${c.reason}`),
    ['Accepted=True/Accepted', 'ResolvedRefs=False/BackendNotFound'],
  );
  assert.deepEqual(
    route.rules[0]!.backends.map((b) => [b.name, b.weight, b.share, b.resolved]),
    [
      ['voting', 90, 90, true],
      ['voting-v2', 10, 10, false],
    ],
  );
});

function edge(src: string, dst: string): Edge {
  const [srcNs, srcName] = src.split('/') as [string, string];
  const [dstNs, dstName] = dst.split('/') as [string, string];
  return {
    src_namespace: srcNs,
    src: srcName,
    dst_namespace: dstNs,
    dst: dstName,
    client_identity: null,
    server_identity: null,
    secured: true,
    no_tls_reason: null,
    connections: 1,
    seen_by: 'both',
  };
}

/** web calls emoji and voting (seen), and blog's front through a consumer route of shop. */
const EDGES = [edge('shop/web', 'shop/emoji'), edge('shop/web', 'shop/voting'), edge('shop/bot', 'shop/web')];

test('outbound: the Services a workload calls, known from its consumer routes and its edges', () => {
  assert.deepEqual(
    [...servicesCalledBy(SNAPSHOT, CATALOG, 'shop', 'web', EDGES)],
    [
      ['blog/front', ['consumer-route']],
      ['shop/emoji', ['calls']],
      ['shop/voting', ['calls']],
      ['shop/voting-api', ['calls']],
    ],
  );
  assert.deepEqual(
    [...servicesCalledBy(SNAPSHOT, CATALOG, 'shop', 'web', [])],
    [['blog/front', ['consumer-route']]],
  );
  // A workload of another namespace has none of shop's consumer routes, and calls nothing seen.
  assert.deepEqual([...servicesCalledBy(SNAPSHOT, CATALOG, 'blog', 'web', EDGES)], []);
});

test("outbound: each Service with the routes for the caller's calls, consumer routes first", () => {
  const view = workloadRoutesView(SNAPSHOT, CATALOG, 'shop', 'web', EDGES);
  assert.deepEqual(view.services, [], 'web backs no Service');
  assert.deepEqual(
    view.outbound.map((s) => [
      `${s.namespace}/${s.service}`,
      s.known_by,
      s.routes.map((r) => `${r.namespace}/${r.name} ${r.role}`),
    ]),
    [
      // front's producer route does not apply to shop's calls: shop's consumer route replaces it.
      ['blog/front', ['consumer-route'], ['shop/shop-to-front consumer']],
      ['shop/emoji', ['calls'], ['shop/emoji producer']],
      ['shop/voting', ['calls'], ['shop/voting-split producer']],
      ['shop/voting-api', ['calls'], []],
    ],
  );
  // bot calls web, which backs no Service: nothing to show for that call.
  const other = workloadRoutesView(SNAPSHOT, CATALOG, 'shop', 'bot', EDGES);
  assert.deepEqual(
    other.outbound.map((s) => `${s.namespace}/${s.service}`),
    ['blog/front'],
  );
  // A caller in front's own namespace gets its producer route.
  assert.deepEqual(
    workloadRoutesView(SNAPSHOT, CATALOG, 'blog', 'x', [edge('blog/x', 'blog/front')]).outbound.map((s) =>
      s.routes.map((r) => r.name),
    ),
    [['front']],
  );
});

test('GET /api/workload-routes answers the view, 400 without a workload, 405 for a change', async (t) => {
  const source: RouteSource = {
    ready: async () => {},
    snapshot: () => SNAPSHOT,
    onChange: () => () => {},
    close: async () => {},
  };
  const component = createRouteComponent(
    source,
    silentLogger,
    async () => CATALOG,
    () => EDGES,
  );
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    void Promise.resolve(component.handleHttp!(req, res, path, '')).then((owned) => {
      if (!owned) res.writeHead(404).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => server.close());
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  for (const workload of ['voting', 'web']) {
    const ok = await fetch(`${base}/api/workload-routes?namespace=shop&workload=${workload}`);
    assert.equal(ok.status, 200);
    const body = (await ok.json()) as ReturnType<typeof workloadRoutesView>;
    const want = workloadRoutesView(SNAPSHOT, CATALOG, 'shop', workload, EDGES);
    assert.deepEqual(JSON.parse(JSON.stringify(want)), body);
    if (workload === 'web') assert.equal(body.outbound.length, 4, 'the edges reach the view');
  }
  assert.equal((await fetch(`${base}/api/workload-routes?namespace=shop`)).status, 400);
  const post = await fetch(`${base}/api/workload-routes?namespace=shop&workload=voting`, { method: 'POST' });
  assert.equal(post.status, 405);
  assert.equal(post.headers.get('allow'), 'GET, HEAD');
  await component.close?.();
});
