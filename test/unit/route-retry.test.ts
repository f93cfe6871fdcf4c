// The route level's retry and timeout arithmetic (src/proxy/outbound/routes.ts): retryAfter
// decides whether an attempt is tried again and after which backoff; attemptLimit which limit
// bounds the next attempt and the reason its 504 names.
import assert from 'node:assert/strict';
import test from 'node:test';
import fc from 'fast-check';
import { seededRandom } from '../../src/core/random.ts';
import { attemptLimit, retryAfter, type RoutePolicyRetry } from '../../src/proxy/outbound/routes.ts';
import { RetryBudget } from '../../src/proxy/outbound/retry-budget.ts';

function policy(over: Partial<RoutePolicyRetry> = {}): RoutePolicyRetry {
  return {
    codes: [503],
    grpcCodes: [14],
    retries: 3,
    backoffMs: 100,
    budget: new RetryBudget({ minPerSecond: 1000 }),
    ...over,
  };
}

test('retryAfter: codes, gRPC codes, timeouts, attempts, budget and deadline', () => {
  const random = seededRandom(1);
  assert.equal(retryAfter(policy(), 0, { status: 500, grpcStatus: null }, Infinity, 0, random), null);
  assert.equal(
    typeof retryAfter(policy(), 0, { status: 503, grpcStatus: null }, Infinity, 0, random),
    'number',
  );
  assert.equal(
    typeof retryAfter(policy(), 0, { status: 200, grpcStatus: 14 }, Infinity, 0, random),
    'number',
  );
  assert.equal(retryAfter(policy(), 0, { status: 200, grpcStatus: 13 }, Infinity, 0, random), null);
  assert.equal(typeof retryAfter(policy(), 0, { timedOut: true }, Infinity, 0, random), 'number');
  assert.equal(retryAfter(policy(), 3, { status: 503, grpcStatus: null }, Infinity, 0, random), null);
  // The backoff would outlast the exchange's deadline: the failure is returned instead.
  assert.equal(retryAfter(policy(), 0, { status: 503, grpcStatus: null }, 40, 0, random), 'deadline');
  const spent = new RetryBudget({ ratio: 0, minPerSecond: 0 });
  assert.equal(
    retryAfter(policy({ budget: spent }), 0, { status: 503, grpcStatus: null }, Infinity, 0, random),
    'budget-exhausted',
  );
});

test('property: backoffs double from the first, each drawn in [d/2, d], never past the deadline', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 1000 }),
      fc.integer({ min: 0, max: 9 }),
      fc.integer({ min: 0, max: 2 ** 31 }),
      fc.option(fc.integer({ min: 0, max: 100_000 }), { nil: undefined }),
      (backoffMs, done, seed, deadline) => {
        const delay = retryAfter(
          policy({ backoffMs, retries: 10 }),
          done,
          { status: 503, grpcStatus: null },
          deadline ?? Infinity,
          0,
          seededRandom(seed),
        );
        assert.notEqual(delay, null, 'a 503 is retried');
        if (delay === 'deadline') {
          assert.ok(deadline !== undefined && deadline <= backoffMs * 2 ** done, 'only the deadline refuses');
          return;
        }
        assert.equal(typeof delay, 'number');
        const base = backoffMs * 2 ** done;
        assert.ok((delay as number) >= base / 2 && (delay as number) <= base);
        if (deadline !== undefined) assert.ok((delay as number) < deadline);
      },
    ),
  );
});

test('attemptLimit: the first of the request deadline, the attempt limit and the response timeout', () => {
  assert.deepEqual(attemptLimit(Infinity, null, 0, 0), { ms: 0, reason: 'response-timeout' });
  assert.deepEqual(attemptLimit(Infinity, null, 5000, 0), { ms: 5000, reason: 'response-timeout' });
  const timeouts = { requestMs: 1000, attemptMs: 300 };
  assert.deepEqual(attemptLimit(1000, timeouts, 5000, 0), { ms: 300, reason: 'backend-request-timeout' });
  assert.deepEqual(attemptLimit(1000, timeouts, 5000, 800), { ms: 200, reason: 'request-timeout' });
  assert.deepEqual(attemptLimit(1000, { requestMs: 1000, attemptMs: null }, 0, 0), {
    ms: 1000,
    reason: 'request-timeout',
  });
  // Past the deadline: at least 1 ms, so the timer fires at once and names the request timeout.
  assert.deepEqual(attemptLimit(1000, timeouts, 5000, 2000), { ms: 1, reason: 'request-timeout' });
});
