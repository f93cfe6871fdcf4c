// Tests for ExpiringSet, the cache of destinations whose detection timed out: expiry on a fake
// clock, eviction of the oldest entry when full, renewal on add, and a model-based property.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ExpiringSet } from '../../src/proxy/detect/opaque-cache.ts';
import { ConfigError } from '../../src/core/errors.ts';

function fakeClock(start = 1000): { now: () => number; advance: (ms: number) => void } {
  let time = start;
  return { now: () => time, advance: (ms) => (time += ms) };
}

test('an entry lives exactly ttlMs', () => {
  const clock = fakeClock();
  const set = new ExpiringSet({ ttlMs: 100, max: 10, now: clock.now });
  assert.equal(set.has('10.0.0.1:5432'), false);
  set.add('10.0.0.1:5432');
  assert.equal(set.has('10.0.0.1:5432'), true);
  assert.equal(set.size, 1);
  clock.advance(99);
  assert.equal(set.has('10.0.0.1:5432'), true);
  clock.advance(1);
  assert.equal(set.has('10.0.0.1:5432'), false);
  assert.equal(set.size, 0);
});

test('size counts only live entries', () => {
  const clock = fakeClock();
  const set = new ExpiringSet({ ttlMs: 100, max: 10, now: clock.now });
  set.add('a');
  clock.advance(50);
  set.add('b');
  assert.equal(set.size, 2);
  clock.advance(50);
  assert.equal(set.size, 1, 'a expired, without anyone asking for it');
  assert.equal(set.has('b'), true);
  clock.advance(50);
  assert.equal(set.size, 0);
});

test('adding again renews the entry', () => {
  const clock = fakeClock();
  const set = new ExpiringSet({ ttlMs: 100, max: 2, now: clock.now });
  set.add('a');
  clock.advance(80);
  set.add('a');
  clock.advance(80);
  assert.equal(set.has('a'), true, 'renewed at 80, lives until 180');
  assert.equal(set.size, 1);
  clock.advance(20);
  assert.equal(set.has('a'), false);
});

test('when full, the oldest entry is evicted', () => {
  const clock = fakeClock();
  const set = new ExpiringSet({ ttlMs: 1000, max: 3, now: clock.now });
  for (const key of ['a', 'b', 'c']) {
    set.add(key);
    clock.advance(1);
  }
  set.add('a'); // renewed: now the newest
  set.add('d'); // evicts b, the oldest
  assert.equal(set.size, 3);
  assert.deepEqual(
    ['a', 'b', 'c', 'd'].map((k) => set.has(k)),
    [true, false, true, true],
  );
  set.add('e'); // evicts c
  assert.deepEqual(
    ['a', 'c', 'd', 'e'].map((k) => set.has(k)),
    [true, false, true, true],
  );
});

test('expired entries make room before live ones are evicted', () => {
  const clock = fakeClock();
  const set = new ExpiringSet({ ttlMs: 100, max: 2, now: clock.now });
  set.add('old');
  clock.advance(60);
  set.add('live');
  clock.advance(50); // old expired, live has 50 ms left
  set.add('new');
  assert.equal(set.has('live'), true);
  assert.equal(set.has('new'), true);
  assert.equal(set.size, 2);
});

test('a ttl or max of 0 disables the set', () => {
  for (const opts of [
    { ttlMs: 0, max: 10 },
    { ttlMs: 100, max: 0 },
  ]) {
    const set = new ExpiringSet(opts);
    set.add('a');
    assert.equal(set.has('a'), false, JSON.stringify(opts));
    assert.equal(set.size, 0);
  }
});

test('rejects a nonsense configuration', () => {
  for (const opts of [
    { ttlMs: -5, max: 1 },
    { ttlMs: Number.NaN, max: 1 },
    { ttlMs: Number.POSITIVE_INFINITY, max: 1 },
    { ttlMs: 10, max: -1 },
    { ttlMs: 10, max: 1.5 },
  ]) {
    assert.throws(() => new ExpiringSet(opts), ConfigError, JSON.stringify(opts));
  }
});

test('uses a real clock by default', () => {
  const set = new ExpiringSet({ ttlMs: 60_000, max: 4 });
  set.add('x');
  assert.equal(set.has('x'), true);
});

test('property: behaves like a simple model of expiring, bounded entries', () => {
  type Op = { op: 'add'; key: string } | { op: 'has'; key: string } | { op: 'tick'; ms: number };
  const key = fc.constantFrom('a', 'b', 'c', 'd', 'e');
  const opArb: fc.Arbitrary<Op> = fc.oneof(
    key.map((k) => ({ op: 'add' as const, key: k })),
    key.map((k) => ({ op: 'has' as const, key: k })),
    fc.integer({ min: 0, max: 60 }).map((ms) => ({ op: 'tick' as const, ms })),
  );
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 4 }), fc.array(opArb, { maxLength: 60 }), (max, ops) => {
      const ttlMs = 100;
      const clock = fakeClock();
      const set = new ExpiringSet({ ttlMs, max, now: clock.now });
      // The model: key -> time of its last add, in order of last add.
      let model: [string, number][] = [];
      for (const step of ops) {
        const now = clock.now();
        model = model.filter(([, addedAt]) => now - addedAt < ttlMs);
        if (step.op === 'tick') {
          clock.advance(step.ms);
        } else if (step.op === 'add') {
          model = model.filter(([k]) => k !== step.key);
          if (model.length >= max) model.shift();
          if (max > 0) model.push([step.key, now]);
          set.add(step.key);
        } else {
          assert.equal(
            set.has(step.key),
            model.some(([k]) => k === step.key),
          );
        }
        assert.equal(set.size, model.filter(([, addedAt]) => clock.now() - addedAt < ttlMs).length);
      }
    }),
    { numRuns: 500 },
  );
});
