// The route source on Kubernetes (src/control/routes/kubernetes.ts) against the fake API server:
// the RouteSnapshot (valid routes, Services' ports and traffic annotations only), an invalid route
// left out and logged once with its field (not again when its status is written), and a cluster
// without the Gateway API CRDs: the source still gets ready (no routes), and the routes come once
// the CRDs are there.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger } from '../../src/core/log.ts';
import { kubeConfigForServer } from '../../src/control/discovery/kubernetes.ts';
import { KubernetesRouteSource } from '../../src/control/routes/kubernetes.ts';
import { FakeKubeServer } from '../fake-kube/server.ts';

async function until(what: string, check: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const ROUTES = `apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: { name: rpc, namespace: shop, annotations: { timeout.trellis.io/request: 2s, other.example/x: y } }
spec:
  parentRefs: [{ group: "", kind: Service, name: web }]
  rules: [{ backendRefs: [{ name: web, port: 80 }] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: bad, namespace: shop }
spec:
  parentRefs: [{ group: "", kind: Service, name: web }]
  hostnames: ["Not_A_Host"]
`;

test('kubernetes route source: valid routes, Services with their traffic annotations; an invalid route logged once', async (t) => {
  const kube = new FakeKubeServer();
  await kube.start();
  t.after(() => kube.close());
  kube.applyYaml(`apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
  annotations: { retry.trellis.io/http: "5xx", kubectl.kubernetes.io/last-applied-configuration: "{}" }
spec: { ports: [{ name: http, port: 80 }] }
`);
  kube.applyYaml(ROUTES);
  const lines: string[] = [];
  const source = new KubernetesRouteSource({
    kubeConfig: kubeConfigForServer(kube.url),
    log: createLogger({ level: 'warn', write: (line) => lines.push(line) }),
    retryDelayMs: 50,
  });
  t.after(() => source.close());
  await source.ready();
  const snapshot = source.snapshot();
  assert.deepEqual(
    snapshot.routes.map((r) => [r.kind, r.name, r.annotations]),
    [['GRPCRoute', 'rpc', { 'timeout.trellis.io/request': '2s' }]],
  );
  assert.deepEqual([...snapshot.services], [['shop/web', [{ port: 80, name: 'http' }]]]);
  assert.deepEqual([...snapshot.serviceAnnotations], [['shop/web', { 'retry.trellis.io/http': '5xx' }]]);
  await until('both statuses written', () => source.statusWrites.written === 2);
  const refusals = lines.filter((l) => l.includes('invalid route skipped'));
  assert.equal(refusals.length, 1, lines.join('\n'));
  assert.match(refusals[0]!, /HTTPRoute shop\/bad.*spec\.hostnames\.0: expected a lower-case host name/);

  // A change of the Service reaches listeners once per batch.
  let changes = 0;
  source.onChange(() => changes++);
  kube.applyYaml(`apiVersion: v1
kind: Service
metadata: { name: web, namespace: shop }
spec: { ports: [{ name: http, port: 80 }, { port: 81 }] }
`);
  await until('the Service change', () => source.snapshot().services.get('shop/web')?.length === 2);
  await until('a notification', () => changes >= 1);
  assert.equal(source.snapshot().serviceAnnotations.size, 0);
  assert.equal(lines.filter((l) => l.includes('invalid route skipped')).length, 1);
});

test('kubernetes route source: without the Gateway API CRDs it gets ready with no routes, and follows them once installed', async (t) => {
  const kube = new FakeKubeServer();
  await kube.start();
  t.after(() => kube.close());
  kube.missingKinds.add('HTTPRoute').add('GRPCRoute');
  kube.applyYaml(ROUTES);
  const lines: string[] = [];
  const source = new KubernetesRouteSource({
    kubeConfig: kubeConfigForServer(kube.url),
    log: createLogger({ level: 'warn', write: (line) => lines.push(line) }),
    retryDelayMs: 50,
  });
  t.after(() => source.close());
  await source.ready();
  assert.deepEqual(source.snapshot().routes, []);
  assert.ok(
    lines.some((l) =>
      l.includes('no httproutes.gateway.networking.k8s.io in the API: install the Gateway API CRDs'),
    ),
    lines.join('\n'),
  );
  kube.missingKinds.clear();
  await until('the routes', () => source.snapshot().routes.length === 1);
});

test('kubernetes route source: a route left out of a set over its bound gets Accepted=False RouteSetTooLarge written', async (t) => {
  const kube = new FakeKubeServer();
  await kube.start();
  t.after(() => kube.close());
  kube.applyYaml(`apiVersion: v1
kind: Service
metadata: { name: web, namespace: shop }
spec: { ports: [{ name: http, port: 80 }] }
`);
  // Four routes of ~900 KB (as large as the API server takes about), created a second apart:
  // three fit in one set's 3 MiB, the newest does not.
  const value = 'x'.repeat(1000);
  const headers = Array.from({ length: 14 }, (_, i) => `{ name: h${i}, value: ${value} }`).join(', ');
  const matches = Array.from({ length: 64 }, () => `{ headers: [${headers}] }`).join(', ');
  for (const i of [0, 1, 2, 3])
    kube.applyYaml(`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: big${i}, namespace: shop, creationTimestamp: "2026-01-01T00:00:0${i}Z" }
spec:
  parentRefs: [{ group: "", kind: Service, name: web }]
  rules: [{ matches: [${matches}], backendRefs: [{ name: web, port: 80 }] }]
`);
  const source = new KubernetesRouteSource({
    kubeConfig: kubeConfigForServer(kube.url),
    log: createLogger({ level: 'off' }),
    retryDelayMs: 50,
  });
  t.after(() => source.close());
  await source.ready();
  await until('four statuses written', () => source.statusWrites.written === 4);
  const accepted = (name: string) => {
    const status = kube.get('HTTPRoute', 'shop', name)?.status as
      | { parents: { conditions: { type: string; status: string; reason: string; message: string }[] }[] }
      | undefined;
    return status?.parents[0]?.conditions.find((c) => c.type === 'Accepted');
  };
  for (const name of ['big0', 'big1', 'big2']) assert.equal(accepted(name)?.reason, 'Accepted', name);
  assert.equal(accepted('big3')?.status, 'False');
  assert.equal(accepted('big3')?.reason, 'RouteSetTooLarge');
  assert.match(
    accepted('big3')!.message,
    /^not sent to proxies for port 80: this route \(\d+ KiB\) with the older routes/,
  );
});
