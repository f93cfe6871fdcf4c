// LruMap (src/core/lru-map.ts): at most `max` entries, the least recently used dropped first;
// checked against a plain model list over random operations.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { LruMap } from '../../src/core/lru-map.ts';

test('an LruMap keeps the max most recently used entries, as a model list does', () => {
  const op = fc.oneof(
    fc.record({
      kind: fc.constant('set' as const),
      key: fc.integer({ min: 0, max: 9 }),
      value: fc.integer(),
    }),
    fc.record({ kind: fc.constant('get' as const), key: fc.integer({ min: 0, max: 9 }) }),
    fc.record({ kind: fc.constant('has' as const), key: fc.integer({ min: 0, max: 9 }) }),
    fc.record({ kind: fc.constant('delete' as const), key: fc.integer({ min: 0, max: 9 }) }),
  );
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 5 }), fc.array(op, { maxLength: 60 }), (max, ops) => {
      const lru = new LruMap<number, number>(max);
      let model: [number, number][] = []; // oldest first
      for (const o of ops) {
        const at = model.findIndex(([k]) => k === o.key);
        if (o.kind === 'set') {
          if (at !== -1) model.splice(at, 1);
          model.push([o.key, o.value]);
          if (model.length > max) model = model.slice(1);
          lru.set(o.key, o.value);
        } else if (o.kind === 'get') {
          const entry = at === -1 ? undefined : model.splice(at, 1)[0]!;
          if (entry !== undefined) model.push(entry);
          assert.equal(lru.get(o.key), entry?.[1]);
        } else if (o.kind === 'has') {
          assert.equal(lru.has(o.key), at !== -1, 'has does not count as a use');
        } else {
          if (at !== -1) model.splice(at, 1);
          assert.equal(lru.delete(o.key), at !== -1);
        }
        assert.equal(lru.size, model.length);
        assert.ok(lru.size <= max);
      }
    }),
  );
});
