// The shared retry backoff (src/core/backoff.ts): equal jitter within a doubling, capped ceiling,
// and settings that cannot be nonsensical.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { backoffDelay, backoffSettings } from '../../src/core/backoff.ts';

test('property: each delay lies in [ceiling/2, ceiling], the ceiling doubling from initialMs to maxMs', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 10_000 }),
      fc.integer({ min: 0, max: 1_000_000 }),
      fc.integer({ min: 0, max: 200 }),
      fc.oneof(
        fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }),
        fc.constantFrom(1, 2, -1, Number.NaN),
      ),
      (initialMs, extra, failures, draw) => {
        const settings = { initialMs, maxMs: initialMs + extra };
        const ceiling = Math.min(settings.maxMs, initialMs * 2 ** Math.min(failures, 30));
        const delay = backoffDelay(failures, settings, { next: () => draw });
        return delay >= ceiling / 2 && delay <= ceiling;
      },
    ),
  );
});

test('settings: defaults fill in, the initial delay is at least 1 ms and the cap at least the initial delay', () => {
  const defaults = { initialMs: 250, maxMs: 10_000 };
  assert.deepEqual(backoffSettings(undefined, defaults), defaults);
  assert.deepEqual(backoffSettings({ initialMs: 0 }, defaults), { initialMs: 1, maxMs: 10_000 });
  assert.deepEqual(backoffSettings({ initialMs: 500, maxMs: 100 }, defaults), { initialMs: 500, maxMs: 500 });
});
