// Circuit breaking at the backend level (src/proxy/balance/backend-guard.ts) over a real
// EndpointSet in virtual time: a tripped endpoint gets no requests until its penalty ends, then
// exactly one probe; every endpoint tripped fails fast; max-pending-requests and max-connections
// answer overflow at once; picks report their verdicts; counters and the admin view follow. And
// through ServiceDiscovery: a Service's policy (applyTrafficPolicy) starts and stops the guard.
// The log lines: trip, recovery, and one line for a flood of refusals.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { FakeClock } from '../../src/core/clock.ts';
import { createLogger, silentLogger } from '../../src/core/log.ts';
import {
  NO_TRAFFIC_POLICY,
  type FailureAccrualPolicy,
  type ServiceTrafficPolicy,
} from '../../src/core/routes/service-annotations.ts';
import {
  BackendGuard,
  GuardedPick,
  type BreakerEvent,
  type GuardRefusal,
} from '../../src/proxy/balance/backend-guard.ts';
import { EndpointSet } from '../../src/proxy/balance/endpoint-set.ts';
import { ServiceDiscovery } from '../../src/proxy/outbound/discovery.ts';
import { StaticResolver, staticEndpoint } from '../../src/proxy/resolve/static.ts';

const A = '127.0.0.1:9001';
const B = '127.0.0.1:9002';

const ACCRUAL: FailureAccrualPolicy = {
  mode: 'consecutive',
  maxFailures: 3,
  minPenaltyMs: 1000,
  maxPenaltyMs: 4000,
  jitterRatio: 0,
};

function guarded(policy: Partial<ServiceTrafficPolicy>, addresses = [A, B]) {
  const clock = new FakeClock(1);
  const set = new EndpointSet({ clock, timers: clock });
  set.apply({ kind: 'reset', endpoints: addresses.map((a) => staticEndpoint(a)) });
  const events: BreakerEvent[] = [];
  const guard = new BackendGuard({
    backend: 'web.default:8080',
    set,
    policy: { ...NO_TRAFFIC_POLICY, ...policy },
    log: silentLogger,
    counters: { count: (e) => events.push(e) },
  });
  const pick = (): GuardedPick => {
    const p = guard.pick(null);
    assert.ok(p instanceof GuardedPick, `expected a pick, got ${JSON.stringify(p)}`);
    return p;
  };
  return { clock, set, guard, events, pick };
}

test('a failing endpoint trips after maxFailures, gets nothing until its penalty ends, then exactly one probe', () => {
  const { clock, guard, events, pick } = guarded({ failureAccrual: ACCRUAL });
  // Send requests; A always fails, B always succeeds.
  let aFailures = 0;
  for (let i = 0; i < 200 && aFailures < 3; i++) {
    const p = pick();
    const failed = p.key === A;
    if (failed) aFailures++;
    p.done(1, failed);
  }
  assert.equal(aFailures, 3);
  assert.deepEqual(events, ['tripped']);
  // During the penalty: only B.
  for (let i = 0; i < 100; i++) {
    const p = pick();
    assert.equal(p.key, B);
    p.done(1, false);
  }
  clock.advance(999);
  assert.equal(pick().key, B);
  clock.advance(1);
  // The penalty is over: the next request is A's probe; while it is out, A gets nothing else.
  const probe = pick();
  assert.equal(probe.key, A);
  assert.equal(probe.probe, true);
  for (let i = 0; i < 50; i++) {
    const p = pick();
    assert.equal(p.key, B);
    p.done(1, false);
  }
  probe.done(1, true); // the probe fails: the next penalty is twice as long
  assert.deepEqual(events, ['tripped', 'probe', 'reopened']);
  assert.equal(guard.view().endpoints.find((e) => e.address === A)!.penaltyMs, 2000);
  clock.advance(1999);
  assert.equal(pick().key, B);
  clock.advance(1);
  const second = pick();
  assert.equal(second.key, A);
  second.fail(); // e.g. its connect failed
  second.done();
  clock.advance(4000);
  const third = pick();
  assert.equal(third.key, A);
  third.done(1, false); // recovered: back in the balancer
  assert.deepEqual(events, ['tripped', 'probe', 'reopened', 'probe', 'reopened', 'probe', 'recovered']);
  assert.deepEqual(guard.endpoints.map((e) => e.key).sort(), [A, B], 'A is back in the balancer');
  assert.equal(guard.view().endpoints.find((e) => e.address === A)!.state, 'closed');
});

test('every endpoint tripped: requests fail fast with all-endpoints-tripped until a probe is due', () => {
  const { clock, guard, events, pick } = guarded({ failureAccrual: { ...ACCRUAL, maxFailures: 1 } });
  pick().done(1, true);
  pick().done(1, true);
  assert.deepEqual(events, ['tripped', 'tripped']);
  const refused = guard.pick(null) as GuardRefusal;
  assert.equal(refused.error, 'all-endpoints-tripped');
  assert.match(refused.detail, /web\.default:8080/);
  clock.advance(1000);
  const probe = pick();
  assert.equal(probe.probe, true);
  const other = pick();
  assert.equal(other.probe, true, 'the other endpoint is due too: its own probe');
  assert.equal((guard.pick(null) as GuardRefusal).error, 'all-endpoints-tripped');
  probe.done(); // cancelled: no verdict; the next request probes that endpoint instead
  const again = pick();
  assert.equal(again.key, probe.key);
  assert.equal(again.probe, true);
  assert.equal(guard.pending, 2);
});

test('a neutral outcome (no verdict) never trips', () => {
  const { events, pick } = guarded({ failureAccrual: { ...ACCRUAL, maxFailures: 1 } });
  for (let i = 0; i < 20; i++) pick().done();
  assert.deepEqual(events, []);
});

test('max-pending-requests: overflow at once over the limit, room again when one ends', () => {
  const { guard, events, pick } = guarded({ maxPendingRequests: 3 });
  const held = [pick(), pick(), pick()];
  for (let i = 0; i < 10; i++) assert.equal((guard.pick(null) as GuardRefusal).error, 'overflow');
  assert.equal(events.filter((e) => e === 'overflow').length, 10);
  assert.equal(guard.pending, 3);
  held[0]!.done(1, false);
  held[0]!.done(1, false); // twice: counted once
  assert.equal(guard.pending, 2);
  pick();
  assert.equal((guard.pick(null) as GuardRefusal).error, 'overflow');
});

test('max-connections: an endpoint at its limit is passed over; every one at it is overflow', () => {
  const { guard, pick } = guarded({ maxConnections: 2 });
  const held = [pick(), pick(), pick(), pick()];
  const perEndpoint = new Map<string, number>();
  for (const p of held) perEndpoint.set(p.key, (perEndpoint.get(p.key) ?? 0) + 1);
  assert.deepEqual([...perEndpoint.values()], [2, 2]);
  assert.equal((guard.pick(null) as GuardRefusal).error, 'overflow');
  held[0]!.done();
  assert.equal(pick().key, held[0]!.key);
});

test('a retry avoids the endpoint that failed when another is available', () => {
  const { guard } = guarded({ failureAccrual: ACCRUAL });
  for (let i = 0; i < 50; i++) {
    const p = guard.pick(A) as GuardedPick;
    assert.equal(p.key, B);
    p.done(1, false);
  }
});

test('property: the pending count and the load return to zero whatever the order of verdicts', () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.constantFrom<boolean | undefined>(true, false, undefined), fc.nat(2000)), {
        maxLength: 100,
      }),
      (steps) => {
        const { clock, set, guard } = guarded({
          failureAccrual: { ...ACCRUAL, maxFailures: 2 },
          maxPendingRequests: 10,
        });
        const open: GuardedPick[] = [];
        for (const [verdict, wait] of steps) {
          clock.advance(wait);
          const p = guard.pick(null);
          if (p instanceof GuardedPick) open.push(p);
          if (open.length > 0 && (verdict !== undefined || open.length > 5)) open.shift()!.done(1, verdict);
          assert.ok(guard.pending <= 10);
          const probing = set.endpoints.filter((e) => e.accrual?.state === 'probing').length;
          assert.ok(probing <= open.filter((o) => o.probe).length, 'a probing endpoint has its probe out');
        }
        for (const p of open) p.done();
        assert.equal(guard.pending, 0);
        for (const e of set.endpoints) assert.equal(e.load.pending, 0);
      },
    ),
    { numRuns: 200 },
  );
});

test('discovery: a Service policy starts and stops circuit breaking for every target that names it', async () => {
  const resolver = new StaticResolver({ 'web.default:8080': [staticEndpoint(A)] });
  const events: string[] = [];
  const d = new ServiceDiscovery({
    resolver,
    failFastMs: 1000,
    idleMs: 0,
    log: silentLogger,
    breakerCounters: (backend) => ({ count: (e) => events.push(`${backend} ${e}`) }),
  });
  const target = { host: 'web.default', port: 8080 };
  const first = await d.pick(target);
  assert.ok(!('error' in first));
  first.done(1, true); // no policy yet: the verdict goes nowhere
  const service = { namespace: 'default', name: 'web', port: 8080 };
  d.applyTrafficPolicy(service, { ...NO_TRAFFIC_POLICY, failureAccrual: { ...ACCRUAL, maxFailures: 1 } });
  const second = await d.pick(target);
  assert.ok(!('error' in second));
  second.fail!();
  second.done();
  const refused = await d.pick(target);
  assert.ok('error' in refused && refused.error === 'all-endpoints-tripped');
  assert.deepEqual(events, ['web.default:8080 tripped', 'web.default:8080 all-tripped']);
  assert.equal(d.breakerViews()[0]!.endpoints[0]!.state, 'open');
  // The same policy again (every route update brings it anew): the breaker keeps its state.
  d.applyTrafficPolicy(service, { ...NO_TRAFFIC_POLICY, failureAccrual: { ...ACCRUAL, maxFailures: 1 } });
  assert.equal(d.breakerViews()[0]!.endpoints[0]!.state, 'open');
  // The annotation removed: back to plain balancing, the breaker forgotten.
  d.applyTrafficPolicy(service, null);
  const third = await d.pick(target);
  assert.ok(!('error' in third));
  third.done();
  assert.deepEqual(d.breakerViews(), []);
  // A policy without failure accrual or limits changes nothing.
  d.applyTrafficPolicy(service, { ...NO_TRAFFIC_POLICY, requestTimeoutMs: 100 });
  assert.deepEqual(d.breakerViews(), []);
  d.close();
});

test('logs: a line when an endpoint trips and when it recovers; a flood of refusals writes one line', () => {
  const lines: { msg: string; leftOut?: number; endpoint?: string }[] = [];
  const clock = new FakeClock(1);
  const set = new EndpointSet({ clock, timers: clock });
  set.apply({ kind: 'reset', endpoints: [staticEndpoint(A)] });
  const guard = new BackendGuard({
    backend: 'web.default:8080',
    set,
    policy: { ...NO_TRAFFIC_POLICY, failureAccrual: { ...ACCRUAL, maxFailures: 1 }, maxPendingRequests: 1 },
    log: createLogger({ level: 'info', rateLimit: null, write: (line) => lines.push(JSON.parse(line)) }),
    counters: { count: () => {} },
  });
  const held = guard.pick(null) as GuardedPick;
  for (let i = 0; i < 1000; i++) assert.equal((guard.pick(null) as GuardRefusal).error, 'overflow');
  held.done(1, true);
  for (let i = 0; i < 1000; i++)
    assert.equal((guard.pick(null) as GuardRefusal).error, 'all-endpoints-tripped');
  clock.advance(1000);
  (guard.pick(null) as GuardedPick).done(1, false);
  assert.deepEqual(
    lines.map((l) => l.msg),
    [
      'backend over its limit; requests answered 503 overflow',
      'endpoint tripped its circuit breaker; it gets no requests until its penalty ends',
      'every endpoint of the backend is tripped; requests answered 503 all-endpoints-tripped',
      'endpoint recovered: its probe succeeded',
    ],
  );
  assert.equal(lines[1]!.endpoint, A);
});

test('a replaced guard: outcomes of its picks in flight do not reach the new breakers', () => {
  const { set, guard } = guarded({ failureAccrual: { ...ACCRUAL, maxFailures: 1 } });
  const old = guard.pick(null) as GuardedPick;
  guard.close();
  const next = new BackendGuard({
    backend: 'web.default:8080',
    set,
    policy: { ...NO_TRAFFIC_POLICY, failureAccrual: { ...ACCRUAL, maxFailures: 1 } },
    log: silentLogger,
    counters: { count: () => {} },
  });
  old.done(1, true);
  assert.deepEqual(
    next.view().endpoints.map((e) => e.state),
    ['closed', 'closed'],
  );
  assert.equal(next.endpoints.length, 2);
});
