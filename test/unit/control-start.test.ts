// Starting the control plane for `trellis up` and `trellis control` (startControlPlane in
// src/control/server.ts): when it cannot start (an address is taken, the catalog fails), every
// component started before it is closed, and the watcher too; when it starts, they stay open until
// the control plane closes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalWatcher } from '../../src/control/discovery/local.ts';
import { localCatalog, startControlPlane, type ControlPlaneComponent } from '../../src/control/server.ts';
import { removeTempDir } from '../helpers/temp-dir.ts';

async function setup(t: { after(fn: () => Promise<void>): void }) {
  const root = await mkdtemp(join(tmpdir(), 'trellis-control-start-'));
  t.after(() => removeTempDir(root));
  const watcher = new LocalWatcher({ root, debounceMs: 10, rescanIntervalMs: 300 });
  const closeWatcher = watcher.close.bind(watcher);
  const counts = { watcher: 0, identity: 0, policy: 0 };
  watcher.close = async () => {
    counts.watcher++;
    await closeWatcher();
  };
  t.after(() => closeWatcher());
  const component = (name: 'identity' | 'policy'): ControlPlaneComponent => ({
    close: async () => void counts[name]++,
  });
  const options = {
    watcher,
    catalog: localCatalog(root),
    grpcListen: '127.0.0.1:0',
    httpListen: '127.0.0.1:0',
    components: [component('identity'), component('policy')],
  };
  return { options, counts };
}

/** A port something else listens on. */
async function takenPort(t: { after(fn: () => Promise<void>): void }): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return (server.address() as net.AddressInfo).port;
}

test('an address that is taken: every component and the watcher are closed, and the error thrown', async (t) => {
  const port = await takenPort(t);
  for (const which of ['grpcListen', 'httpListen'] as const) {
    const { options, counts } = await setup(t);
    await assert.rejects(startControlPlane({ ...options, [which]: `127.0.0.1:${port}` }), /EADDRINUSE/);
    assert.deepEqual(counts, { watcher: 1, identity: 1, policy: 1 }, which);
  }
});

test('a catalog that fails: every component and the watcher are closed, and the error thrown', async (t) => {
  const { options, counts } = await setup(t);
  await assert.rejects(
    startControlPlane({ ...options, catalog: Promise.reject(new Error('no cluster')) }),
    /no cluster/,
  );
  assert.deepEqual(counts, { watcher: 1, identity: 1, policy: 1 });
});

test('started: the components stay open until the control plane closes', async (t) => {
  const { options, counts } = await setup(t);
  const plane = await startControlPlane({ ...options, catalog: Promise.resolve(options.catalog) });
  assert.match(plane.grpc, /^127\.0\.0\.1:\d+$/);
  assert.deepEqual(counts, { watcher: 0, identity: 0, policy: 0 });
  await plane.close();
  assert.deepEqual(counts, { watcher: 1, identity: 1, policy: 1 });
});
