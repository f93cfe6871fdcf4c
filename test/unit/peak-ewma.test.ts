// Tests for the Peak-EWMA load: the default estimate, the peak rule, the exponential move towards
// lower observations, the decay towards zero while idle, pending counting, and completions that
// carry no (or a nonsensical) RTT. All in virtual time with FakeClock.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../../src/core/clock.ts';
import {
  DEFAULT_DECAY_MS,
  DEFAULT_RTT_MS,
  MIN_COST_RTT_MS,
  PeakEwma,
} from '../../src/proxy/balance/peak-ewma.ts';

function close(actual: number, expected: number, message?: string): void {
  assert.ok(
    Math.abs(actual - expected) < 1e-9 * Math.max(1, Math.abs(expected)),
    `${message ?? ''} ${actual} != ${expected}`,
  );
}

test('starts at the default RTT (Linkerd: 30 ms, decay 10 s) and cost counts pending + 1', () => {
  assert.equal(DEFAULT_RTT_MS, 30);
  assert.equal(DEFAULT_DECAY_MS, 10_000);
  const clock = new FakeClock();
  const load = new PeakEwma({ clock });
  assert.equal(load.rttEstimate(), 30);
  assert.equal(load.cost(), 30);
  const a = load.start();
  const b = load.start();
  assert.equal(load.pending, 2);
  assert.equal(load.cost(), 90);
  a.complete();
  b.complete();
  assert.equal(load.pending, 0);
  assert.equal(load.cost(), 30);
});

test('a slower observation is taken at once (the peak)', () => {
  const clock = new FakeClock();
  const load = new PeakEwma({ clock });
  const handle = load.start();
  clock.advance(250);
  handle.complete(250);
  assert.equal(load.rttEstimate(), 250);
  assert.equal(load.cost(), 250);
});

test('a faster observation moves the estimate with weight 1 - exp(-elapsed/decay)', () => {
  const clock = new FakeClock();
  const load = new PeakEwma({ clock, defaultRttMs: 100, decayMs: 10_000 });
  const handle = load.start();
  clock.advance(10_000); // nothing reads the estimate in between
  handle.complete(20);
  const decay = Math.exp(-1);
  close(load.rttEstimate(), 100 * decay + 20 * (1 - decay));
});

test('a faster observation right after the last update barely moves the estimate', () => {
  const clock = new FakeClock();
  const load = new PeakEwma({ clock, defaultRttMs: 100 });
  const handle = load.start();
  handle.complete(1); // no time has passed: weight 0
  assert.equal(load.rttEstimate(), 100);
});

test('the estimate decays towards zero while no observation arrives', () => {
  const clock = new FakeClock();
  const load = new PeakEwma({ clock });
  clock.advance(DEFAULT_DECAY_MS);
  close(load.rttEstimate(), 30 * Math.exp(-1));
  // Reading in several steps decays exactly as much as reading once.
  const other = new PeakEwma({ clock, defaultRttMs: 30 });
  for (let i = 0; i < 10; i++) {
    clock.advance(DEFAULT_DECAY_MS / 10);
    other.cost();
  }
  close(other.rttEstimate(), 30 * Math.exp(-1));
});

test('a completion without an RTT only ends the request', () => {
  const clock = new FakeClock();
  const load = new PeakEwma({ clock, defaultRttMs: 50, decayMs: 1e12 });
  const handle = load.start();
  clock.advance(5_000);
  handle.complete();
  assert.equal(load.pending, 0);
  close(load.rttEstimate(), 50 * Math.exp(-5_000 / 1e12));
});

test('completing a handle twice counts once; nonsense RTTs are ignored', () => {
  const clock = new FakeClock();
  const load = new PeakEwma({ clock, decayMs: 1e15 });
  const a = load.start();
  const b = load.start();
  a.complete(10_000);
  a.complete(10_000);
  a.complete();
  assert.equal(load.pending, 1);
  b.complete(Number.NaN);
  assert.equal(load.pending, 0);
  for (const rtt of [-5, Number.POSITIVE_INFINITY]) load.start().complete(rtt);
  assert.equal(load.pending, 0);
  close(load.rttEstimate(), 10_000);
});

test('handles remember when they started', () => {
  const clock = new FakeClock(1_000);
  const load = new PeakEwma({ clock });
  clock.advance(42);
  assert.equal(load.start().startedAt, 1_042);
});

test('an estimate that decayed to nothing still tells busy from idle', () => {
  const clock = new FakeClock();
  const idle = new PeakEwma({ clock, defaultRttMs: 0 });
  const busy = new PeakEwma({ clock, defaultRttMs: 0 });
  busy.start();
  busy.start();
  assert.equal(idle.cost(), MIN_COST_RTT_MS);
  assert.equal(busy.cost(), 3 * MIN_COST_RTT_MS);
  assert.ok(busy.cost() > idle.cost());
});

test('unusable options fall back to the defaults', () => {
  const clock = new FakeClock();
  const load = new PeakEwma({ clock, defaultRttMs: Number.NaN, decayMs: -1 });
  assert.equal(load.rttEstimate(), DEFAULT_RTT_MS);
  clock.advance(DEFAULT_DECAY_MS);
  close(load.rttEstimate(), DEFAULT_RTT_MS * Math.exp(-1));
});
