// The LocalWatcher (src/control/discovery/local.ts) through the shared watcher contract, and its
// own behaviour: named target ports, invalid files skipped with the wrong field logged, files
// that vanish, the periodic rescan when fs.watch sees nothing, how a workload's address is
// described (by the service port that leads to it, or by its own registration), registrations
// whose lease runs out (not served, their files removed, also by a watcher that starts over an old
// folder), and a service asked for on a port it lacks (does-not-exist with its ports).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { access, mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '../../src/core/log.ts';
import { LocalWatcher, type LocalWatcherOptions } from '../../src/control/discovery/local.ts';
import {
  servicePath,
  workloadPath,
  writeServiceFile,
  writeWorkloadFile,
} from '../../src/control/discovery/local-state.ts';
import type { Update } from '../../src/control/discovery/watcher.ts';
import { workloadTokenPath } from '../../src/control/discovery/state-layout.ts';
import { runWatcherContract, type WatcherFixture } from './watcher-contract.ts';

async function localFixture(
  options: LocalWatcherOptions = {},
): Promise<WatcherFixture & { root: string; watcher: LocalWatcher }> {
  const root = await mkdtemp(join(tmpdir(), 'trellis-local-watcher-'));
  const watcher = new LocalWatcher({ root, debounceMs: 10, rescanIntervalMs: 500, ...options });
  return {
    root,
    watcher,
    setService: async (namespace, name, ports) =>
      void (await writeServiceFile(root, namespace, name, {
        ports: ports.map((p) => ({ port: p.port, targetPort: p.targetPort ?? p.port })),
      })),
    deleteService: (namespace, name) => rm(servicePath(root, namespace, name), { force: true }),
    setEndpoint: (namespace, service, id, endpoint) =>
      writeWorkloadFile(root, namespace, `${service}-${id}`, {
        service,
        address: endpoint.ip,
        port: endpoint.port,
        ready: endpoint.ready,
        meshed: endpoint.meshed === true,
        ...(endpoint.meshed === true
          ? { identity: `spiffe://trellis.local/ns/${namespace}/sa/${service}` }
          : {}),
      }),
    deleteEndpoint: (namespace, service, id) =>
      rm(workloadPath(root, namespace, `${service}-${id}`), { force: true }),
    close: async () => {
      await watcher.close();
      await rm(root, { recursive: true, force: true });
    },
  };
}

// Local services are names only (no virtual IPs): the ClusterIP cases do not apply.
runWatcherContract('LocalWatcher', () => localFixture(), { virtualIps: false });

// The same contract with fs.watch events never arriving in time: the rescan alone must carry it.
runWatcherContract(
  'LocalWatcher (rescan only)',
  () => localFixture({ debounceMs: 60_000, rescanIntervalMs: 100 }),
  { virtualIps: false },
);

function recorder() {
  const updates: Update[] = [];
  let notify: (() => void) | null = null;
  return {
    updates,
    listener: (u: Update) => {
      updates.push(u);
      notify?.();
    },
    async next(count: number, timeoutMs = 5000): Promise<Update> {
      const deadline = Date.now() + timeoutMs;
      while (updates.length < count) {
        if (Date.now() > deadline) throw new Error(`timed out; got ${JSON.stringify(updates)}`);
        await new Promise<void>((resolve) => {
          notify = resolve;
          setTimeout(resolve, 50);
        });
      }
      return updates[count - 1] as Update;
    },
  };
}

test('LocalWatcher maps named target ports and fills labels, identity and protocol hints', async (t) => {
  const f = await localFixture();
  t.after(() => f.close());
  await mkdir(join(f.root, 'services', 'shop'), { recursive: true });
  await writeFile(
    servicePath(f.root, 'shop', 'cart'),
    'ports:\n  - port: 80\n    targetPort: http\n  - port: 6379\n    targetPort: 16379\n    protocol: opaque\n',
  );
  await writeWorkloadFile(f.root, 'shop', 'cart-1', {
    service: 'cart',
    address: '127.0.0.21',
    ports: [{ name: 'http', port: 18080 }, { port: 16379 }],
    meshed: true,
    identity: 'spiffe://trellis.local/ns/shop/sa/cart',
    zone: 'zone-a',
    weight: 3,
  });
  await f.watcher.ready();
  await f.watcher.rescan(); // files written after the watcher started
  const http = recorder();
  const redis = recorder();
  f.watcher.subscribe({ namespace: 'shop', name: 'cart', port: 80 }, http.listener);
  f.watcher.subscribe({ namespace: 'shop', name: 'cart', port: 6379 }, redis.listener);
  assert.deepEqual(await http.next(1), {
    kind: 'reset',
    endpoints: [
      {
        address: { host: '127.0.0.21', port: 18080 },
        weight: 3,
        labels: { namespace: 'shop', service: 'cart', workload: 'cart-1', zone: 'zone-a' },
        meshed: true,
        identity: 'spiffe://trellis.local/ns/shop/sa/cart',
        protocolHint: 'h2',
      },
    ],
  });
  const first = await redis.next(1);
  assert.ok(first.kind === 'reset');
  assert.equal(first.endpoints[0]?.address.port, 16379);
  assert.equal(first.endpoints[0]?.protocolHint, 'opaque');
});

test('LocalWatcher skips invalid files, logs the wrong field, and keeps watching', async (t) => {
  const lines: string[] = [];
  const log = createLogger({ level: 'warn', write: (line) => lines.push(line) });
  const f = await localFixture({ log });
  t.after(() => f.close());
  await f.setService('default', 'web', [{ port: 80, targetPort: 8080 }]);
  await mkdir(join(f.root, 'workloads', 'default'), { recursive: true });
  await writeFile(
    workloadPath(f.root, 'default', 'web-bad'),
    JSON.stringify({ service: 'web', address: 'not-an-ip', port: 8080 }),
  );
  await writeFile(workloadPath(f.root, 'default', 'web-broken'), '{"service": ');
  // Leases that would hold a registration whose holder is gone: renewed tomorrow, or for a day.
  await writeFile(
    workloadPath(f.root, 'default', 'web-future'),
    JSON.stringify({
      service: 'web',
      address: '127.0.0.33',
      port: 8080,
      lease: { renewedAt: Date.now() + 86_400_000, durationMs: 10_000 },
    }),
  );
  await writeFile(
    workloadPath(f.root, 'default', 'web-long'),
    JSON.stringify({
      service: 'web',
      address: '127.0.0.34',
      port: 8080,
      lease: { renewedAt: Date.now(), durationMs: 86_400_000 },
    }),
  );
  await writeFile(servicePath(f.root, 'default', 'api'), 'ports:\n  - port: 99999\n');
  await f.setEndpoint('default', 'web', 'good', { ip: '127.0.0.31', port: 8080, ready: true });
  await f.watcher.ready();
  await f.watcher.rescan(); // files written after the watcher started
  const r = recorder();
  f.watcher.subscribe({ namespace: 'default', name: 'web', port: 80 }, r.listener);
  const first = await r.next(1);
  assert.ok(first.kind === 'reset');
  assert.deepEqual(
    first.endpoints.map((e) => e.address.host),
    ['127.0.0.31'],
  );
  const warnings = lines.map((line) => JSON.parse(line) as Record<string, string>);
  const byFile = (suffix: string) => warnings.find((w) => w.file?.endsWith(suffix));
  assert.equal(byFile('web-bad.json')?.field, 'address');
  assert.match(byFile('web-bad.json')?.problem ?? '', /IPv4 or IPv6/);
  assert.equal(byFile('web-broken.json')?.field, 'file');
  assert.equal(byFile('api.yaml')?.field, 'ports.0.port');
  assert.equal(byFile('web-future.json')?.field, 'lease.renewedAt');
  assert.match(byFile('web-future.json')?.problem ?? '', /in the future/);
  assert.equal(byFile('web-long.json')?.field, 'lease.durationMs');
  const reported = warnings.length;
  // Fixing the bad file brings its endpoint in; unchanged bad files are not reported again.
  await writeFile(
    workloadPath(f.root, 'default', 'web-bad'),
    JSON.stringify({ service: 'web', address: '127.0.0.32', port: 8080 }),
  );
  const second = await r.next(2);
  assert.ok(second.kind === 'add');
  assert.equal(second.endpoints[0]?.address.host, '127.0.0.32');
  await f.watcher.rescan();
  assert.equal(lines.length, reported);
});

test('LocalWatcher: a workload file that disappears leaves the set', async (t) => {
  const f = await localFixture();
  t.after(() => f.close());
  await f.setService('default', 'web', [{ port: 80 }]);
  await f.setEndpoint('default', 'web', 'a', { ip: '127.0.0.41', port: 80, ready: true });
  await f.watcher.ready();
  await f.watcher.rescan(); // files written after the watcher started
  const r = recorder();
  f.watcher.subscribe({ namespace: 'default', name: 'web', port: 80 }, r.listener);
  await r.next(1);
  await rm(workloadPath(f.root, 'default', 'web-a'));
  assert.deepEqual(await r.next(2), { kind: 'remove', addresses: ['127.0.0.41:80'] });
});

test('LocalWatcher: close stops every subscription and is idempotent', async (t) => {
  const f = await localFixture();
  t.after(() => f.close());
  await f.setService('default', 'web', [{ port: 80 }]);
  await f.watcher.ready();
  await f.watcher.rescan(); // files written after the watcher started
  const r = recorder();
  f.watcher.subscribe({ namespace: 'default', name: 'web', port: 80 }, r.listener);
  await r.next(1);
  await f.watcher.close();
  await f.watcher.close();
  await f.setEndpoint('default', 'web', 'a', { ip: '127.0.0.51', port: 80, ready: true });
  await new Promise((resolve) => setTimeout(resolve, 150));
  assert.equal(r.updates.length, 1);
});

test('LocalWatcher: a workload address is described as its service says, or by its own file', async (t) => {
  const f = await localFixture();
  t.after(() => f.close());
  await mkdir(join(f.root, 'services', 'shop'), { recursive: true });
  await writeFile(
    servicePath(f.root, 'shop', 'cart'),
    'ports:\n  - port: 80\n    targetPort: http\n  - port: 6379\n    targetPort: 16379\n    protocol: opaque\n',
  );
  await writeWorkloadFile(f.root, 'shop', 'cart-1', {
    service: 'cart',
    address: '127.0.0.21',
    ports: [{ name: 'http', port: 18080 }, { port: 16379 }, { port: 19999 }],
    meshed: true,
    identity: 'spiffe://trellis.local/ns/shop/sa/cart',
    zone: 'zone-a',
    weight: 3,
  });
  // No service file for "solo": the workload is still known by its own registration.
  await writeWorkloadFile(f.root, 'shop', 'solo-1', {
    service: 'solo',
    address: '::1',
    port: 17000,
    meshed: true,
    identity: 'spiffe://trellis.local/ns/shop/sa/solo',
  });
  await f.watcher.ready();
  await f.watcher.rescan(); // files written after the watcher started
  const first = async (host: string, port: number) => {
    const r = recorder();
    f.watcher.subscribeAddress({ host, port }, r.listener);
    const update = await r.next(1);
    assert.ok(update.kind === 'reset');
    assert.equal(update.endpoints.length, 1);
    return update.endpoints[0];
  };
  const cart = {
    weight: 3,
    labels: { namespace: 'shop', service: 'cart', workload: 'cart-1', zone: 'zone-a' },
    meshed: true,
    identity: 'spiffe://trellis.local/ns/shop/sa/cart',
  };
  assert.deepEqual(await first('127.0.0.21', 18080), {
    address: { host: '127.0.0.21', port: 18080 },
    ...cart,
    protocolHint: 'h2',
  });
  assert.deepEqual(await first('127.0.0.21', 16379), {
    address: { host: '127.0.0.21', port: 16379 },
    ...cart,
    protocolHint: 'opaque', // the service port that leads there says so
  });
  // A registered port no service port leads to: the workload's own facts, no service label.
  assert.deepEqual(await first('127.0.0.21', 19999), {
    address: { host: '127.0.0.21', port: 19999 },
    ...cart,
    labels: { namespace: 'shop', workload: 'cart-1', zone: 'zone-a' },
    protocolHint: 'h2',
  });
  // Any spelling of the IPv6 address finds the workload; the endpoint keeps the one asked for.
  const solo = await first('0:0:0:0:0:0:0:1', 17000);
  assert.equal(solo?.identity, 'spiffe://trellis.local/ns/shop/sa/solo');
  assert.deepEqual(solo?.address, { host: '0:0:0:0:0:0:0:1', port: 17000 });
  // A port the workload did not register is not the workload's.
  assert.deepEqual(await first('127.0.0.21', 18081), {
    address: { host: '127.0.0.21', port: 18081 },
    weight: 1,
    labels: {},
    meshed: false,
    identity: null,
    protocolHint: 'unknown',
  });
});

const exists = (path: string) =>
  access(path).then(
    () => true,
    () => false,
  );

test('LocalWatcher: a registration whose lease runs out is not served, and its files go', async (t) => {
  const f = await localFixture({ rescanIntervalMs: 60_000 }); // expiry alone must bring the scan
  t.after(() => f.close());
  await f.setService('default', 'web', [{ port: 80 }]);
  const register = (id: string, ip: string, renewedAt: number, durationMs: number) =>
    writeWorkloadFile(f.root, 'default', `web-${id}`, {
      service: 'web',
      address: ip,
      port: 80,
      lease: { renewedAt, durationMs },
    });
  const token = workloadTokenPath(f.root, 'default', 'web-short');
  await mkdir(join(token, '..'), { recursive: true });
  await writeFile(token, 'tt1.x.y\n');
  await register('short', '127.0.0.61', Date.now(), 400);
  await register('long', '127.0.0.62', Date.now(), 60_000);
  await writeWorkloadFile(f.root, 'default', 'web-static', {
    service: 'web',
    address: '127.0.0.63',
    port: 80,
  });
  await f.watcher.ready();
  await f.watcher.rescan();
  const r = recorder();
  f.watcher.subscribe({ namespace: 'default', name: 'web', port: 80 }, r.listener);
  const first = await r.next(1);
  assert.ok(first.kind === 'reset');
  assert.equal(first.endpoints.length, 3);
  // Not renewed: out of the set once its lease runs out, its registration and token removed.
  assert.deepEqual(await r.next(2, 3000), { kind: 'remove', addresses: ['127.0.0.61:80'] });
  for (let i = 0; i < 100 && (await exists(workloadPath(f.root, 'default', 'web-short'))); i++) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  assert.equal(await exists(workloadPath(f.root, 'default', 'web-short')), false);
  assert.equal(await exists(token), false);
  assert.equal(await exists(workloadPath(f.root, 'default', 'web-long')), true);
  assert.equal(await exists(workloadPath(f.root, 'default', 'web-static')), true, 'no lease: no expiry');
});

test('LocalWatcher: a renewed lease holds; a watcher starting over an old folder drops expired ones', async (t) => {
  const f = await localFixture();
  t.after(() => f.close());
  await f.setService('default', 'web', [{ port: 80 }]);
  // Left behind by a holder that died 20 s ago, before this control plane started.
  await writeWorkloadFile(f.root, 'default', 'web-dead', {
    service: 'web',
    address: '127.0.0.71',
    port: 80,
    lease: { renewedAt: Date.now() - 20_000, durationMs: 10_000 },
  });
  const renew = () =>
    writeWorkloadFile(f.root, 'default', 'web-alive', {
      service: 'web',
      address: '127.0.0.72',
      port: 80,
      lease: { renewedAt: Date.now(), durationMs: 300 },
    });
  await renew();
  await f.watcher.ready();
  await f.watcher.rescan();
  const r = recorder();
  f.watcher.subscribe({ namespace: 'default', name: 'web', port: 80 }, r.listener);
  const first = await r.next(1);
  assert.ok(first.kind === 'reset');
  assert.deepEqual(
    first.endpoints.map((e) => e.address.host),
    ['127.0.0.72'],
  );
  assert.equal(await exists(workloadPath(f.root, 'default', 'web-dead')), false);
  for (let i = 0; i < 10; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    await renew();
  }
  assert.equal(r.updates.length, 1, 'renewals change nothing for subscribers');
});

test('LocalWatcher: a service asked for on a port it lacks does not exist, with the ports it has', async (t) => {
  const f = await localFixture();
  t.after(() => f.close());
  await f.setService('default', 'web', [{ port: 80 }, { port: 9090 }]);
  await f.watcher.ready();
  await f.watcher.rescan();
  const r = recorder();
  f.watcher.subscribe({ namespace: 'default', name: 'web', port: 81 }, r.listener);
  assert.deepEqual(await r.next(1), { kind: 'does-not-exist', ports: [80, 9090] });
  const none = recorder();
  f.watcher.subscribe({ namespace: 'default', name: 'nope', port: 81 }, none.listener);
  assert.deepEqual(await none.next(1), { kind: 'does-not-exist' });
});
