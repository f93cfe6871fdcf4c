// Tests for EndpointSet: how each resolver update changes the set and its status, that loads
// survive updates that keep an endpoint, that removed endpoints are never picked again while their
// in-flight requests still complete, waitReady's three outcomes in virtual time, resolver wiring,
// untrusted input, and a fast-check property: any sequence of updates leaves the set equal to a
// plain Map model.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { FakeClock } from '../../src/core/clock.ts';
import { seededRandom } from '../../src/core/random.ts';
import {
  EndpointSet,
  type EndpointSetStatus,
  type EndpointState,
} from '../../src/proxy/balance/endpoint-set.ts';
import { P2c } from '../../src/proxy/balance/p2c.ts';
import type { PeakEwmaHandle } from '../../src/proxy/balance/peak-ewma.ts';
import type { Endpoint, Update } from '../../src/core/endpoints.ts';
import type { Resolver } from '../../src/proxy/resolve/resolver.ts';
import { StaticResolver, staticEndpoint } from '../../src/proxy/resolve/static.ts';

function newSet(): { set: EndpointSet; clock: FakeClock } {
  const clock = new FakeClock();
  return { set: new EndpointSet({ clock, timers: clock }), clock };
}

const ep = (address: string, weight = 1): Endpoint => staticEndpoint(address, { weight });
const keys = (set: EndpointSet): string[] => set.endpoints.map((e) => e.key).sort();

test('reset, add, remove and does-not-exist change the set and its status', () => {
  const { set } = newSet();
  assert.equal(set.status, 'awaiting');
  assert.equal(set.ready(), false);
  set.apply({ kind: 'reset', endpoints: [ep('10.0.0.1:80'), ep('10.0.0.2:80')] });
  assert.deepEqual(keys(set), ['10.0.0.1:80', '10.0.0.2:80']);
  assert.equal(set.status, 'ready');
  set.apply({ kind: 'add', endpoints: [ep('10.0.0.3:80'), ep('[fd00::1]:8080')] });
  assert.deepEqual(keys(set), ['10.0.0.1:80', '10.0.0.2:80', '10.0.0.3:80', '[fd00::1]:8080']);
  set.apply({ kind: 'remove', addresses: ['10.0.0.1:80', '[fd00::1]:8080', '10.9.9.9:1'] });
  assert.deepEqual(keys(set), ['10.0.0.2:80', '10.0.0.3:80']);
  set.apply({ kind: 'reset', endpoints: [ep('10.0.0.3:80'), ep('10.0.0.4:80')] });
  assert.deepEqual(keys(set), ['10.0.0.3:80', '10.0.0.4:80']);
  set.apply({ kind: 'remove', addresses: ['10.0.0.3:80', '10.0.0.4:80'] });
  assert.equal(set.status, 'no-endpoints');
  assert.equal(set.ready(), false);
  set.apply({ kind: 'add', endpoints: [ep('10.0.0.5:80')] });
  set.apply({ kind: 'does-not-exist' });
  assert.equal(set.status, 'does-not-exist');
  assert.equal(set.size, 0);
  set.apply({ kind: 'reset', endpoints: [] });
  assert.equal(set.status, 'no-endpoints');
});

test('an endpoint that stays keeps its load; one that leaves and comes back starts afresh', () => {
  const { set, clock } = newSet();
  set.apply({ kind: 'reset', endpoints: [ep('10.0.0.1:80'), ep('10.0.0.2:80')] });
  const first = set.get('10.0.0.1:80')!;
  const handle = first.start();
  clock.advance(500);
  handle.complete(500);
  assert.equal(first.load.rttEstimate(), 500);

  set.apply({ kind: 'reset', endpoints: [ep('10.0.0.1:80', 4), ep('10.0.0.3:80')] });
  assert.equal(set.get('10.0.0.1:80'), first);
  assert.equal(first.endpoint.weight, 4, 'the newer description is kept');
  assert.equal(first.cost(), 500 / 4);
  set.apply({ kind: 'add', endpoints: [ep('10.0.0.1:80', 2)] });
  assert.equal(set.get('10.0.0.1:80'), first);
  assert.equal(first.cost(), 500 / 2);

  set.apply({ kind: 'remove', addresses: ['10.0.0.1:80'] });
  assert.equal(first.removed, true);
  set.apply({ kind: 'add', endpoints: [ep('10.0.0.1:80')] });
  const again = set.get('10.0.0.1:80')!;
  assert.notEqual(again, first);
  assert.equal(again.removed, false);
  // Afresh: a new load, which starts where a newcomer does, at its peers' mean (10.0.0.3 alone).
  assert.equal(again.load.pending, 0);
  assert.equal(again.load.rttEstimate(), set.get('10.0.0.3:80')!.load.rttEstimate());
});

test('the first endpoints start at the default RTT; a newcomer at its peers mean estimate', () => {
  const { set, clock } = newSet();
  set.apply({ kind: 'reset', endpoints: [ep('10.0.0.1:80')] });
  const first = set.get('10.0.0.1:80')!;
  assert.equal(first.load.rttEstimate(), 30);
  const handle = first.start();
  clock.advance(2);
  handle.complete(2);
  set.apply({ kind: 'add', endpoints: [ep('10.0.0.2:80')] });
  assert.equal(set.get('10.0.0.2:80')!.load.rttEstimate(), first.load.rttEstimate());
});

test('requests in flight on a removed endpoint complete safely and it is never picked again', () => {
  const { set, clock } = newSet();
  const p2c = new P2c(set, seededRandom(4));
  set.apply({ kind: 'reset', endpoints: [ep('10.0.0.1:80'), ep('10.0.0.2:80'), ep('10.0.0.3:80')] });
  const handles: { state: EndpointState; handle: PeakEwmaHandle }[] = [];
  for (let i = 0; i < 30; i++) {
    const state = p2c.pick()!;
    handles.push({ state, handle: state.start() });
  }
  set.apply({ kind: 'remove', addresses: ['10.0.0.2:80'] });
  set.apply({ kind: 'reset', endpoints: [ep('10.0.0.1:80'), ep('10.0.0.4:80')] });
  for (let i = 0; i < 1_000; i++) {
    const picked = p2c.pick()!;
    assert.ok(picked.key === '10.0.0.1:80' || picked.key === '10.0.0.4:80', picked.key);
    assert.equal(picked.removed, false);
  }
  clock.advance(20);
  for (const { handle } of handles) handle.complete(20);
  for (const { state } of handles) assert.equal(state.load.pending, 0);
  assert.ok(handles.some((h) => h.state.removed));
});

test('updates interleaved with traffic never throw and never yield a removed endpoint', () => {
  const { set, clock } = newSet();
  const random = seededRandom(21);
  const p2c = new P2c(set, seededRandom(22));
  const pool = Array.from({ length: 8 }, (_, i) => `10.0.1.${i + 1}:80`);
  const inflight: PeakEwmaHandle[] = [];
  let picks = 0;
  for (let step = 0; step < 5_000; step++) {
    const r = random.next();
    const some = (): string[] => pool.filter(() => random.next() < 0.4);
    if (r < 0.05) set.apply({ kind: 'reset', endpoints: some().map((a) => ep(a)) });
    else if (r < 0.1) set.apply({ kind: 'add', endpoints: some().map((a) => ep(a)) });
    else if (r < 0.15) set.apply({ kind: 'remove', addresses: some() });
    else if (r < 0.16) set.apply({ kind: 'does-not-exist' });
    else if (r < 0.6) {
      const picked = p2c.pick();
      if (picked === null) {
        assert.equal(set.ready(), false);
        continue;
      }
      assert.equal(picked.removed, false);
      assert.equal(set.get(picked.key), picked);
      inflight.push(picked.start());
      picks++;
    } else if (inflight.length > 0) {
      clock.advance(1);
      const i = Math.floor(random.next() * inflight.length);
      inflight.splice(i, 1)[0]!.complete(random.next() < 0.2 ? undefined : random.next() * 100);
    }
  }
  for (const handle of inflight) handle.complete(5);
  assert.ok(picks > 500, `only ${picks} picks`);
  for (const state of set.endpoints) assert.equal(state.load.pending, 0);
});

test('waitReady: at once when ready, when endpoints arrive, false on timeout and on close', async () => {
  const { set, clock } = newSet();
  assert.equal(await set.waitReady(0), false);
  const timesOut = set.waitReady(1_000);
  const arrives = set.waitReady(5_000);
  clock.advance(999);
  set.apply({ kind: 'does-not-exist' }); // does not end the wait
  clock.advance(1);
  assert.equal(await timesOut, false);
  assert.equal(clock.pendingTimers, 1);
  set.apply({ kind: 'add', endpoints: [ep('10.0.0.1:80')] });
  assert.equal(await arrives, true);
  assert.equal(clock.pendingTimers, 0, 'the timeout is cancelled once ready');
  assert.equal(await set.waitReady(10), true);

  set.apply({ kind: 'reset', endpoints: [] });
  const closing = set.waitReady(60_000);
  set.close();
  assert.equal(await closing, false);
  assert.equal(await set.waitReady(60_000), false);
  assert.equal(clock.pendingTimers, 0);
  set.apply({ kind: 'add', endpoints: [ep('10.0.0.1:80')] });
  assert.equal(set.ready(), false, 'a closed set ignores updates');
});

test('listeners hear about changes only, and a throwing listener does not break the set', () => {
  const { set } = newSet();
  const heard: EndpointSetStatus[] = [];
  set.onChange(() => {
    throw new Error('listener bug');
  });
  const off = set.onChange((s) => heard.push(s.status));
  set.apply({ kind: 'reset', endpoints: [ep('10.0.0.1:80')] });
  set.apply({ kind: 'add', endpoints: [ep('10.0.0.1:80', 3)] }); // same address: no change to the list
  set.apply({ kind: 'remove', addresses: ['10.0.0.1:80'] });
  set.apply({ kind: 'remove', addresses: ['10.0.0.1:80'] });
  off();
  set.apply({ kind: 'does-not-exist' });
  assert.deepEqual(heard, ['ready', 'no-endpoints']);
});

test('untrusted updates: bad addresses skipped, duplicates collapse, unknown kinds ignored', () => {
  const { set } = newSet();
  const bad = [
    { ...ep('10.0.0.1:80'), address: { host: '', port: 80 } },
    { ...ep('10.0.0.1:80'), address: { host: '10.0.0.1', port: 0 } },
    { ...ep('10.0.0.1:80'), address: { host: '10.0.0.1', port: 70000 } },
    { ...ep('10.0.0.1:80'), address: null },
    null,
  ] as unknown as Endpoint[];
  set.apply({ kind: 'reset', endpoints: [...bad, ep('10.0.0.2:80', 1), ep('10.0.0.2:80', 7)] });
  assert.deepEqual(keys(set), ['10.0.0.2:80']);
  assert.equal(set.get('10.0.0.2:80')!.endpoint.weight, 7);
  set.apply({ kind: 'add', endpoints: null } as unknown as Update);
  set.apply({ kind: 'remove', addresses: undefined } as unknown as Update);
  set.apply({ kind: 'explode' } as unknown as Update);
  assert.deepEqual(keys(set), ['10.0.0.2:80']);
  const weird = { ...ep('10.0.0.3:80'), weight: Number.NaN };
  set.apply({ kind: 'add', endpoints: [weird, { ...ep('10.0.0.4:80'), weight: -2 }] });
  assert.equal(set.get('10.0.0.3:80')!.cost(), 30, 'an unusable weight counts as 1');
  assert.equal(set.get('10.0.0.4:80')!.cost(), 30);
});

test('subscribe feeds the set from a resolver; errors keep the last endpoints; close cancels', async () => {
  const resolver = new StaticResolver({ web: [ep('10.0.0.1:80')] });
  const { set } = newSet();
  set.subscribe(resolver, 'web');
  assert.equal(await set.waitReady(1), true);
  assert.deepEqual(keys(set), ['10.0.0.1:80']);
  resolver.set('web', [ep('10.0.0.1:80'), ep('10.0.0.2:80')]);
  await Promise.resolve();
  assert.deepEqual(keys(set), ['10.0.0.1:80', '10.0.0.2:80']);
  set.close();
  assert.equal(resolver.openResolutions, 0);

  let fail: (e: Error) => void = () => {};
  let push: (u: Update) => void = () => {};
  const scriptedResolver: Resolver = {
    resolve: (_target, onUpdate, onError) => {
      push = onUpdate;
      fail = onError;
      return { cancel: () => {} };
    },
  };
  const other = newSet().set;
  other.subscribe(scriptedResolver, 'api');
  push({ kind: 'reset', endpoints: [ep('10.0.0.9:80')] });
  fail(new Error('control plane unreachable'));
  assert.equal(other.lastError?.message, 'control plane unreachable');
  assert.deepEqual(keys(other), ['10.0.0.9:80']);
  push({ kind: 'add', endpoints: [] });
  assert.equal(other.lastError, null);
});

// ---- property: the set behaves like a Map from address key to the last description ----

const addressArb = fc.record({
  host: fc.constantFrom('10.0.0.1', '10.0.0.2', '10.0.0.3', 'fd00::1', 'web-0.local'),
  port: fc.constantFrom(80, 8080),
});
const endpointArb: fc.Arbitrary<Endpoint> = fc.record({
  address: addressArb,
  weight: fc.constantFrom(1, 2, 10),
  labels: fc.constantFrom<Record<string, string>>({}, { zone: 'a' }),
  meshed: fc.boolean(),
  identity: fc.constantFrom(null, 'spiffe://trellis.local/ns/default/sa/web'),
  protocolHint: fc.constantFrom('unknown' as const, 'h2' as const, 'opaque' as const),
});
const keyOf = (e: Endpoint): string =>
  e.address.host.includes(':')
    ? `[${e.address.host}]:${e.address.port}`
    : `${e.address.host}:${e.address.port}`;
const updateArb: fc.Arbitrary<Update> = fc.oneof(
  fc.record({ kind: fc.constant('reset' as const), endpoints: fc.array(endpointArb, { maxLength: 6 }) }),
  fc.record({ kind: fc.constant('add' as const), endpoints: fc.array(endpointArb, { maxLength: 4 }) }),
  fc.record({
    kind: fc.constant('remove' as const),
    addresses: fc.array(
      fc.oneof(
        addressArb.map((a) => keyOf({ address: a } as Endpoint)),
        fc.constant('10.9.9.9:1'),
      ),
      { maxLength: 4 },
    ),
  }),
  fc.constant({ kind: 'does-not-exist' as const }),
);

function modelApply(model: Map<string, Endpoint>, update: Update): void {
  switch (update.kind) {
    case 'reset':
      model.clear();
      for (const e of update.endpoints) model.set(keyOf(e), e);
      break;
    case 'add':
      for (const e of update.endpoints) model.set(keyOf(e), e);
      break;
    case 'remove':
      for (const a of update.addresses) model.delete(a);
      break;
    case 'does-not-exist':
      model.clear();
      break;
  }
}

test('property: any sequence of updates leaves the set equal to a Map model', () => {
  fc.assert(
    fc.property(fc.array(updateArb, { maxLength: 25 }), (updates) => {
      const { set, clock } = newSet();
      const model = new Map<string, Endpoint>();
      const handles: PeakEwmaHandle[] = [];
      let modelStatus: EndpointSetStatus = 'awaiting';
      assert.equal(set.status, modelStatus);
      for (const update of updates) {
        const before = new Map(set.endpoints.map((s) => [s.key, s]));
        set.apply(update);
        modelApply(model, update);

        assert.deepEqual(keys(set), [...model.keys()].sort());
        assert.equal(new Set(set.endpoints).size, set.size, 'no endpoint twice');
        for (const state of set.endpoints) {
          assert.equal(state.endpoint, model.get(state.key), 'the last description wins');
          assert.equal(state.removed, false);
          const previous = before.get(state.key);
          if (previous !== undefined) assert.equal(state, previous, 'state kept while present');
        }
        for (const [key, previous] of before) {
          assert.equal(previous.removed, !model.has(key));
        }
        assert.equal(set.ready(), model.size > 0);
        // Endpoints make it ready; does-not-exist holds until a reset or add says otherwise.
        if (model.size > 0) modelStatus = 'ready';
        else if (update.kind === 'does-not-exist') modelStatus = 'does-not-exist';
        else if (update.kind !== 'remove' || modelStatus !== 'does-not-exist') modelStatus = 'no-endpoints';
        assert.equal(set.status, modelStatus);

        for (const state of set.endpoints) handles.push(state.start());
        clock.advance(3);
      }
      for (const handle of handles) handle.complete(1);
      for (const state of set.endpoints) assert.equal(state.load.pending, 0);
    }),
    { numRuns: 300 },
  );
});

test('FakeClock runs due timers in order, at their due time, and skips cancelled ones', () => {
  const clock = new FakeClock(100);
  const ran: string[] = [];
  clock.setTimeout(() => ran.push(`b@${clock.now()}`), 20);
  clock.setTimeout(() => ran.push(`a@${clock.now()}`), 10);
  const cancelled = clock.setTimeout(() => ran.push('cancelled'), 5);
  clock.setTimeout(() => {
    ran.push(`c@${clock.now()}`);
    clock.setTimeout(() => ran.push(`d@${clock.now()}`), 1); // scheduled from a timer, due in range
  }, 20);
  cancelled.cancel();
  clock.advance(15);
  assert.deepEqual(ran, ['a@110']);
  clock.advance(50);
  assert.deepEqual(ran, ['a@110', 'b@120', 'c@120', 'd@121']);
  assert.equal(clock.now(), 165);
  assert.equal(clock.pendingTimers, 0);
  assert.throws(() => clock.advance(-1), RangeError);
});
