// Tests for outbound ServiceDiscovery over the StaticResolver: IP and single-label targets and
// unknown names go direct (synchronously, without a resolution for the former); a known service
// is balanced over its endpoints, synchronously once they are known; a service with no endpoints
// answers no-endpoints after failFastMs unless one arrives first; `avoid` picks another endpoint;
// RTTs fed through done() steer traffic; endpoints leaving do not break picks in flight; resolver
// errors (unreachable control plane, a rejected name) fall back to direct; close() releases all.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TrellisError } from '../../src/core/errors.ts';
import { silentLogger } from '../../src/core/log.ts';
import { ServiceDiscovery, type Pick, type PickOutcome } from '../../src/proxy/outbound/discovery.ts';
import type { Resolution, Resolver, Update } from '../../src/proxy/resolve/resolver.ts';
import { StaticResolver, staticEndpoint } from '../../src/proxy/resolve/static.ts';
import { targetKey } from '../../src/proxy/transport/target.ts';

const WEB = { host: 'web.default', port: 8080 };
const A = '127.0.0.1:9001';
const B = '127.0.0.1:9002';
const C = '127.0.0.1:9003';

function discoveryOver(resolver: Resolver | null, failFastMs = 2000): ServiceDiscovery {
  return new ServiceDiscovery({ resolver, failFastMs, idleMs: 0, log: silentLogger });
}

function asPick(outcome: PickOutcome): Pick {
  assert.ok(!('error' in outcome), 'expected a pick, got no-endpoints');
  return outcome;
}

/** Awaits a pick whether it came synchronously or not. */
async function pickOf(d: ServiceDiscovery, target = WEB, avoid: string | null = null): Promise<Pick> {
  return asPick(await d.pick(target, avoid));
}

test('IP targets and single-label names go direct, synchronously, without resolving', () => {
  const resolver = new StaticResolver({ [targetKey(WEB)]: [staticEndpoint(A)] });
  const d = discoveryOver(resolver);
  for (const target of [
    { host: '10.1.2.3', port: 80 },
    { host: '::1', port: 443 },
    { host: 'localhost', port: 8080 },
  ]) {
    assert.equal(d.isLogical(target), false);
    const outcome = d.pick(target);
    assert.ok(!(outcome instanceof Promise));
    const pick = asPick(outcome);
    assert.deepEqual(pick.address, target);
    assert.equal(pick.key, null);
    assert.equal(pick.endpoint, null);
  }
  assert.equal(resolver.openResolutions, 0);
  d.close();
});

test('without a resolver every target is direct', () => {
  const d = discoveryOver(null);
  assert.equal(d.isLogical(WEB), false);
  const pick = asPick(d.pick(WEB) as PickOutcome);
  assert.deepEqual(pick.address, WEB);
});

test('a known service is balanced over its endpoints, synchronously once they are known', async () => {
  const resolver = new StaticResolver({ [targetKey(WEB)]: [A, B, C].map((a) => staticEndpoint(a)) });
  const d = discoveryOver(resolver);
  assert.equal(d.isLogical(WEB), true);
  const first = d.pick(WEB);
  assert.ok(first instanceof Promise, 'the first pick waits for the resolution');
  asPick(await first).done(1);
  const seen = new Set<string>();
  for (let i = 0; i < 300; i++) {
    const outcome = d.pick(WEB);
    assert.ok(!(outcome instanceof Promise), 'later picks are synchronous');
    const pick = asPick(outcome);
    assert.equal(pick.key, targetKey(pick.address));
    assert.ok(pick.endpoint !== null);
    seen.add(pick.key!);
    pick.done(1);
  }
  assert.deepEqual([...seen].sort(), [A, B, C]);
  assert.equal(resolver.openResolutions, 1, 'one resolution per target');
  d.close();
  assert.equal(resolver.openResolutions, 0);
});

test('a name the resolver does not know goes direct', async () => {
  const d = discoveryOver(new StaticResolver({}));
  const target = { host: 'example.com', port: 80 };
  const pick = await pickOf(d, target);
  assert.deepEqual(pick.address, target);
  assert.equal(pick.key, null);
  const again = d.pick(target);
  assert.ok(!(again instanceof Promise));
  d.close();
});

test('a service with no endpoints answers no-endpoints after failFastMs', async () => {
  const d = discoveryOver(new StaticResolver({ [targetKey(WEB)]: [] }), 30);
  const outcome = await d.pick(WEB);
  assert.deepEqual(outcome, { error: 'no-endpoints' });
  d.close();
});

test('a pick waiting for endpoints gets the first one that arrives', async () => {
  const resolver = new StaticResolver({ [targetKey(WEB)]: [] });
  const d = discoveryOver(resolver, 5000);
  const waiting = d.pick(WEB);
  assert.ok(waiting instanceof Promise);
  await new Promise((r) => setImmediate(r));
  resolver.set(targetKey(WEB), [staticEndpoint(B)]);
  const pick = asPick(await waiting);
  assert.equal(pick.key, B);
  d.close();
});

test('avoid picks another endpoint when there is one', async () => {
  const resolver = new StaticResolver({ [targetKey(WEB)]: [staticEndpoint(A), staticEndpoint(B)] });
  const d = discoveryOver(resolver);
  (await pickOf(d)).done(1);
  // Make A the cheaper one, so that plain P2C would prefer it.
  for (let i = 0; i < 10; i++) {
    const p = asPick(d.pick(WEB) as PickOutcome);
    p.done(p.key === A ? 0.1 : 50);
  }
  for (let i = 0; i < 50; i++) {
    const p = asPick(d.pick(WEB, A) as PickOutcome);
    assert.equal(p.key, B);
    p.done();
  }
  // With a single endpoint, avoid cannot be honoured: it is picked anyway.
  resolver.set(targetKey(WEB), [staticEndpoint(A)]);
  await new Promise((r) => setImmediate(r));
  assert.equal(asPick(d.pick(WEB, A) as PickOutcome).key, A);
  d.close();
});

test('round-trip times fed through done() steer traffic away from a slow endpoint', async () => {
  const resolver = new StaticResolver({ [targetKey(WEB)]: [staticEndpoint(A), staticEndpoint(B)] });
  const d = discoveryOver(resolver);
  (await pickOf(d)).done();
  const counts = new Map<string, number>();
  for (let i = 0; i < 200; i++) {
    const p = asPick(d.pick(WEB) as PickOutcome);
    counts.set(p.key!, (counts.get(p.key!) ?? 0) + 1);
    p.done(p.key === A ? 80 : 2);
  }
  assert.ok((counts.get(A) ?? 0) < 20, `slow endpoint got ${counts.get(A)} of 200`);
  d.close();
});

test('an endpoint that leaves is never picked again; picks in flight on it still complete', async () => {
  const resolver = new StaticResolver({ [targetKey(WEB)]: [staticEndpoint(A), staticEndpoint(B)] });
  const d = discoveryOver(resolver);
  (await pickOf(d)).done(1);
  const inFlight: Pick[] = [];
  for (let i = 0; i < 20; i++) inFlight.push(asPick(d.pick(WEB) as PickOutcome));
  assert.ok(inFlight.some((p) => p.key === A));
  resolver.set(targetKey(WEB), [staticEndpoint(B)]);
  await new Promise((r) => setImmediate(r));
  for (const p of inFlight) p.done(3);
  for (let i = 0; i < 50; i++) assert.equal(asPick(d.pick(WEB) as PickOutcome).key, B);
  d.close();
});

/** A resolver that only ever fails, with an error carrying `cause`. */
class FailingResolver implements Resolver {
  cancelled = 0;
  private readonly cause: unknown;
  constructor(cause: unknown) {
    this.cause = cause;
  }
  resolve(_t: string, _u: (update: Update) => void, onError: (error: Error) => void): Resolution {
    queueMicrotask(() =>
      onError(new TrellisError('TRELLIS_ERR_DESTINATION_UNAVAILABLE', 'down', { cause: this.cause })),
    );
    return { cancel: () => void this.cancelled++ };
  }
}

test('a name never resolved goes direct while the control plane is unreachable', async () => {
  const resolver = new FailingResolver({ code: 14 });
  const d = discoveryOver(resolver, 5000);
  const pick = await pickOf(d);
  assert.deepEqual(pick.address, WEB);
  assert.equal(resolver.cancelled, 0, 'the resolution keeps retrying');
  d.close();
});

test('a name the control plane rejects goes direct and stops being watched', async () => {
  const resolver = new FailingResolver({ code: 3 }); // INVALID_ARGUMENT
  const d = discoveryOver(resolver, 5000);
  const target = { host: 'api.example.co.uk', port: 443 };
  const pick = await pickOf(d, target);
  assert.deepEqual(pick.address, target);
  assert.equal(resolver.cancelled, 1);
  assert.ok(!(d.pick(target) instanceof Promise));
  d.close();
});

test('endpoints learnt before the resolver fails are kept', async () => {
  let fail: ((e: Error) => void) | null = null;
  const resolver: Resolver = {
    resolve(_t, onUpdate, onError) {
      queueMicrotask(() => onUpdate({ kind: 'reset', endpoints: [staticEndpoint(C)] }));
      fail = onError;
      return { cancel: () => {} };
    },
  };
  const d = discoveryOver(resolver);
  assert.equal((await pickOf(d)).key, C);
  fail!(new TrellisError('TRELLIS_ERR_DESTINATION_UNAVAILABLE', 'down', { cause: { code: 14 } }));
  assert.equal(asPick(d.pick(WEB) as PickOutcome).key, C);
  d.close();
});
