// The retry budget (src/proxy/outbound/retry-budget.ts): retries stay within ratio x requests of
// the window plus the per-second floor, whatever the order of requests and retries, and the
// budget comes back once the window has passed. A fake clock drives the seconds.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { RetryBudget } from '../../src/proxy/outbound/retry-budget.ts';

function clock(start = 1_000_000): { now(): number; advance(ms: number): void } {
  let t = start;
  return { now: () => t, advance: (ms) => (t += ms) };
}

describe('RetryBudget', () => {
  it('an outage: every request wants a retry, and at most 20% plus 10 a second get one', () => {
    const c = clock();
    const budget = new RetryBudget({ clock: c });
    let retries = 0;
    for (let s = 0; s < 10; s++) {
      for (let i = 0; i < 1000; i++) {
        budget.deposit();
        if (budget.tryWithdraw()) retries++;
      }
      c.advance(1000);
    }
    // 10,000 requests in the window: 2,000 from the ratio and 100 from the floor.
    assert.equal(retries, 2100);
  });

  it('a quiet Service may still retry up to the floor', () => {
    const budget = new RetryBudget({ clock: clock(), minPerSecond: 10, windowMs: 10_000 });
    let granted = 0;
    for (let i = 0; i < 500; i++) if (budget.tryWithdraw()) granted++;
    assert.equal(granted, 100);
  });

  it('the budget comes back once the window has passed', () => {
    const c = clock();
    const budget = new RetryBudget({ clock: c, minPerSecond: 1, windowMs: 2000, ratio: 0 });
    assert.ok(budget.tryWithdraw());
    assert.ok(budget.tryWithdraw());
    assert.equal(budget.tryWithdraw(), false);
    c.advance(1000);
    assert.equal(budget.tryWithdraw(), false, 'both retries are still in the window');
    c.advance(1000);
    assert.ok(budget.tryWithdraw(), 'the first second left the window');
    c.advance(60_000);
    assert.ok(budget.tryWithdraw());
    assert.ok(budget.tryWithdraw());
  });

  it('property: retries granted in any window never exceed ratio x its requests + the floor', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ gapMs: fc.integer({ min: 0, max: 1500 }), request: fc.boolean() }), {
          maxLength: 400,
        }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.integer({ min: 0, max: 5 }),
        (events, ratio, minPerSecond) => {
          const c = clock();
          const budget = new RetryBudget({ clock: c, ratio, minPerSecond, windowMs: 3000 });
          const log: { t: number; request: boolean }[] = [];
          for (const e of events) {
            c.advance(e.gapMs);
            if (e.request) {
              budget.deposit();
              log.push({ t: c.now(), request: true });
            } else if (budget.tryWithdraw()) log.push({ t: c.now(), request: false });
          }
          // Check each granted retry against the whole seconds its window covered.
          for (const [i, e] of log.entries()) {
            if (e.request) continue;
            const second = Math.floor(e.t / 1000);
            const inWindow = log.slice(0, i + 1).filter((x) => Math.floor(x.t / 1000) > second - 3);
            const requests = inWindow.filter((x) => x.request).length;
            const retries = inWindow.filter((x) => !x.request).length;
            assert.ok(
              retries <= requests * ratio + minPerSecond * 3 + 1e-9,
              `${retries} retries for ${requests} requests`,
            );
          }
        },
      ),
    );
  });
});
