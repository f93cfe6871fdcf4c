// Finding the control plane again (src/proxy/resolve/control-plane-address.ts and
// control-plane-client.ts): the follower of `<state>/control.json` tells its listeners when the
// control plane restarted (another pid) or moved (another address), and keeps the last address
// while the file is gone; a DestinationResolver following it watches the control plane where it
// is now; and a resolution started after the control plane came back on the same port is answered
// at once, without failing first on a channel still waiting out grpc-js's reconnect backoff.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalWatcher } from '../../src/control/discovery/local.ts';
import { writeServiceFile, writeWorkloadFile } from '../../src/control/discovery/local-state.ts';
import { startDestinationServer } from '../../src/control/destination/server.ts';
import { EndpointSet } from '../../src/proxy/balance/endpoint-set.ts';
import { controlFilePath, removeControlFile, writeControlFile } from '../../src/api/control-file.ts';
import { ControlFileFollower } from '../../src/proxy/resolve/control-plane-address.ts';
import { DestinationResolver } from '../../src/proxy/resolve/destination-client.ts';
import type { Update } from '../../src/core/endpoints.ts';
import { removeTempDir } from '../helpers/temp-dir.ts';

async function until(what: string, predicate: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function tempRoot(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'trellis-control-address-'));
  t.after(() => removeTempDir(root));
  return root;
}

test('the follower hears of a restart or a move, and keeps the last address while the file is gone', async (t) => {
  const root = await tempRoot(t);
  await writeControlFile(root, { grpc: '127.0.0.1:1001', http: '127.0.0.1:2001', pid: 11 });
  const follower = new ControlFileFollower(controlFilePath(root));
  t.after(async () => follower.close());
  const locator = follower.locator('127.0.0.1:9999');
  assert.equal(locator.current(), '127.0.0.1:1001', 'the file wins over the configured address');
  let moves = 0;
  locator.onMove(() => moves++);

  await writeControlFile(root, { grpc: '127.0.0.1:1002', http: '127.0.0.1:2002', pid: 12 });
  await until('the move', () => moves === 1);
  assert.equal(locator.current(), '127.0.0.1:1002');
  await removeControlFile(root);
  locator.refresh();
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(moves, 1);
  assert.equal(locator.current(), '127.0.0.1:1002', 'stopped: the last address stays');
  // Restarted on the same address: a new pid is news too (call it now, not after a backoff).
  await writeControlFile(root, { grpc: '127.0.0.1:1002', http: '127.0.0.1:2002', pid: 13 });
  await until('the restart', () => moves === 2);

  const missing = new ControlFileFollower(join(root, 'nothing', 'control.json'));
  t.after(async () => missing.close());
  assert.equal(missing.locator('127.0.0.1:9999').current(), '127.0.0.1:9999');
});

test('a DestinationResolver follows the control plane to its new address', async (t) => {
  const root = await tempRoot(t);
  await writeServiceFile(root, 'default', 'web', { ports: [{ port: 80, targetPort: 8080 }] });
  await writeWorkloadFile(root, 'default', 'web-a', { service: 'web', address: '127.0.0.11', port: 8080 });
  const watcher = new LocalWatcher({ root, debounceMs: 10, rescanIntervalMs: 300 });
  t.after(() => watcher.close());
  await watcher.ready();
  const first = await startDestinationServer({ watcher, listen: '127.0.0.1:0' });
  await writeControlFile(root, { grpc: `127.0.0.1:${first.port}`, http: '127.0.0.1:1', pid: 1 });
  const follower = new ControlFileFollower(controlFilePath(root));
  t.after(async () => follower.close());
  // Slow retries: only following the file can bring the resolver to the new address in time.
  const resolver = new DestinationResolver({
    address: `127.0.0.1:${first.port}`,
    locator: follower.locator(`127.0.0.1:${first.port}`),
    backoff: { initialMs: 60_000, maxMs: 60_000 },
  });
  t.after(() => resolver.close());
  const web = new EndpointSet();
  t.after(() => web.close());
  web.subscribe(resolver, 'web.default:80');
  await until('the first endpoint', () => web.size === 1);

  await first.close();
  await until('the lost stream', () => web.lastError !== null);
  // A new control plane, on another port, over the same folder; meanwhile a workload joined.
  const second = await startDestinationServer({ watcher, listen: '127.0.0.1:0' });
  t.after(() => second.close());
  await writeWorkloadFile(root, 'default', 'web-b', { service: 'web', address: '127.0.0.12', port: 8080 });
  await writeControlFile(root, { grpc: `127.0.0.1:${second.port}`, http: '127.0.0.1:1', pid: 2 });
  await until('both endpoints from the new control plane', () => web.size === 2);
});

test('a resolution started once the control plane is back is answered without failing first', async (t) => {
  const root = await tempRoot(t);
  await writeServiceFile(root, 'default', 'web', { ports: [{ port: 80, targetPort: 8080 }] });
  const watcher = new LocalWatcher({ root, debounceMs: 10, rescanIntervalMs: 300 });
  t.after(() => watcher.close());
  await watcher.ready();
  let server = await startDestinationServer({ watcher, listen: '127.0.0.1:0' });
  const port = server.port;
  const resolver = new DestinationResolver({
    address: `127.0.0.1:${port}`,
    backoff: { initialMs: 100, maxMs: 2000 },
  });
  t.after(() => resolver.close());
  const web = new EndpointSet();
  t.after(() => web.close());
  web.subscribe(resolver, 'web.default:80');
  await until('the first answer', () => web.status === 'no-endpoints');
  await server.close();
  // Down long enough for the channel's reconnect backoff to grow past a second.
  await new Promise((resolve) => setTimeout(resolve, 3000));
  server = await startDestinationServer({ watcher, listen: `127.0.0.1:${port}` });
  t.after(() => server.close());

  const seen: (Update | Error)[] = [];
  const resolution = resolver.resolve(
    'api.default:80',
    (update) => seen.push(update),
    (error) => seen.push(error),
  );
  t.after(() => resolution.cancel());
  await until('an answer', () => seen.length > 0);
  assert.deepEqual(seen[0], { kind: 'does-not-exist' }, 'answered, not failed on the old channel');
});
