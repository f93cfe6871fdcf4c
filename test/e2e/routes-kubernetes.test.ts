// Routes on Kubernetes end to end: `trellis control` (a real process) over the fake API server
// (test/fake-kube), HTTPRoutes created and changed with the real `kubectl apply`, a proxy's
// Routes/Watch client (src/proxy/route/watch-client.ts) getting them, and the status the control
// plane writes back through the status subresource (src/control/routes/kubernetes.ts): Accepted /
// ResolvedRefs with their reasons and observedGeneration, another controller's entry left alone, an
// invalid route refused with Accepted=False naming the field, Accepted flipping to False when the
// Service loses the port, and the number of status writes: one per change of what a status says,
// none after a reconnect and relist.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { matchRoute, NO_MATCHING_RULE } from '../../src/core/routes/matcher.ts';
import { FakeKubeServer } from '../fake-kube/server.ts';
import { runCli, waitFor } from '../helpers/cli.ts';
import { kubectlApply, startKubeControl, watchShopRoutes } from '../helpers/kube-control.ts';
import { request } from '../unit/routes-helpers.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const SERVICES = `apiVersion: v1
kind: Service
metadata: { name: web, namespace: shop }
spec:
  ports: [{ name: http, port: 80 }, { name: admin, port: 81 }]
---
apiVersion: v1
kind: Service
metadata: { name: web-v2, namespace: shop }
spec:
  ports: [{ name: http, port: 8080 }]
`;

const route = (backend: string) => `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: split, namespace: shop }
spec:
  parentRefs: [{ group: "", kind: Service, name: web, port: 80 }]
  rules:
  - matches: [{ path: { type: PathPrefix, value: /v2 } }]
    backendRefs: [{ name: ${backend}, port: 8080 }]
`;

const BROKEN = `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: broken, namespace: shop }
spec:
  parentRefs: [{ group: "", kind: Service, name: web, port: 80 }]
  rules:
  - matches: [{ path: { type: PathPrefix, value: no-slash } }]
`;

const OTHER_CONTROLLER = {
  parentRef: { group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'edge' },
  controllerName: 'example.com/gateway',
  conditions: [
    {
      type: 'Accepted',
      status: 'True',
      reason: 'Accepted',
      message: 'theirs',
      observedGeneration: 1,
      lastTransitionTime: '2026-01-01T00:00:00Z',
    },
  ],
};

/** The status entry of our controller for parent web:80 of a route, or null. */
function ours(kube: FakeKubeServer, name: string): Json | null {
  const object = kube.get('HTTPRoute', 'shop', name) as Json | undefined;
  const parents = (object?.['status']?.['parents'] ?? []) as Json[];
  return parents.find((p) => p['controllerName'] === 'trellis.dev/mesh') ?? null;
}

const condition = (entry: Json | null, type: string): Json | undefined =>
  (entry?.['conditions'] as Json[] | undefined)?.find((c) => c['type'] === type);

const statusWrites = (kube: FakeKubeServer) =>
  kube.requests.filter((r) => r.verb === 'patch' && r.subresource === 'status').length;

/** Waits until the status writes stop for `quietMs`, and returns their number. */
async function settledWrites(kube: FakeKubeServer, quietMs = 1500): Promise<number> {
  let last = -1;
  let since = Date.now();
  for (;;) {
    const now = statusWrites(kube);
    if (now !== last) [last, since] = [now, Date.now()];
    else if (Date.now() - since >= quietMs) return now;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

test('trellis control serves Kubernetes HTTPRoutes to proxies and writes their status back, once per change', async (t) => {
  const kube = new FakeKubeServer();
  await kube.start();
  t.after(() => kube.close());
  kube.applyYaml(SERVICES);
  await kubectlApply(kube.url, route('web-v2'));
  // Another controller's entry, written before ours: it stays as it is.
  const theirs = kube.write(
    'HTTPRoute',
    'shop',
    'split',
    { status: { parents: [OTHER_CONTROLLER] } },
    { mode: 'merge', status: true },
  );
  assert.equal(theirs.status, 200);
  await kubectlApply(kube.url, BROKEN);

  const { control, ready } = await startKubeControl(t, kube.url);

  // A proxy's watch gets the route.
  const watched = watchShopRoutes(t, ready['grpc']!, 'web', 80);
  const backendOf = (path: string): string | null => {
    const table = watched.table();
    if (table === null) return null;
    const m = matchRoute(table, request(path));
    if (m === null) return 'none';
    if (m === NO_MATCHING_RULE) return '404';
    const b = m.rule.backends.backends[0];
    return `${b?.name}${b?.resolved ? '' : ' (unresolved)'}`;
  };
  await waitFor('the proxy to route /v2 to web-v2', async () =>
    backendOf('/v2/x') === 'web-v2' ? true : null,
  );
  assert.equal(backendOf('/other'), '404');

  // Status written back, beside the other controller's entry.
  const accepted = await waitFor('the status of split', async () => ours(kube, 'split'));
  const split = kube.get('HTTPRoute', 'shop', 'split') as Json;
  assert.deepEqual(split['status']['parents'][0], OTHER_CONTROLLER);
  assert.deepEqual(accepted['parentRef'], { group: '', kind: 'Service', name: 'web', port: 80 });
  assert.deepEqual(
    (accepted['conditions'] as Json[]).map((c) => [
      c['type'],
      c['status'],
      c['reason'],
      c['observedGeneration'],
    ]),
    [
      ['Accepted', 'True', 'Accepted', 1],
      ['ResolvedRefs', 'True', 'ResolvedRefs', 1],
    ],
  );
  for (const c of accepted['conditions'] as Json[])
    assert.match(c['lastTransitionTime'], /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);

  // The invalid route: refused, naming the field; the valid one still applies.
  const refused = await waitFor('the status of broken', async () => ours(kube, 'broken'));
  const why = condition(refused, 'Accepted')!;
  assert.deepEqual([why['status'], why['reason']], ['False', 'UnsupportedValue']);
  assert.match(why['message'], /spec\.rules\.0\.matches\.0\.path\.value: must be an absolute path/);
  assert.match(control.stderr(), /invalid route skipped.*HTTPRoute shop\/broken/);

  // One write per route, and none after the writes came back through the watch.
  assert.equal(await settledWrites(kube), 2);

  // The Service loses port 80: Accepted flips to False; ResolvedRefs keeps its transition time.
  const resolvedBefore = condition(ours(kube, 'split'), 'ResolvedRefs')!;
  kube.applyYaml(SERVICES.replace('{ name: http, port: 80 }, ', ''));
  const flipped = await waitFor('Accepted=False on split', async () => {
    const entry = ours(kube, 'split');
    return condition(entry, 'Accepted')?.['status'] === 'False' ? entry : null;
  });
  assert.deepEqual(
    [condition(flipped, 'Accepted')!['reason'], condition(flipped, 'Accepted')!['message']],
    ['NoMatchingParent', 'Service shop/web has no port 80'],
  );
  assert.equal(
    condition(flipped, 'ResolvedRefs')!['lastTransitionTime'],
    resolvedBefore['lastTransitionTime'],
  );
  assert.equal(await settledWrites(kube), 3, 'only split changed');

  // A reconnect and relist (every watch dropped) writes nothing.
  kube.dropWatches();
  await new Promise((resolve) => setTimeout(resolve, 1500));
  assert.equal(await settledWrites(kube), 3);

  // A new generation of the spec (a missing backend now): observedGeneration follows.
  kube.applyYaml(SERVICES);
  await kubectlApply(kube.url, route('web-v9'));
  const next = await waitFor('ResolvedRefs=False at generation 2', async () => {
    const entry = ours(kube, 'split');
    const c = condition(entry, 'ResolvedRefs');
    return c?.['status'] === 'False' && c['observedGeneration'] === 2 ? entry : null;
  });
  assert.equal(condition(next, 'ResolvedRefs')!['reason'], 'BackendNotFound');
  assert.deepEqual(condition(next, 'Accepted')!['status'], 'True');
  await waitFor('the proxy to mark web-v9 unresolved', async () =>
    backendOf('/v2') === 'web-v9 (unresolved)' ? true : null,
  );
  assert.ok((await settledWrites(kube)) <= 5, 'at most the Service change and the spec change');
  assert.deepEqual(
    (kube.get('HTTPRoute', 'shop', 'split') as Json)['status']['parents'][0],
    OTHER_CONTROLLER,
  );

  // The writes are counted on the control plane's /metrics.
  const metrics = await (await fetch(`http://${ready['http']}/metrics`)).text();
  const written = /^trellis_route_status_writes_total\{result="written"\} (\d+)$/m.exec(metrics);
  assert.equal(Number(written?.[1]), statusWrites(kube), metrics);

  // `trellis get` against this control plane shows the same status.
  const got = await runCli([
    'get',
    'httproutes',
    '-n',
    'shop',
    '-o',
    'json',
    '--control',
    `http://${ready['http']}`,
  ]);
  assert.equal(got.code, 0, got.stderr);
  const items = (JSON.parse(got.stdout) as Json)['items'] as Json[];
  assert.deepEqual(
    items.map((o) => o['metadata']['name']),
    ['split'],
    'the invalid route is not served',
  );
  assert.equal(items[0]!['status']['parents'][0]['conditions'][1]['reason'], 'BackendNotFound');
  assert.equal(await control.stop(), 0, control.stderr());
});
