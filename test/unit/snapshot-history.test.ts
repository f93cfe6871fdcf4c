// The collector's history of one proxy's snapshots: bounded however long it runs, and a window's
// delta always spans at least the window asked for (once the history is that long) and at most one
// thinning step more; restarts anywhere inside the window count the new totals. Property-based.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { SnapshotHistory, DEFAULT_HISTORY_BOUNDS } from '../../src/control/metrics/snapshot-history.ts';
import type { ProxySnapshot } from '../../src/core/golden-metrics.ts';

const snapshot = (atMs: number, responses: number): ProxySnapshot => ({
  atMs,
  responses,
  successes: responses,
  latencyBuckets: [{ le: Infinity, count: responses }],
  tcpOpen: 0,
  readBytes: responses * 10,
  writeBytes: responses * 20,
});

test('a scrape every 2 s for an hour keeps at most ~70 snapshots; every window spans what it should', () => {
  const history = new SnapshotHistory();
  let max = 0;
  for (let t = 0; t <= 3600_000; t += 2000) {
    history.push(snapshot(t, t / 1000)); // one response per second
    max = Math.max(max, history.size);
  }
  assert.ok(max <= 72, `held ${max} snapshots`);
  const { maxWindowMs, sparseStepMs } = DEFAULT_HISTORY_BOUNDS;
  for (const windowMs of [1000, 2000, 10_000, 30_000, 60_000, 61_000, 300_000, maxWindowMs]) {
    const delta = history.delta(windowMs)!;
    assert.ok(delta.seconds * 1000 >= windowMs, `${windowMs}: spans ${delta.seconds} s`);
    assert.ok(
      delta.seconds * 1000 <= Math.max(windowMs, 2000) + sparseStepMs + 2000,
      `${windowMs}: spans ${delta.seconds} s`,
    );
    assert.equal(delta.responses, delta.seconds, 'one response per second');
    assert.equal(delta.readBytes, delta.seconds * 10);
  }
});

test('property: bounded size, windows covered, counts exact, restarts counted as new totals', () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.record({ gapMs: fc.integer({ min: 1, max: 40_000 }), added: fc.nat(1000), restart: fc.boolean() }),
        {
          minLength: 2,
          maxLength: 400,
        },
      ),
      fc.integer({ min: 1000, max: DEFAULT_HISTORY_BOUNDS.maxWindowMs }),
      (steps, windowMs) => {
        const history = new SnapshotHistory();
        const all: ProxySnapshot[] = [];
        let t = 0;
        let total = 0;
        for (const { gapMs, added, restart } of steps) {
          t += gapMs;
          total = (restart ? 0 : total) + added + (restart ? 1 : 0);
          const s = snapshot(t, total);
          all.push(s);
          history.push(s);
          const { denseMs, maxWindowMs, sparseStepMs } = DEFAULT_HISTORY_BOUNDS;
          const dense = all.filter((x) => x.atMs > t - denseMs).length;
          assert.ok(
            history.size <= dense + Math.ceil(maxWindowMs / sparseStepMs) + 2,
            `size ${history.size}`,
          );
        }
        const delta = history.delta(windowMs)!;
        const newest = all[all.length - 1]!;
        const base = all.find((s) => s.atMs === newest.atMs - Math.round(delta.seconds * 1000))!;
        assert.ok(base !== undefined, 'the base is a real snapshot');
        const span = newest.atMs - base.atMs;
        const first = all[0]!;
        if (newest.atMs - first.atMs >= windowMs) assert.ok(span >= windowMs, `span ${span} < ${windowMs}`);
        else assert.equal(base, first);
        const inside = all.slice(all.indexOf(base));
        const restarted = inside.some((s, i) => i > 0 && s.responses < inside[i - 1]!.responses);
        assert.equal(delta.responses, restarted ? newest.responses : newest.responses - base.responses);
        assert.ok(delta.responses >= 0);
      },
    ),
    { numRuns: 300 },
  );
});
