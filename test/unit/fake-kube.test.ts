// Tests for the fake Kubernetes API server (test/fake-kube/server.ts) on the wire, with plain
// HTTP: list shape and filters, watch streams resuming from a resource version, bookmarks, 410
// Gone as an ERROR event after compaction, dropped watches, and the kubectl-shaped fixtures.
// The real client (@kubernetes/client-node informers) drives it in kubernetes-watcher.test.ts.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { FakeKubeServer, matchesLabelSelector, type KubeObject } from '../fake-kube/server.ts';

const fixture = (name: string): string =>
  readFileSync(new URL(`../fake-kube/fixtures/${name}`, import.meta.url), 'utf8');

interface WatchEvent {
  type: string;
  object: KubeObject & { code?: number; reason?: string };
}

async function startServer(t: { after(fn: () => Promise<void>): void }, bookmarkIntervalMs?: number) {
  const server = new FakeKubeServer(bookmarkIntervalMs === undefined ? {} : { bookmarkIntervalMs });
  await server.start();
  t.after(() => server.close());
  return server;
}

/** What the fake answers to a GET: a list, or a Status for errors. */
interface ListBody {
  kind: string;
  apiVersion: string;
  metadata: { resourceVersion: string };
  items: KubeObject[];
}

async function getJson(server: FakeKubeServer, path: string): Promise<{ status: number; body: ListBody }> {
  const response = await fetch(server.url + path);
  return { status: response.status, body: (await response.json()) as ListBody };
}

/** Opens a watch and collects its events; `ended` resolves when the server ends the stream. */
function openWatch(server: FakeKubeServer, path: string) {
  const events: WatchEvent[] = [];
  let buffered = '';
  let resolveEnded: (how: 'end' | 'error') => void = () => {};
  const ended = new Promise<'end' | 'error'>((resolve) => (resolveEnded = resolve));
  const req = request(server.url + path, (res) => {
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => {
      buffered += chunk;
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) if (line) events.push(JSON.parse(line) as WatchEvent);
    });
    res.on('end', () => resolveEnded('end'));
    res.on('error', () => resolveEnded('error'));
  });
  req.on('error', () => resolveEnded('error'));
  req.end();
  return { events, ended, close: () => req.destroy() };
}

async function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 3000;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

test('lists return a typed list with the current resource version, filtered by namespace and selectors', async (t) => {
  const server = await startServer(t);
  server.applyYaml(fixture('web.yaml'));
  server.applyYaml(fixture('db.yaml'));
  const all = await getJson(server, '/api/v1/pods');
  assert.equal(all.status, 200);
  assert.equal(all.body.kind, 'PodList');
  assert.equal(all.body.apiVersion, 'v1');
  assert.equal(all.body.metadata.resourceVersion, server.resourceVersion);
  assert.equal(all.body.items.length, 4);
  const slices = await getJson(server, '/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices');
  assert.equal(slices.body.kind, 'EndpointSliceList');
  assert.deepEqual(
    slices.body.items.map((s: KubeObject) => s.metadata.name),
    ['web-x7k2p', 'db-m4q8z'],
  );
  const selected = await getJson(
    server,
    '/apis/discovery.k8s.io/v1/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Ddb',
  );
  assert.deepEqual(
    selected.body.items.map((s: KubeObject) => s.metadata.name),
    ['db-m4q8z'],
  );
  const byName = await getJson(server, '/api/v1/pods?fieldSelector=metadata.name%3Ddb-0');
  assert.deepEqual(
    byName.body.items.map((p: KubeObject) => p.metadata.name),
    ['db-0'],
  );
  assert.equal((await getJson(server, '/api/v1/namespaces/other/services')).body.items.length, 0);
  const missing = await getJson(server, '/api/v1/limitranges');
  assert.equal(missing.status, 404);
  assert.equal(missing.body.kind, 'Status');
});

test('fixtures keep their kubectl shape, with fresh resource versions and uids from the server', async (t) => {
  const server = await startServer(t);
  const [service, slice, pod] = server.applyYaml(fixture('web.yaml'));
  assert.equal(service?.kind, 'Service');
  assert.deepEqual((service?.spec as { ports: unknown[] }).ports.length, 2);
  assert.equal(slice?.apiVersion, 'discovery.k8s.io/v1');
  assert.equal(slice?.addressType, 'IPv4');
  assert.equal(pod?.metadata.annotations?.['trellis.dev/proxy-injected'], 'true');
  const versions = [service, slice, pod].map((o) => Number(o?.metadata.resourceVersion));
  assert.deepEqual(
    versions,
    [...versions].sort((a, b) => a - b),
  );
  assert.equal(service?.metadata.uid, '6d3f2a1e-3b7c-4e53-9d0f-1a2b3c4d5e01');
});

test('a watch from a resource version replays later events, then streams changes in order', async (t) => {
  const server = await startServer(t);
  server.applyYaml(fixture('db.yaml'));
  const from = server.resourceVersion;
  const pod = server.get('Pod', 'shop', 'db-0');
  assert.ok(pod);
  server.apply({ ...pod, metadata: { ...pod.metadata, labels: { app: 'db', tier: 'data' } } });
  const watch = openWatch(server, `/api/v1/namespaces/shop/pods?watch=true&resourceVersion=${from}`);
  t.after(() => watch.close());
  await until(() => watch.events.length === 1, 'the replayed event');
  assert.equal(watch.events[0]?.type, 'MODIFIED');
  server.delete('Pod', 'shop', 'db-0');
  server.apply({ kind: 'Pod', metadata: { name: 'elsewhere', namespace: 'other' } });
  server.apply({ kind: 'Pod', metadata: { name: 'db-1', namespace: 'shop' } });
  await until(() => watch.events.length === 3, 'the live events');
  assert.deepEqual(
    watch.events.map((e) => [e.type, e.object.metadata.name]),
    [
      ['MODIFIED', 'db-0'],
      ['DELETED', 'db-0'],
      ['ADDED', 'db-1'],
    ],
  );
  const versions = watch.events.map((e) => Number(e.object.metadata.resourceVersion));
  assert.ok(
    versions.every((v, i) => i === 0 || v > versions[i - 1]!),
    `increasing: ${versions.join(',')}`,
  );
});

test('a watch without a resource version starts with the current objects as ADDED', async (t) => {
  const server = await startServer(t);
  server.applyYaml(fixture('web.yaml'));
  const watch = openWatch(server, '/apis/discovery.k8s.io/v1/endpointslices?watch=1');
  t.after(() => watch.close());
  await until(() => watch.events.length === 1, 'the initial event');
  assert.equal(watch.events[0]?.type, 'ADDED');
  assert.equal(watch.events[0]?.object.metadata.name, 'web-x7k2p');
});

test('bookmarks arrive only when asked for and carry the current resource version', async (t) => {
  const server = await startServer(t, 20);
  server.applyYaml(fixture('db.yaml'));
  const rv = server.resourceVersion;
  const asked = openWatch(
    server,
    `/api/v1/services?watch=true&resourceVersion=${rv}&allowWatchBookmarks=true`,
  );
  const plain = openWatch(server, `/api/v1/services?watch=true&resourceVersion=${rv}`);
  t.after(() => {
    asked.close();
    plain.close();
  });
  await until(() => asked.events.length >= 2, 'two bookmarks');
  assert.ok(asked.events.every((e) => e.type === 'BOOKMARK'));
  assert.equal(asked.events[0]?.object.metadata.resourceVersion, rv);
  assert.equal(plain.events.length, 0);
});

test('after compaction, resuming from an old version gets a 410 Status ERROR event and the stream ends', async (t) => {
  const server = await startServer(t);
  server.applyYaml(fixture('db.yaml'));
  const old = server.resourceVersion;
  server.compact();
  const watch = openWatch(server, `/api/v1/pods?watch=true&resourceVersion=${old}`);
  await watch.ended;
  assert.equal(watch.events.length, 1);
  assert.equal(watch.events[0]?.type, 'ERROR');
  assert.equal(watch.events[0]?.object.kind, 'Status');
  assert.equal(watch.events[0]?.object.code, 410);
  assert.equal(watch.events[0]?.object.reason, 'Expired');
  // A fresh list's version is watchable again.
  const list = await getJson(server, '/api/v1/pods');
  const fresh = openWatch(
    server,
    `/api/v1/pods?watch=true&resourceVersion=${list.body.metadata.resourceVersion}`,
  );
  t.after(() => fresh.close());
  await until(() => server.watchCount('Pod') === 1, 'the fresh watch');
  server.delete('Pod', 'shop', 'db-0');
  await until(() => fresh.events.length === 1, 'the delete');
  assert.equal(fresh.events[0]?.type, 'DELETED');
});

test('a history limit expires old versions the same way', async (t) => {
  const server = new FakeKubeServer({ historyLimit: 2 });
  await server.start();
  t.after(() => server.close());
  const first = server.resourceVersion;
  for (const name of ['a', 'b', 'c']) server.apply({ kind: 'Pod', metadata: { name, namespace: 'x' } });
  const tooOld = openWatch(server, `/api/v1/pods?watch=true&resourceVersion=${first}`);
  await tooOld.ended;
  assert.equal(tooOld.events[0]?.object.code, 410);
  const stillKept = openWatch(server, `/api/v1/pods?watch=true&resourceVersion=${Number(first) + 1}`);
  t.after(() => stillKept.close());
  await until(() => stillKept.events.length === 2, 'the retained events');
  assert.deepEqual(
    stillKept.events.map((e) => e.object.metadata.name),
    ['b', 'c'],
  );
});

test('dropWatches ends every open watch, gracefully or abruptly', async () => {
  const server = new FakeKubeServer();
  await server.start();
  try {
    const rv = server.resourceVersion;
    const open = () => [
      openWatch(server, `/api/v1/services?watch=true&resourceVersion=${rv}`),
      openWatch(server, `/api/v1/pods?watch=true&resourceVersion=${rv}`),
    ];
    const first = open();
    await until(() => server.watchCount() === 2, 'both watches');
    server.dropWatches();
    assert.deepEqual(await Promise.all(first.map((w) => w.ended)), ['end', 'end']);
    assert.equal(server.watchCount(), 0);
    const second = open();
    await until(() => server.watchCount() === 2, 'the new watches');
    server.dropWatches({ abrupt: true });
    assert.deepEqual(await Promise.all(second.map((w) => w.ended)), ['error', 'error']);
    assert.equal(server.watchCount(), 0);
    assert.equal(server.countRequests('watch', 'Pod'), 2);
  } finally {
    await server.close();
  }
});

test('label selectors: equality, inequality, existence and absence', () => {
  const labels = { app: 'web', tier: 'front' };
  assert.equal(matchesLabelSelector('app=web', labels), true);
  assert.equal(matchesLabelSelector('app==web,tier=front', labels), true);
  assert.equal(matchesLabelSelector('app=db', labels), false);
  assert.equal(matchesLabelSelector('app!=db', labels), true);
  assert.equal(matchesLabelSelector('tier', labels), true);
  assert.equal(matchesLabelSelector('!tier', labels), false);
  assert.equal(matchesLabelSelector('!zone', labels), true);
});
