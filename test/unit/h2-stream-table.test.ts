// StreamTable (src/proxy/h2/stream-table.ts): the open streams of an HTTP/2 connection by id.
// Checked against a Map over random operations whose ids collide in the table, and for what it
// was written for: entries that churn are not kept past their delete by the young-generation GC.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import fc from 'fast-check';
import { StreamTable } from '../../src/proxy/h2/stream-table.ts';

test('a StreamTable holds what a Map holds, over sets, deletes, gets and clears', () => {
  // Ids of one side (odd) and the other (even), many of them landing on the same slots (multiples
  // of the capacity apart), so probe runs form, wrap around the end and are cut by deletes.
  const id = fc.oneof(
    fc.integer({ min: 1, max: 40 }),
    fc.integer({ min: 0, max: 6 }).map((k) => 1 + 32 * k),
    fc.integer({ min: 0, max: 6 }).map((k) => 31 + 64 * k),
    fc.integer({ min: 1, max: 0x7fff_ffff }),
  );
  const op = fc.oneof(
    { weight: 4, arbitrary: fc.record({ kind: fc.constant('set' as const), id, value: fc.integer() }) },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('delete' as const), id }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('get' as const), id }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('clear' as const) }) },
  );
  fc.assert(
    fc.property(fc.array(op, { maxLength: 200 }), (ops) => {
      const table = new StreamTable<{ v: number }>();
      const model = new Map<number, { v: number }>();
      for (const o of ops) {
        if (o.kind === 'set') {
          const value = { v: o.value };
          table.set(o.id, value);
          model.set(o.id, value);
        } else if (o.kind === 'delete') {
          assert.equal(table.delete(o.id), model.delete(o.id));
        } else if (o.kind === 'get') {
          assert.equal(table.get(o.id), model.get(o.id));
          assert.equal(table.has(o.id), model.has(o.id));
        } else {
          table.clear();
          model.clear();
        }
        assert.equal(table.size, model.size);
      }
      for (const [k, v] of model) assert.equal(table.get(k), v);
      const byV = (a: { v: number }, b: { v: number }) => a.v - b.v;
      assert.deepEqual(table.values().sort(byV), [...model.values()].sort(byV));
    }),
    { numRuns: 500 },
  );
});

test('values() is a copy: closing (deleting) every stream while going through it works', () => {
  const table = new StreamTable<number>();
  for (let id = 1; id < 200; id += 2) table.set(id, id);
  for (const id of table.values()) table.delete(id);
  assert.equal(table.size, 0);
  assert.deepEqual(table.values(), []);
});

/**
 * Bytes the old generation grew by while `table` had 20,000 entries of ~1 KB set and deleted, 50
 * alive at a time (a busy connection's streams), with a young-generation GC every 100 of them.
 * What dies young is freed by those GCs; what grows the old generation was kept past its delete.
 */
function promotedByChurn(table: {
  set(id: number, v: object): unknown;
  delete(id: number): unknown;
}): number {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as (o?: { type: 'minor' | 'major' }) => void;
  const oldUsed = () => getHeapSpaceStatistics().find((s) => s.space_name === 'old_space')!.space_used_size;
  // The table's own storage goes to the old generation first, as a long-lived connection's does.
  for (let id = 1; id <= 101; id += 2) table.set(id, { payload: new Array(100).fill(id) });
  for (let id = 1; id <= 101; id += 2) table.delete(id);
  gc({ type: 'major' });
  gc({ type: 'major' });
  const before = oldUsed();
  for (let n = 0; n < 20_000; n++) {
    const id = 2 * n + 1001;
    table.set(id, { payload: new Array(100).fill(n) });
    if (n >= 50) table.delete(id - 100);
    if (n % 100 === 99) gc({ type: 'minor' });
  }
  return oldUsed() - before;
}

test('streams deleted from a StreamTable die young: churn promotes almost nothing to the old generation', () => {
  // The measure can tell: a Map's obsolete backing tables keep each other and their entries alive
  // through young-generation GCs (the behaviour StreamTable replaces), and that shows here.
  const viaMap = promotedByChurn(new Map<number, object>());
  const viaTable = promotedByChurn(new StreamTable<object>());
  assert.ok(viaMap > 2_000_000, `a Map promoted ${viaMap} bytes; the measure should see it`);
  assert.ok(viaTable < 200_000, `the StreamTable promoted ${viaTable} bytes (a Map: ${viaMap})`);
});
