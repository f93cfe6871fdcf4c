// Tests for the power-of-two-choices picker: its unit rules (empty, single, two distinct draws,
// the cheaper wins, NaN never wins) with fake costed endpoints, then the whole balancer
// (EndpointSet + Peak-EWMA + P2c) in a virtual-time simulation of open-loop traffic: a slow
// endpoint gets little traffic, a recovered one wins it back after the decay, no endpoint starves,
// and weights are respected roughly. Everything is seeded, so every run is the same run.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../../src/core/clock.ts';
import { seededRandom, type Random } from '../../src/core/random.ts';
import { EndpointSet, type EndpointState } from '../../src/proxy/balance/endpoint-set.ts';
import { P2c } from '../../src/proxy/balance/p2c.ts';
import type { PeakEwmaHandle } from '../../src/proxy/balance/peak-ewma.ts';
import { staticEndpoint } from '../../src/proxy/resolve/static.ts';

class FakeCosted {
  readonly name: string;
  costValue: number;
  reads = 0;
  constructor(name: string, cost: number) {
    this.name = name;
    this.costValue = cost;
  }
  cost(): number {
    this.reads++;
    return this.costValue;
  }
}

/** A Random that replays `values` in order (and fails the test if asked for more). */
function scripted(values: number[]): Random {
  let i = 0;
  return {
    next: () => {
      const v = values[i++];
      if (v === undefined) throw new Error('scripted random ran out');
      return v;
    },
  };
}

test('no endpoints: null; one endpoint: that one, without drawing', () => {
  const source = { endpoints: [] as FakeCosted[] };
  const p2c = new P2c(source, scripted([]));
  assert.equal(p2c.pick(), null);
  const only = new FakeCosted('only', 5);
  source.endpoints = [only];
  assert.equal(p2c.pick(), only);
});

test('draws two distinct endpoints and takes the cheaper', () => {
  const a = new FakeCosted('a', 3);
  const b = new FakeCosted('b', 1);
  const c = new FakeCosted('c', 2);
  // First draw index 0 (a); second draw from the 2 others, index 0 -> b (skipping a).
  const p2c = new P2c({ endpoints: [a, b, c] }, scripted([0, 0, 0.99, 0.99, 0.5, 0.5]));
  assert.equal(p2c.pick(), b);
  assert.deepEqual([a.reads, b.reads, c.reads], [1, 1, 0]);
  // First draw index 2 (c); second index 1 of [a, b] -> b.
  assert.equal(p2c.pick(), b);
  // First draw index 1 (b); second draw index 1 -> skips b -> c. b is cheaper.
  assert.equal(p2c.pick(), b);
});

test('the two draws are always distinct endpoints', () => {
  const endpoints = Array.from({ length: 5 }, (_, i) => new FakeCosted(String(i), i));
  const p2c = new P2c({ endpoints }, seededRandom(7));
  for (let i = 0; i < 2_000; i++) {
    for (const e of endpoints) e.reads = 0;
    p2c.pick();
    assert.deepEqual(endpoints.map((e) => e.reads).sort(), [0, 0, 0, 1, 1]);
  }
});

test('with fixed costs the dearest is never picked and the cheapest wins every pair it is in', () => {
  const endpoints = [new FakeCosted('cheap', 1), new FakeCosted('mid', 2), new FakeCosted('dear', 3)];
  const p2c = new P2c({ endpoints }, seededRandom(11));
  const counts = new Map<string, number>();
  const runs = 30_000;
  for (let i = 0; i < runs; i++) {
    const name = p2c.pick()!.name;
    counts.set(name, (counts.get(name) ?? 0) + 1);
  }
  assert.equal(counts.get('dear'), undefined);
  const cheapShare = (counts.get('cheap') ?? 0) / runs;
  assert.ok(Math.abs(cheapShare - 2 / 3) < 0.02, `cheap share ${cheapShare}`);
});

test('a NaN cost never beats a real one; a Random returning 1 does not break the draw', () => {
  const broken = new FakeCosted('broken', Number.NaN);
  const fine = new FakeCosted('fine', 1e9);
  const p2c = new P2c({ endpoints: [broken, fine] }, scripted([0, 0, 0.5, 0.5, 1, 1]));
  assert.equal(p2c.pick(), fine); // broken drawn first
  assert.equal(p2c.pick(), fine); // fine drawn first
  assert.equal(p2c.pick(), fine); // random() === 1: clamped to the last index
});

test('picks see a replaced endpoints array at once', () => {
  const source = { endpoints: [new FakeCosted('a', 1), new FakeCosted('b', 1)] };
  const p2c = new P2c(source, seededRandom(3));
  const c = new FakeCosted('c', 1);
  const d = new FakeCosted('d', 1);
  source.endpoints = [c, d];
  for (let i = 0; i < 100; i++) assert.ok([c, d].includes(p2c.pick()!));
});

// ---- the balancer in virtual time ----

interface Simulation {
  /** Each pick with its virtual time. */
  readonly picks: { key: string; at: number }[];
  share(key: string, fromMs?: number, toMs?: number): number;
  count(key: string, fromMs?: number, toMs?: number): number;
}

/**
 * Open-loop traffic: one request every `intervalMs` of virtual time for `requests` requests, each
 * taking `latencyMs(key, now)` (with +-20% seeded jitter) on the endpoint P2c picks; completions
 * report their RTT to the endpoint's Peak-EWMA in time order.
 */
function simulate(options: {
  endpoints: { address: string; weight?: number }[];
  latencyMs: (key: string, nowMs: number) => number;
  requests: number;
  intervalMs: number;
  seed?: number;
}): Simulation {
  const clock = new FakeClock();
  const set = new EndpointSet({ clock, timers: clock });
  set.apply({
    kind: 'reset',
    endpoints: options.endpoints.map((e) => staticEndpoint(e.address, { weight: e.weight ?? 1 })),
  });
  const p2c = new P2c(set, seededRandom(options.seed ?? 1));
  const jitter = seededRandom((options.seed ?? 1) + 1000);
  const inflight: { doneAt: number; handle: PeakEwmaHandle; rtt: number }[] = [];
  const picks: { key: string; at: number }[] = [];

  const completeUntil = (until: number): void => {
    for (;;) {
      let next = -1;
      for (let i = 0; i < inflight.length; i++) {
        const doneAt = inflight[i]!.doneAt;
        if (doneAt <= until && (next === -1 || doneAt < inflight[next]!.doneAt)) next = i;
      }
      if (next === -1) break;
      const [done] = inflight.splice(next, 1);
      clock.advance(done!.doneAt - clock.now());
      done!.handle.complete(done!.rtt);
    }
    clock.advance(until - clock.now());
  };

  for (let i = 0; i < options.requests; i++) {
    completeUntil(i * options.intervalMs);
    const endpoint: EndpointState | null = p2c.pick();
    assert.ok(endpoint !== null);
    const rtt = options.latencyMs(endpoint.key, clock.now()) * (0.8 + 0.4 * jitter.next());
    inflight.push({ doneAt: clock.now() + rtt, handle: endpoint.start(), rtt });
    picks.push({ key: endpoint.key, at: clock.now() });
  }
  completeUntil(Number.MAX_SAFE_INTEGER);
  assert.ok(
    set.endpoints.every((e) => e.load.pending === 0),
    'every request completed',
  );

  const count = (key: string, from = 0, to = Infinity): number =>
    picks.filter((p) => p.key === key && p.at >= from && p.at < to).length;
  return {
    picks,
    count,
    share: (key, from = 0, to = Infinity) =>
      count(key, from, to) / picks.filter((p) => p.at >= from && p.at < to).length,
  };
}

const ADDRESSES = ['10.0.0.1:80', '10.0.0.2:80', '10.0.0.3:80', '10.0.0.4:80'];

test('a slow endpoint gets far less than its 1/N share', () => {
  const slow = ADDRESSES[2]!;
  const sim = simulate({
    endpoints: ADDRESSES.slice(0, 3).map((address) => ({ address })),
    latencyMs: (key) => (key === slow ? 100 : 10),
    requests: 10_000,
    intervalMs: 1, // 1000 req/s for 10 s: ~10 requests in flight
  });
  const slowShare = sim.share(slow);
  assert.ok(slowShare < 0.05, `slow endpoint share ${slowShare} (1/N = 0.33)`);
  for (const fast of ADDRESSES.slice(0, 2)) {
    assert.ok(sim.share(fast) > 0.4, `fast endpoint ${fast} share ${sim.share(fast)}`);
  }
});

test('an endpoint that recovers wins its traffic back after the decay', () => {
  const flaky = ADDRESSES[1]!;
  const recoversAt = 10_000; // decay is 10 s
  const sim = simulate({
    endpoints: ADDRESSES.slice(0, 3).map((address) => ({ address })),
    latencyMs: (key, now) => (key === flaky && now < recoversAt ? 200 : 10),
    requests: 60_000,
    intervalMs: 1,
  });
  const whileSlow = sim.share(flaky, 2_000, recoversAt);
  const longAfter = sim.share(flaky, 45_000, 60_000);
  assert.ok(whileSlow < 0.02, `share while slow ${whileSlow}`);
  assert.ok(longAfter > 0.28 && longAfter < 0.4, `share long after recovery ${longAfter}`);
  // And the recovery is gradual, not a cliff: the share climbs between the two.
  const between = sim.share(flaky, 25_000, 35_000);
  assert.ok(between > whileSlow && between < longAfter + 0.02, `share while recovering ${between}`);
});

test('no endpoint starves: a much slower endpoint is still tried now and then', () => {
  const slow = ADDRESSES[3]!;
  const sim = simulate({
    endpoints: ADDRESSES.map((address) => ({ address })),
    latencyMs: (key) => (key === slow ? 400 : 20),
    requests: 60_000,
    intervalMs: 1,
  });
  // After the first seconds (when every endpoint starts at the default estimate) the slow one
  // is still tried, in every 20 s stretch, yet rarely.
  for (const from of [5_000, 20_000, 40_000]) {
    const tries = sim.count(slow, from, from + 20_000);
    assert.ok(tries > 0, `slow endpoint never tried in [${from}, ${from + 20_000})`);
    assert.ok(tries < 200, `slow endpoint tried ${tries} times in [${from}, ${from + 20_000})`);
  }
  for (const address of ADDRESSES.slice(0, 3)) assert.ok(sim.share(address) > 0.3);
});

test('weights are respected roughly', () => {
  const sim = simulate({
    endpoints: [{ address: ADDRESSES[0]! }, { address: ADDRESSES[1]!, weight: 3 }],
    latencyMs: () => 10,
    requests: 20_000,
    intervalMs: 1,
  });
  const heavy = sim.share(ADDRESSES[1]!);
  assert.ok(Math.abs(heavy - 0.75) < 0.05, `weight 3 of 4 gets share ${heavy}`);

  const four = simulate({
    endpoints: ADDRESSES.map((address, i) => ({ address, weight: i === 3 ? 3 : 1 })),
    latencyMs: () => 10,
    requests: 20_000,
    intervalMs: 1,
    seed: 5,
  });
  const heavyShare = four.share(ADDRESSES[3]!);
  assert.ok(heavyShare > 0.35 && heavyShare < 0.6, `weight 3 of 6 gets share ${heavyShare}`);
  for (const light of ADDRESSES.slice(0, 3)) {
    assert.ok(heavyShare > 1.8 * four.share(light), `heavy ${heavyShare} vs light ${four.share(light)}`);
  }
});

test('equal endpoints share evenly', () => {
  const sim = simulate({
    endpoints: ADDRESSES.map((address) => ({ address })),
    latencyMs: () => 15,
    requests: 20_000,
    intervalMs: 0.5,
    seed: 9,
  });
  for (const address of ADDRESSES) {
    assert.ok(Math.abs(sim.share(address) - 0.25) < 0.03, `${address} share ${sim.share(address)}`);
  }
});

test('seededRandom replays the same sequence for a seed, in [0, 1), spread evenly', () => {
  const a = seededRandom(42);
  const b = seededRandom(42);
  const c = seededRandom(43);
  const buckets = new Array<number>(10).fill(0);
  let differs = false;
  for (let i = 0; i < 10_000; i++) {
    const x = a.next();
    assert.equal(x, b.next());
    if (x !== c.next()) differs = true;
    assert.ok(x >= 0 && x < 1);
    buckets[Math.floor(x * 10)]!++;
  }
  assert.ok(differs);
  for (const n of buckets) assert.ok(n > 900 && n < 1100, `bucket ${n}`);
});

test('an endpoint that joins a warm set gets requests at once, one request at a time', () => {
  // Seen as a flaky e2e test: a second instance of a service, added beside one answering in 1 ms,
  // started at the default 30 ms estimate and lost every comparison while requests came one at a
  // time, for ~30 s (the estimate decays with a 10 s time constant).
  const clock = new FakeClock();
  const set = new EndpointSet({ clock, timers: clock });
  set.apply({ kind: 'reset', endpoints: [staticEndpoint('127.0.0.1:1')] });
  const p2c = new P2c(set, seededRandom(3));
  const serve = (): string => {
    const picked = p2c.pick()!;
    const handle = picked.load.start();
    clock.advance(1);
    handle.complete(1); // every endpoint answers in 1 ms
    clock.advance(9);
    return picked.key;
  };
  for (let i = 0; i < 50; i++) serve();
  set.apply({ kind: 'add', endpoints: [staticEndpoint('127.0.0.1:2')] });
  const counts = new Map<string, number>();
  for (let i = 0; i < 100; i++) {
    const key = serve();
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  const newcomer = counts.get('127.0.0.1:2') ?? 0;
  assert.ok(newcomer >= 20 && newcomer <= 80, `the new endpoint's share of 100 picks: ${newcomer}`);
});
