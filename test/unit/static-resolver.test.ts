// Tests for the static resolver: a reset for known targets, does-not-exist for unknown ones,
// never a synchronous callback, `set` pushing changes to open resolutions only, cancel, and
// staticEndpoint's parsing and defaults.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TrellisError } from '../../src/core/errors.ts';
import type { Update } from '../../src/core/endpoints.ts';
import { StaticResolver, staticEndpoint } from '../../src/proxy/resolve/static.ts';

function collect(resolver: StaticResolver, target: string): { updates: Update[]; cancel(): void } {
  const updates: Update[] = [];
  const resolution = resolver.resolve(
    target,
    (u) => updates.push(u),
    (e) => assert.fail(`unexpected resolver error ${e.message}`),
  );
  return { updates, cancel: () => resolution.cancel() };
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

test('staticEndpoint parses host:port and fills plain defaults', () => {
  assert.deepEqual(staticEndpoint('10.0.0.1:8080'), {
    address: { host: '10.0.0.1', port: 8080 },
    weight: 1,
    labels: {},
    meshed: false,
    identity: null,
    protocolHint: 'unknown',
  });
  assert.deepEqual(staticEndpoint('[::1]:80').address, { host: '::1', port: 80 });
  const meshed = staticEndpoint(
    { host: 'web-0', port: 4143 },
    { meshed: true, identity: 'spiffe://t/ns/a/sa/b', weight: 3, protocolHint: 'h2', labels: { zone: 'z' } },
  );
  assert.equal(meshed.weight, 3);
  assert.equal(meshed.identity, 'spiffe://t/ns/a/sa/b');
  assert.equal(meshed.protocolHint, 'h2');
  assert.deepEqual(meshed.labels, { zone: 'z' });
  for (const bad of ['10.0.0.1', '10.0.0.1:0', '10.0.0.1:99999', ':80', '[::1', 'a:b']) {
    assert.throws(
      () => staticEndpoint(bad),
      (e: unknown) => e instanceof TrellisError && e.code === 'TRELLIS_ERR_CONFIG',
      bad,
    );
  }
});

test('a known target gets a reset with its endpoints, an unknown one does-not-exist, never synchronously', async () => {
  const web = [staticEndpoint('10.0.0.1:80'), staticEndpoint('10.0.0.2:80')];
  const resolver = new StaticResolver(new Map([['web:80', web]]));
  const known = collect(resolver, 'web:80');
  const unknown = collect(resolver, 'nope:80');
  assert.equal(known.updates.length, 0, 'not delivered synchronously');
  await tick();
  assert.deepEqual(known.updates, [{ kind: 'reset', endpoints: web }]);
  assert.deepEqual(unknown.updates, [{ kind: 'does-not-exist' }]);
});

test("the table is copied: changing the caller's array later changes nothing", async () => {
  const list = [staticEndpoint('10.0.0.1:80')];
  const resolver = new StaticResolver({ web: list });
  list.push(staticEndpoint('10.0.0.2:80'));
  const watch = collect(resolver, 'web');
  await tick();
  const first = watch.updates[0];
  assert.ok(first?.kind === 'reset');
  assert.equal(first.endpoints.length, 1);
});

test('set pushes the change to open resolutions of that target only; cancel stops delivery', async () => {
  const resolver = new StaticResolver({ web: [staticEndpoint('10.0.0.1:80')] });
  const a = collect(resolver, 'web');
  const b = collect(resolver, 'web');
  const other = collect(resolver, 'api');
  await tick();
  assert.equal(resolver.openResolutions, 3);
  b.cancel();
  b.cancel();
  assert.equal(resolver.openResolutions, 2);

  const next = [staticEndpoint('10.0.0.3:80')];
  resolver.set('web', next);
  resolver.set('api', [staticEndpoint('10.0.0.4:80')]);
  await tick();
  assert.deepEqual(a.updates.at(-1), { kind: 'reset', endpoints: next });
  assert.equal(a.updates.length, 2);
  assert.equal(b.updates.length, 1);
  assert.deepEqual(
    other.updates.map((u) => u.kind),
    ['does-not-exist', 'reset'],
  );

  resolver.set('web', null);
  await tick();
  assert.deepEqual(a.updates.at(-1), { kind: 'does-not-exist' });

  // Cancelled between `set` and delivery: nothing arrives.
  resolver.set('web', next);
  a.cancel();
  await tick();
  assert.deepEqual(a.updates.at(-1), { kind: 'does-not-exist' });
  other.cancel();
  assert.equal(resolver.openResolutions, 0);
});

test('a resolution cancelled before its first delivery gets nothing', async () => {
  const resolver = new StaticResolver({ web: [staticEndpoint('10.0.0.1:80')] });
  const watch = collect(resolver, 'web');
  watch.cancel();
  await tick();
  assert.deepEqual(watch.updates, []);
});
