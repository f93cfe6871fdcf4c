// The Destination API end to end on loopback: a Destination server over a LocalWatcher on a temp
// state folder, watched by the proxy's DestinationResolver feeding a real EndpointSet. File
// changes reach the set; when the server stops the set keeps its last endpoints, and when the
// server comes back on the same port the resolver reconnects and catches up from a fresh reset.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalWatcher } from '../../src/control/discovery/local.ts';
import {
  workloadPath,
  writeServiceFile,
  writeWorkloadFile,
} from '../../src/control/discovery/local-state.ts';
import { startDestinationServer, type DestinationServer } from '../../src/control/destination/server.ts';
import { EndpointSet } from '../../src/proxy/balance/endpoint-set.ts';
import { DestinationResolver } from '../../src/proxy/resolve/destination-client.ts';

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
  t.after(() => rm(root, { recursive: true, force: true }));
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
  t.after(() => rm(root, { recursive: true, force: true }));
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
