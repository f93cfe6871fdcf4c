// Failure accrual of one endpoint (src/proxy/balance/failure-accrual.ts) over explicit times:
// trips after exactly maxFailures failures in a row, penalties that double up to the cap within
// their jitter bounds, one probe at a time, recovery; the success-rate mode; and fast-check
// properties of the invariants over any sequence of outcomes, probes and time.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import type { FailureAccrualPolicy } from '../../src/core/routes/service-annotations.ts';
import {
  FailureAccrual,
  countsAgainstEndpoint,
  isFailedResponse,
} from '../../src/proxy/balance/failure-accrual.ts';

const consecutive = (over: Partial<FailureAccrualPolicy> = {}): FailureAccrualPolicy =>
  ({
    mode: 'consecutive',
    maxFailures: 5,
    minPenaltyMs: 1000,
    maxPenaltyMs: 8000,
    jitterRatio: 0,
    ...over,
  }) as FailureAccrualPolicy;

test('trips after exactly maxFailures failures in a row; a success in between starts over', () => {
  const a = new FailureAccrual(consecutive());
  for (let i = 0; i < 4; i++) assert.equal(a.record(true, 0, false), null);
  assert.equal(a.record(false, 0, false), null); // the streak is broken
  for (let i = 0; i < 4; i++) assert.equal(a.record(true, 0, false), null);
  assert.equal(a.state, 'closed');
  assert.equal(a.record(true, 10, false), 'tripped');
  assert.equal(a.state, 'open');
  assert.equal(a.openUntil, 1010);
  // Late outcomes of requests sent before the trip change nothing.
  assert.equal(a.record(false, 20, false), null);
  assert.equal(a.state, 'open');
});

test('the penalty doubles per failed probe up to the cap; a probe success closes and forgets', () => {
  const a = new FailureAccrual(consecutive({ maxFailures: 1 }));
  a.record(true, 0, false);
  const penalties: number[] = [a.penaltyMs];
  let now = 0;
  for (let i = 0; i < 5; i++) {
    now = a.openUntil;
    assert.equal(a.probeDue(now - 1), false);
    assert.equal(a.probeDue(now), true);
    assert.equal(a.startProbe(now), true);
    assert.equal(a.state, 'probing');
    assert.equal(a.probeDue(now), false, 'one probe at a time');
    assert.equal(a.record(false, now, false), null, 'only the probe decides');
    assert.equal(a.record(true, now, true), 'reopened');
    penalties.push(a.penaltyMs);
  }
  assert.deepEqual(penalties, [1000, 2000, 4000, 8000, 8000, 8000]);
  now = a.openUntil;
  a.startProbe(now);
  assert.equal(a.record(false, now, true), 'recovered');
  assert.equal(a.state, 'closed');
  assert.equal(a.trips, 0);
  a.record(true, now, false);
  assert.equal(a.penaltyMs, 1000, 'the next trip starts from minPenalty again');
});

test('a probe that ends without a verdict lets the next request probe at once', () => {
  const a = new FailureAccrual(consecutive({ maxFailures: 1 }));
  a.record(true, 0, false);
  assert.equal(a.startProbe(999), false, 'too early: nothing happens');
  assert.equal(a.state, 'open');
  assert.equal(a.probeDue(1000), true);
  assert.equal(a.startProbe(1200), true);
  a.abandonProbe(1500);
  assert.equal(a.state, 'open');
  assert.equal(a.probeDue(1500), true);
  assert.equal(a.trips, 1, 'no new penalty step');
});

test('success-rate mode trips below the rate only once minRequests have counted', () => {
  const a = new FailureAccrual({
    mode: 'success-rate',
    successRate: 0.8,
    minRequests: 10,
    windowMs: 30_000,
    minPenaltyMs: 1000,
    maxPenaltyMs: 60_000,
    jitterRatio: 0,
  });
  // 5 failures in 5 requests: too few to judge.
  for (let i = 0; i < 5; i++) assert.equal(a.record(true, 0, false), null);
  for (let i = 0; i < 4; i++) assert.equal(a.record(false, 0, false), null);
  // 10th request, a failure: 4 of 10 succeeded, under 0.8.
  assert.equal(a.record(true, 0, false), 'tripped');
  assert.equal(a.state, 'open');
  a.startProbe(1000);
  assert.equal(a.record(false, 1000, true), 'recovered');
  assert.ok(Number.isNaN(a.successRate(1000)), 'counts start afresh');
  // Old failures fade: 10 failures long ago do not count against new successes.
  const b = new FailureAccrual({ ...a.policy, minRequests: 10 } as FailureAccrualPolicy);
  for (let i = 0; i < 9; i++) b.record(i % 2 === 0, 0, false);
  for (let i = 0; i < 9; i++) assert.equal(b.record(false, 600_000, false), null);
  assert.ok(b.successRate(600_000) > 0.99);
  assert.equal(b.record(true, 600_000, false), null, 'one failure among ~10 recent requests: 0.9');
});

test('what counts as a failure', () => {
  assert.equal(isFailedResponse(500, undefined), true);
  assert.equal(isFailedResponse(503, undefined), true);
  assert.equal(isFailedResponse(404, undefined), false);
  assert.equal(isFailedResponse(200, '14'), true); // UNAVAILABLE
  assert.equal(isFailedResponse(200, '13'), true); // INTERNAL
  assert.equal(isFailedResponse(200, '2'), true); // UNKNOWN
  assert.equal(isFailedResponse(200, '5'), false); // NOT_FOUND: an answer about the request
  assert.equal(isFailedResponse(200, '4'), false); // DEADLINE_EXCEEDED: the client's deadline
  assert.equal(isFailedResponse(200, '0'), false);
  assert.equal(isFailedResponse(200, ['14']), false);
  assert.equal(countsAgainstEndpoint('connect-failed'), true);
  assert.equal(countsAgainstEndpoint('response-timeout'), true);
  assert.equal(countsAgainstEndpoint('upstream-reset'), true);
  assert.equal(countsAgainstEndpoint('no-identity'), false);
  assert.equal(countsAgainstEndpoint('overflow'), false);
  assert.equal(countsAgainstEndpoint('all-endpoints-tripped'), false);
});

type Step =
  | { kind: 'outcome'; failed: boolean; probe: boolean }
  | { kind: 'probe' }
  | { kind: 'abandon' }
  | { kind: 'wait'; ms: number };

const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ kind: fc.constant('outcome' as const), failed: fc.boolean(), probe: fc.boolean() }),
  fc.constant({ kind: 'probe' as const }),
  fc.constant({ kind: 'abandon' as const }),
  fc.record({ kind: fc.constant('wait' as const), ms: fc.integer({ min: 0, max: 100_000 }) }),
);

test('property: penalties stay within [min*2^k*(1-jitter), min(max, min*2^k)], one probe at a time, a trip needs maxFailures in a row', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 10 }),
      fc.integer({ min: 1, max: 5000 }),
      fc.integer({ min: 1, max: 20 }),
      fc.double({ min: 0, max: 1, noNaN: true }),
      fc.double({ min: 0, max: 0.999999, noNaN: true }),
      fc.array(step, { maxLength: 200 }),
      (maxFailures, minPenaltyMs, factor, jitterRatio, draw, steps) => {
        const policy = consecutive({
          maxFailures,
          minPenaltyMs,
          maxPenaltyMs: minPenaltyMs * factor,
          jitterRatio,
        });
        const a = new FailureAccrual(policy, () => draw);
        let now = 0;
        let streak = 0;
        for (const s of steps) {
          const before = a.state;
          if (s.kind === 'wait') now += s.ms;
          else if (s.kind === 'probe') {
            const due = a.probeDue(now);
            assert.equal(a.startProbe(now), due);
            if (!due) assert.equal(a.state, before, 'a probe starts only when due');
          } else if (s.kind === 'abandon') a.abandonProbe(now);
          else {
            const t = a.record(s.failed, now, s.probe);
            if (before === 'closed') streak = s.failed ? streak + 1 : 0;
            if (t === 'tripped') {
              assert.equal(before, 'closed');
              assert.equal(streak, maxFailures, 'trips after exactly maxFailures in a row');
              streak = 0;
            }
            if (t === 'recovered' || t === 'reopened') assert.equal(before, 'probing');
            if (before === 'open') assert.equal(t, null);
            if (t === 'tripped' || t === 'reopened') {
              const base = Math.min(policy.maxPenaltyMs, minPenaltyMs * 2 ** (a.trips - 1));
              assert.ok(a.penaltyMs <= policy.maxPenaltyMs + 1e-9);
              assert.ok(a.penaltyMs <= base + 1e-9 && a.penaltyMs >= base * (1 - jitterRatio) - 1e-9);
              assert.ok(Math.abs(a.openUntil - (now + a.penaltyMs)) < 1e-6);
            }
            if (t === 'recovered') streak = 0;
          }
          if (a.state === 'probing') assert.equal(a.probeDue(now), false, 'never two probes');
          if (a.state === 'closed') assert.equal(a.openUntil, 0);
        }
      },
    ),
    { numRuns: 300 },
  );
});
