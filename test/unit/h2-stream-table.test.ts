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
  // Ids of one side (odd) and the other (even), few and close together in tables of 16 to 64
  // slots, so that probe runs form, wrap around the end and are cut by deletes (which slots share a
  // run depends on the table's key, drawn anew for each table of each run).
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

/** Nanoseconds per get() of an id that is not in `table` but lands where `ids` were put. */
function nsPerMiss(ids: readonly number[], absent: number): number {
  const table = new StreamTable<object>();
  for (const id of ids) table.set(id, {});
  let best = Infinity;
  for (let round = 0; round < 5; round++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < 20_000; i++) if (table.get(absent) !== undefined) throw new Error('found');
    best = Math.min(best, Number(process.hrtime.bigint() - start) / 20_000);
  }
  return best;
}

test('stream ids a peer chooses to share a slot do not make lookups slow: the slot of an id cannot be told from outside', () => {
  // A client chooses its stream ids (increasing, odd, up to 2^31-1). With the slot taken from the
  // id's bits, ids 4,096 apart all landed on one slot: 999 of them open (MAX_CONCURRENT_STREAMS is
  // 1,000) made one probe run, and every frame naming a stream in it (a 13-byte WINDOW_UPDATE for
  // a closed stream is ignored after its lookup) walked the run: 1.6 us a lookup instead of 12 ns,
  // which made a flood of such frames cost the proxy 4x the CPU per byte.
  const colliding = Array.from({ length: 999 }, (_, k) => 1 + 4096 * k);
  const sequential = Array.from({ length: 999 }, (_, k) => 1 + 2 * k);
  const chosen = nsPerMiss(colliding, 1 + 4096 * 500 + 2);
  const plain = nsPerMiss(sequential, 1 + 2 * 999 + 4096);
  assert.ok(
    chosen < 10 * Math.max(plain, 5),
    `${chosen.toFixed(1)} ns per lookup, against ${plain.toFixed(1)}`,
  );
});
