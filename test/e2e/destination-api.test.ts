// The Destination API end to end on loopback: a Destination server over a LocalWatcher on a temp
// state folder, watched by the proxy's DestinationResolver feeding a real EndpointSet. File
// changes reach the set; when the server stops the set keeps its last endpoints, and when the
// server comes back on the same port the resolver reconnects and catches up from a fresh reset.
// Address watches ("IP:port", transparent mode's original destinations) over the fake Kubernetes
// API and the local folder: a ClusterIP is its service's endpoints (changes included), a pod or
// workload address that endpoint, meshed with its identity, any other address itself; and the
// proxy's ServiceDiscovery with resolveAddresses picks through them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { KubernetesWatcher, kubeConfigForServer } from '../../src/control/discovery/kubernetes.ts';
import { LocalWatcher } from '../../src/control/discovery/local.ts';
import type { Watcher } from '../../src/control/discovery/watcher.ts';
import {
  workloadPath,
  writeServiceFile,
  writeWorkloadFile,
} from '../../src/control/discovery/local-state.ts';
import { startDestinationServer, type DestinationServer } from '../../src/control/destination/server.ts';
import { EndpointSet } from '../../src/proxy/balance/endpoint-set.ts';
import { DestinationResolver } from '../../src/proxy/resolve/destination-client.ts';
import { ServiceDiscovery, type Pick } from '../../src/proxy/outbound/discovery.ts';
import { silentLogger } from '../../src/core/log.ts';
import { FakeKubeServer, type KubeObject } from '../fake-kube/server.ts';
import { removeTempDir } from '../helpers/temp-dir.ts';

const TIMEOUT_MS = 10_000;

/** Resolves once `predicate(set)` holds, checked now and after every change; rejects on timeout. */
function until(set: EndpointSet, what: string, predicate: (set: EndpointSet) => boolean): Promise<void> {
  if (predicate(set)) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stop();
      reject(new Error(`timed out waiting for ${what}; have ${keys(set).join(',')} (${set.status})`));
    }, TIMEOUT_MS);
    const stop = set.onChange(() => {
      if (!predicate(set)) return;
      stop();
      clearTimeout(timer);
      resolve();
    });
  });
}

function keys(set: EndpointSet): string[] {
  return set.endpoints.map((e) => e.key).sort();
}

function untilEndpoints(set: EndpointSet, expected: string[]): Promise<void> {
  const want = [...expected].sort().join(',');
  return until(set, want, (s) => keys(s).join(',') === want && (want !== '' || s.status === 'no-endpoints'));
}

async function waitFor(what: string, predicate: () => boolean): Promise<void> {
  const deadline = Date.now() + TIMEOUT_MS;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

test('the Destination API streams local discovery to the proxy and survives a control-plane restart', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'trellis-destination-e2e-'));
  t.after(() => removeTempDir(root));
  await writeServiceFile(root, 'default', 'web', { ports: [{ port: 80, targetPort: 8080 }] });
  await writeWorkloadFile(root, 'default', 'web-a', { service: 'web', address: '127.0.0.11', port: 8080 });
  const watcher = new LocalWatcher({ root, debounceMs: 10, rescanIntervalMs: 300 });
  t.after(() => watcher.close());
  await watcher.ready();

  let server: DestinationServer = await startDestinationServer({ watcher, listen: '127.0.0.1:0' });
  t.after(() => server.close());
  const port = server.port;
  const resolver = new DestinationResolver({
    address: `127.0.0.1:${port}`,
    backoff: { initialMs: 50, maxMs: 300 },
  });
  t.after(() => resolver.close());

  const web = new EndpointSet();
  t.after(() => web.close());
  web.subscribe(resolver, 'web.default.svc.cluster.local:80');
  await untilEndpoints(web, ['127.0.0.11:8080']);
  assert.equal(web.get('127.0.0.11:8080')?.endpoint.labels.workload, 'web-a');

  // File changes become add / remove on the proxy's side.
  await writeWorkloadFile(root, 'default', 'web-b', { service: 'web', address: '127.0.0.12', port: 8080 });
  await untilEndpoints(web, ['127.0.0.11:8080', '127.0.0.12:8080']);
  await rm(workloadPath(root, 'default', 'web-a'));
  await untilEndpoints(web, ['127.0.0.12:8080']);
  await writeWorkloadFile(root, 'default', 'web-b', {
    service: 'web',
    address: '127.0.0.12',
    port: 8080,
    ready: false,
  });
  await untilEndpoints(web, []);
  await writeWorkloadFile(root, 'default', 'web-b', {
    service: 'web',
    address: '127.0.0.12',
    port: 8080,
    meshed: true,
    identity: 'spiffe://trellis.local/ns/default/sa/web',
  });
  await untilEndpoints(web, ['127.0.0.12:8080']);
  const b = web.get('127.0.0.12:8080')?.endpoint;
  assert.equal(b?.meshed, true);
  assert.equal(b?.identity, 'spiffe://trellis.local/ns/default/sa/web');
  assert.equal(b?.protocolHint, 'h2');

  // Unknown services do not exist; direct addresses are their own endpoint.
  const unknown = new EndpointSet();
  t.after(() => unknown.close());
  unknown.subscribe(resolver, 'nope.default:80');
  await until(unknown, 'does-not-exist', (s) => s.status === 'does-not-exist');
  const direct = new EndpointSet();
  t.after(() => direct.close());
  direct.subscribe(resolver, '127.0.0.99:9000');
  await untilEndpoints(direct, ['127.0.0.99:9000']);

  // The control plane goes away: the proxy keeps its last endpoints and reports the error.
  await server.close();
  await waitFor('the resolver to report the lost stream', () => web.lastError !== null);
  assert.deepEqual(keys(web), ['127.0.0.12:8080']);
  assert.equal(web.status, 'ready');
  await writeWorkloadFile(root, 'default', 'web-c', { service: 'web', address: '127.0.0.13', port: 8080 });
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.deepEqual(keys(web), ['127.0.0.12:8080'], 'nothing changes while disconnected');

  // It comes back on the same port: the resolver re-watches and the reset brings the change in.
  server = await startDestinationServer({ watcher, listen: `127.0.0.1:${port}` });
  await untilEndpoints(web, ['127.0.0.12:8080', '127.0.0.13:8080']);
  assert.equal(web.lastError, null);
  // An update that changes nothing does not notify onChange: poll for the cleared error.
  await waitFor(
    'does-not-exist again',
    () => unknown.status === 'does-not-exist' && unknown.lastError === null,
  );
  await writeWorkloadFile(root, 'default', 'web-d', { service: 'web', address: '127.0.0.14', port: 8080 });
  await untilEndpoints(web, ['127.0.0.12:8080', '127.0.0.13:8080', '127.0.0.14:8080']);
});

test('a bad Watch path is refused with INVALID_ARGUMENT and reported as a resolution error', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'trellis-destination-e2e-'));
  t.after(() => removeTempDir(root));
  const watcher = new LocalWatcher({ root });
  t.after(() => watcher.close());
  const server = await startDestinationServer({ watcher, listen: '127.0.0.1:0' });
  t.after(() => server.close());
  const resolver = new DestinationResolver({
    address: `127.0.0.1:${server.port}`,
    backoff: { initialMs: 5000 },
  });
  t.after(() => resolver.close());
  const error = await new Promise<Error>((resolve) => {
    resolver.resolve('not a target', () => assert.fail('no update expected'), resolve);
  });
  assert.equal((error as Error & { code?: string }).code, 'TRELLIS_ERR_DESTINATION_UNAVAILABLE');
  assert.match(error.message, /INVALID_ARGUMENT/);
  resolver.close();
  assert.equal(resolver.openResolutions, 0);
});

// An endpoint whose description changes (meshed -> plain) arrives as an `add` of a known address,
// which EndpointSet applies without notifying onChange: those waits poll.

/** A set following `target` through `resolver`, closed after the test. */
function watchSet(
  t: { after(fn: () => void): void },
  resolver: DestinationResolver,
  target: string,
): EndpointSet {
  const set = new EndpointSet();
  t.after(() => set.close());
  set.subscribe(resolver, target);
  return set;
}

test('address watches over the Kubernetes API: ClusterIPs, pod IPs, other addresses', async (t) => {
  const kube = new FakeKubeServer({ bookmarkIntervalMs: 50 });
  await kube.start();
  t.after(() => kube.close());
  for (const name of ['web.yaml', 'db.yaml'])
    kube.applyYaml(readFileSync(new URL(`../fake-kube/fixtures/${name}`, import.meta.url), 'utf8'));
  const watcher = new KubernetesWatcher({
    kubeConfig: kubeConfigForServer(kube.url),
    trustDomain: 'cluster.local',
    retryDelayMs: 50,
  });
  t.after(() => watcher.close());
  await watcher.ready();
  const server = await startDestinationServer({ watcher, listen: '127.0.0.1:0' });
  t.after(() => server.close());
  const resolver = new DestinationResolver({
    address: `127.0.0.1:${server.port}`,
    backoff: { initialMs: 50 },
  });
  t.after(() => resolver.close());

  // The web Service's ClusterIP is its endpoints, as the name gives them, and follows changes.
  const byIp = watchSet(t, resolver, '10.96.41.17:80');
  const byName = watchSet(t, resolver, 'web.shop.svc.cluster.local:80');
  await untilEndpoints(byIp, ['10.244.1.12:8080', '10.244.2.7:8080']);
  await untilEndpoints(byName, ['10.244.1.12:8080', '10.244.2.7:8080']);
  for (const key of keys(byIp)) assert.deepEqual(byIp.get(key)?.endpoint, byName.get(key)?.endpoint, key);
  assert.equal(byIp.get('10.244.2.7:8080')?.endpoint.identity, 'spiffe://cluster.local/ns/shop/sa/web');
  const slice = structuredClone(kube.get('EndpointSlice', 'shop', 'web-x7k2p')) as KubeObject & {
    endpoints: { conditions?: { ready?: boolean } }[];
  };
  slice.endpoints[2]!.conditions = { ready: true };
  slice.endpoints.splice(0, 1);
  kube.apply(slice);
  await untilEndpoints(byIp, ['10.244.2.7:8080', '10.244.2.9:8080']);
  // db's ClusterIP keeps its service's opaque hint.
  const db = watchSet(t, resolver, '10.96.12.200:5432');
  await untilEndpoints(db, ['10.244.3.4:5432']);
  assert.equal(db.get('10.244.3.4:5432')?.endpoint.protocolHint, 'opaque');

  // A meshed pod's IP is that pod, with its identity, on the port asked for.
  const pod = watchSet(t, resolver, '10.244.2.7:8080');
  await untilEndpoints(pod, ['10.244.2.7:8080']);
  assert.deepEqual(pod.get('10.244.2.7:8080')?.endpoint, {
    address: { host: '10.244.2.7', port: 8080 },
    weight: 1,
    labels: { namespace: 'shop', pod: 'web-7d4b9c8f5-9hzlm', workload: 'web' },
    meshed: true,
    identity: 'spiffe://cluster.local/ns/shop/sa/web',
    protocolHint: 'h2',
  });
  // It goes away: the plain address, unmeshed.
  kube.delete('Pod', 'shop', 'web-7d4b9c8f5-9hzlm');
  await waitFor('the plain address', () => pod.get('10.244.2.7:8080')?.endpoint.meshed === false);
  assert.deepEqual(keys(pod), ['10.244.2.7:8080']);
  assert.equal(pod.get('10.244.2.7:8080')?.endpoint.identity, null);

  // Any other address is itself, unmeshed, as before.
  for (const [target, key] of [
    ['10.99.0.1:80', '10.99.0.1:80'],
    ['[fd00::99]:443', '[fd00::99]:443'],
  ] as const) {
    const other = watchSet(t, resolver, target);
    await untilEndpoints(other, [key]);
    assert.equal(other.get(key)?.endpoint.meshed, false);
    assert.deepEqual(other.get(key)?.endpoint.labels, {});
  }

  // The proxy's discovery with resolveAddresses: a ClusterIP is balanced over its (meshed)
  // endpoints, an address the control plane does not know goes direct.
  const discovery = new ServiceDiscovery({
    resolver,
    failFastMs: 5000,
    idleMs: 0,
    resolveAddresses: true,
    log: silentLogger,
  });
  t.after(() => discovery.close());
  const picked: Pick[] = [];
  for (let i = 0; i < 20; i++) {
    const outcome = await discovery.pick({ host: '10.96.41.17', port: 80 });
    assert.ok(!('error' in outcome));
    picked.push(outcome);
    outcome.done(1);
  }
  assert.deepEqual([...new Set(picked.map((p) => p.key))].sort(), ['10.244.2.7:8080', '10.244.2.9:8080']);
  // Each pick carries the endpoint as discovery describes it: 10.244.2.9's pod is meshed, and
  // 10.244.2.7's pod was deleted above (unmeshed now).
  for (const p of picked) assert.deepEqual(p.endpoint, byIp.get(p.key!)?.endpoint, p.key!);
  const meshedPick = picked.find((p) => p.key === '10.244.2.9:8080');
  assert.equal(meshedPick?.endpoint?.identity, 'spiffe://cluster.local/ns/shop/sa/web');
  const direct = await discovery.pick({ host: '10.99.0.2', port: 80 });
  assert.ok(!('error' in direct));
  assert.deepEqual(
    [direct.address, direct.endpoint, direct.key],
    [{ host: '10.99.0.2', port: 80 }, null, null],
  );
});

test('address watches over the local state folder: a registered workload, then the plain address', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'trellis-destination-e2e-'));
  t.after(() => removeTempDir(root));
  await writeServiceFile(root, 'default', 'web', { ports: [{ port: 80, targetPort: 'http' }] });
  const identity = 'spiffe://trellis.local/ns/default/sa/web';
  const register = (ready: boolean) =>
    writeWorkloadFile(root, 'default', 'web-1', {
      service: 'web',
      address: '127.0.0.1',
      ports: [{ name: 'http', port: 4143 }],
      meshed: true,
      identity,
      ready,
    });
  await register(true);
  const watcher = new LocalWatcher({ root, debounceMs: 10, rescanIntervalMs: 300 });
  t.after(() => watcher.close());
  await watcher.ready();
  const server = await startDestinationServer({ watcher, listen: '127.0.0.1:0' });
  t.after(() => server.close());
  const resolver = new DestinationResolver({
    address: `127.0.0.1:${server.port}`,
    backoff: { initialMs: 50 },
  });
  t.after(() => resolver.close());

  const workload = watchSet(t, resolver, '127.0.0.1:4143');
  await untilEndpoints(workload, ['127.0.0.1:4143']);
  assert.deepEqual(workload.get('127.0.0.1:4143')?.endpoint, {
    address: { host: '127.0.0.1', port: 4143 },
    weight: 1,
    labels: { namespace: 'default', service: 'web', workload: 'web-1', zone: 'local' },
    meshed: true,
    identity,
    protocolHint: 'h2',
  });
  // Not ready: the plain address; ready again: the workload; deregistered: plain.
  await register(false);
  await waitFor('the plain address', () => workload.get('127.0.0.1:4143')?.endpoint.meshed === false);
  assert.deepEqual(workload.get('127.0.0.1:4143')?.endpoint.labels, {});
  await register(true);
  await waitFor('the workload again', () => workload.get('127.0.0.1:4143')?.endpoint.meshed === true);
  await rm(workloadPath(root, 'default', 'web-1'));
  await waitFor('the plain address', () => workload.get('127.0.0.1:4143')?.endpoint.meshed === false);
  assert.deepEqual(keys(workload), ['127.0.0.1:4143']);
  // Another port of the same address is not the workload's.
  const other = watchSet(t, resolver, '127.0.0.1:4144');
  await untilEndpoints(other, ['127.0.0.1:4144']);
  assert.equal(other.get('127.0.0.1:4144')?.endpoint.meshed, false);
});

test('a watcher that cannot look addresses up answers every address with itself, as before', async (t) => {
  const watcher: Watcher = {
    subscribe: () => assert.fail('no service watch expected'),
    ready: () => Promise.resolve(),
    close: () => Promise.resolve(),
  };
  const server = await startDestinationServer({ watcher, listen: '127.0.0.1:0' });
  t.after(() => server.close());
  const resolver = new DestinationResolver({
    address: `127.0.0.1:${server.port}`,
    backoff: { initialMs: 50 },
  });
  t.after(() => resolver.close());
  const set = watchSet(t, resolver, '10.96.41.17:80');
  await untilEndpoints(set, ['10.96.41.17:80']);
  assert.equal(set.get('10.96.41.17:80')?.endpoint.meshed, false);
});
