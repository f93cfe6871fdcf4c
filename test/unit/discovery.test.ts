// Tests for outbound ServiceDiscovery over the StaticResolver: IP and single-label targets and
// unknown names go direct (synchronously, without a resolution for the former); a known service
// is balanced over its endpoints, synchronously once they are known; a service with no endpoints
// answers no-endpoints after failFastMs unless one arrives first; `avoid` picks another endpoint;
// RTTs fed through done() steer traffic; endpoints leaving do not break picks in flight; resolver
// errors (unreachable control plane, a rejected name) fall back to direct, except for mesh names,
// which wait for the control plane and then fail with control-plane-unreachable; endpoints stay
// known while the control plane is unreachable, however long idle; short names resolve in the
// proxy's namespace; a service asked for on a port it lacks fails with unknown-port, naming its
// ports; close() releases all.
// With resolveAddresses, IP targets are resolved too: balanced, meshed, or direct when discovery
// answers an address with itself; without it (explicit mode) they stay direct.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TrellisError } from '../../src/core/errors.ts';
import { silentLogger } from '../../src/core/log.ts';
import { ServiceDiscovery, type Pick, type PickOutcome } from '../../src/proxy/outbound/discovery.ts';
import type { Update } from '../../src/core/endpoints.ts';
import type { Resolution, Resolver } from '../../src/proxy/resolve/resolver.ts';
import { StaticResolver, staticEndpoint } from '../../src/proxy/resolve/static.ts';
import { targetKey } from '../../src/core/target.ts';

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
  assert.deepEqual(outcome, { error: 'no-endpoints', detail: 'no endpoints for web.default:8080' });
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

test('a name never resolved, and no mesh name, goes direct while the control plane is unreachable', async () => {
  const resolver = new FailingResolver({ code: 14 });
  const d = discoveryOver(resolver, 5000);
  const target = { host: 'web.shop', port: 8080 }; // a namespace not the proxy's: could be a DNS name
  const pick = await pickOf(d, target);
  assert.deepEqual(pick.address, target);
  assert.equal(resolver.cancelled, 0, 'the resolution keeps retrying');
  d.close();
});

test('a mesh name waits for the control plane, then fails with control-plane-unreachable, never direct', async () => {
  const d = discoveryOver(new FailingResolver({ code: 14 }), 50);
  // NAME.<own namespace> and names under .svc can only be services.
  for (const host of ['web.default', 'web.shop.svc', 'web.shop.svc.cluster.local']) {
    const started = Date.now();
    const outcome = await d.pick({ host, port: 8080 });
    assert.ok('error' in outcome, `${host}: not sent direct`);
    assert.equal(outcome.error, 'control-plane-unreachable', host);
    assert.match(outcome.detail, /the control plane is unreachable/);
    assert.ok(Date.now() - started >= 45, `${host}: waited the fail-fast time`);
  }
  d.close();
});

/** A resolver the test drives: `answer` or `fail` every open resolution of a target. */
class ScriptedResolver implements Resolver {
  readonly open = new Map<string, { onUpdate: (u: Update) => void; onError: (e: Error) => void }>();
  readonly asked: string[] = [];
  resolve(target: string, onUpdate: (update: Update) => void, onError: (error: Error) => void): Resolution {
    this.asked.push(target);
    this.open.set(target, { onUpdate, onError });
    return { cancel: () => void this.open.delete(target) };
  }
  answer(target: string, update: Update): void {
    this.open.get(target)?.onUpdate(update);
  }
  fail(target: string): void {
    const down = new TrellisError('TRELLIS_ERR_DESTINATION_UNAVAILABLE', 'down', { cause: { code: 14 } });
    this.open.get(target)?.onError(down);
  }
}

test('a mesh name gets its endpoints when the control plane is back within the fail-fast time', async () => {
  const resolver = new ScriptedResolver();
  const d = discoveryOver(resolver, 5000);
  const waiting = d.pick(WEB);
  assert.ok(waiting instanceof Promise);
  resolver.fail('web.default:8080');
  await new Promise((r) => setTimeout(r, 20));
  resolver.answer('web.default:8080', { kind: 'reset', endpoints: [staticEndpoint(A)] });
  assert.equal(asPick(await waiting).key, A);
  d.close();
});

test('a name the control plane answered is a mesh name from then on, even once released', async () => {
  const resolver = new ScriptedResolver();
  const d = new ServiceDiscovery({ resolver, failFastMs: 50, idleMs: 1, log: silentLogger });
  const api = { host: 'api.shop', port: 80 }; // not a mesh name by its shape
  const first = d.pick(api);
  resolver.answer('api.shop:80', { kind: 'reset', endpoints: [staticEndpoint(A)] });
  asPick(await first).done(1);
  // Idle, with a healthy resolution: released (the sweeper runs every second at most).
  await waitUntil(() => d.watchedTargets === 0, 3000);
  const again = d.pick(api);
  resolver.fail('api.shop:80');
  const outcome = await again;
  assert.ok('error' in outcome, 'not sent to DNS');
  assert.equal(outcome.error, 'control-plane-unreachable');
  // A name the control plane says does not exist is forgotten as a mesh name: direct again.
  d.close();
  const d2 = new ServiceDiscovery({ resolver, failFastMs: 50, idleMs: 0, log: silentLogger });
  const gone = d2.pick(api);
  resolver.answer('api.shop:80', { kind: 'does-not-exist' });
  assert.deepEqual(asPick(await gone).address, api);
  d2.close();
});

test('endpoints stay known while the control plane is unreachable, however long idle', async () => {
  const resolver = new ScriptedResolver();
  const d = new ServiceDiscovery({ resolver, failFastMs: 50, idleMs: 1, log: silentLogger });
  const first = d.pick(WEB);
  resolver.answer('web.default:8080', { kind: 'reset', endpoints: [staticEndpoint(A)] });
  asPick(await first).done(1);
  resolver.fail('web.default:8080');
  // A name asked for during the outage, never answered: nothing to keep.
  const other = { host: 'other.shop', port: 80 };
  const direct = d.pick(other);
  resolver.fail('other.shop:80');
  asPick(await direct);
  assert.equal(d.watchedTargets, 2);
  // Two sweeps (one a second at most) pass over the idle targets: the known one stays, with its
  // endpoint; the other goes, so that names asked for during an outage do not pile up.
  await new Promise((r) => setTimeout(r, 2200));
  assert.equal(d.watchedTargets, 1);
  const pick = d.pick(WEB);
  assert.ok(!(pick instanceof Promise), 'still known: no wait');
  assert.equal(asPick(pick).key, A);
  // The control plane answers again: the target is released once idle.
  resolver.answer('web.default:8080', { kind: 'reset', endpoints: [staticEndpoint(A)] });
  await waitUntil(() => d.watchedTargets === 0, 3000);
  d.close();
});

test('short names resolve in the proxy namespace; localhost stays direct', async () => {
  const resolver = new ScriptedResolver();
  const d = new ServiceDiscovery({
    resolver,
    failFastMs: 50,
    idleMs: 0,
    namespace: 'shop',
    log: silentLogger,
  });
  assert.equal(d.isLogical({ host: 'web', port: 80 }), true);
  assert.equal(d.isLogical({ host: 'localhost', port: 80 }), false);
  assert.equal(d.isLogical({ host: 'LOCALHOST.', port: 80 }), false);
  const pick = d.pick({ host: 'web', port: 80 });
  resolver.answer('web.shop:80', { kind: 'reset', endpoints: [staticEndpoint(A)] });
  assert.equal(asPick(await pick).key, A);
  const fqdn = d.pick({ host: 'web.shop.svc.cluster.local', port: 80 });
  resolver.answer('web.shop.svc.cluster.local:80', { kind: 'reset', endpoints: [staticEndpoint(B)] });
  assert.equal(asPick(await fqdn).key, B);
  assert.deepEqual(resolver.asked, ['web.shop:80', 'web.shop.svc.cluster.local:80']);
  d.close();
});

test('a service asked for on a port it does not have fails with unknown-port, naming its ports', async () => {
  const resolver = new ScriptedResolver();
  const d = discoveryOver(resolver, 50);
  const outcome = d.pick({ host: 'web', port: 81 });
  resolver.answer('web.default:81', { kind: 'does-not-exist', ports: [80, 9090] });
  assert.deepEqual(await outcome, {
    error: 'unknown-port',
    detail: 'web.default has no port 81; its ports: 80, 9090',
  });
  d.close();
});

async function waitUntil(condition: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

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

// ---- resolveAddresses: IP targets (transparent mode's original destinations) resolved too.

function addressDiscoveryOver(resolver: Resolver | null, failFastMs = 2000): ServiceDiscovery {
  return new ServiceDiscovery({ resolver, failFastMs, idleMs: 0, resolveAddresses: true, log: silentLogger });
}

const CLUSTER_IP = { host: '10.96.0.10', port: 80 };

test('resolveAddresses: an IP the control plane knows is balanced like a name; names are unchanged', async () => {
  const resolver = new StaticResolver({
    [targetKey(CLUSTER_IP)]: [staticEndpoint(A), staticEndpoint(B)],
    [targetKey(WEB)]: [staticEndpoint(C)],
  });
  const d = addressDiscoveryOver(resolver);
  assert.equal(d.isLogical(CLUSTER_IP), true);
  assert.equal(d.isLogical({ host: 'fd00::10', port: 80 }), true);
  assert.equal(d.isLogical({ host: 'localhost', port: 80 }), false, 'single-label names stay direct');
  // Loopback (where inbound traffic goes: the app) is nobody's Service or pod: always direct.
  for (const host of ['127.0.0.1', '127.9.9.9', '::1', '::ffff:127.0.0.1']) {
    const target = { host, port: 8080 };
    assert.equal(d.isLogical(target), false, host);
    assert.ok(!(d.pick(target) instanceof Promise), host);
  }
  const first = d.pick(CLUSTER_IP);
  assert.ok(first instanceof Promise, 'the first pick waits for the resolution');
  asPick(await first).done(1);
  const seen = new Set<string>();
  for (let i = 0; i < 100; i++) {
    const pick = asPick(d.pick(CLUSTER_IP) as PickOutcome);
    assert.ok(pick.endpoint !== null);
    seen.add(pick.key!);
    pick.done(1);
  }
  assert.deepEqual([...seen].sort(), [A, B]);
  assert.equal((await pickOf(d)).key, C);
  assert.equal(resolver.openResolutions, 2);
  d.close();
});

test('resolveAddresses: a meshed pod IP is picked with its identity; an address answered with itself goes direct', async () => {
  const pod = { host: '10.244.1.12', port: 8080 };
  const other = { host: '203.0.113.9', port: 443 };
  const v6 = { host: 'fd00::9', port: 443 };
  const identity = 'spiffe://cluster.local/ns/shop/sa/web';
  const resolver = new StaticResolver({
    [targetKey(pod)]: [staticEndpoint(pod, { meshed: true, identity, protocolHint: 'h2' })],
    [targetKey(other)]: [staticEndpoint(other)],
    [targetKey(v6)]: [staticEndpoint(v6)],
  });
  const d = addressDiscoveryOver(resolver);
  const meshed = await pickOf(d, pod);
  assert.deepEqual(meshed.address, pod);
  assert.equal(meshed.endpoint?.meshed, true);
  assert.equal(meshed.endpoint?.identity, identity);
  assert.equal(meshed.key, targetKey(pod));
  meshed.done();
  // The Destination API's answer for an address it does not know: the address, unmeshed. It goes
  // direct as before (no endpoint, no key: a failed connect is not retried on the same address).
  for (const target of [other, v6]) {
    const pick = await pickOf(d, target);
    assert.deepEqual(pick.address, target);
    assert.equal(pick.endpoint, null);
    assert.equal(pick.key, null);
    const again = d.pick(target);
    assert.ok(!(again instanceof Promise), 'synchronous once known');
    assert.equal(asPick(again).key, null);
  }
  // The pod loses its proxy: now it is only itself, direct too.
  resolver.set(targetKey(pod), [staticEndpoint(pod)]);
  await new Promise((r) => setImmediate(r));
  assert.equal(asPick(d.pick(pod) as PickOutcome).endpoint, null);
  d.close();
});

test('resolveAddresses: a ClusterIP without endpoints fails fast; unknown, rejected and unreachable go direct', async () => {
  const d = addressDiscoveryOver(new StaticResolver({ [targetKey(CLUSTER_IP)]: [] }), 30);
  assert.deepEqual(await d.pick(CLUSTER_IP), {
    error: 'no-endpoints',
    detail: 'no endpoints for 10.96.0.10:80',
  });
  // does-not-exist (the Destination API never answers an IP so, but a resolver might): direct.
  const unknown = { host: '10.9.9.9', port: 80 };
  assert.deepEqual((await pickOf(d, unknown)).address, unknown);
  d.close();
  for (const code of [14, 3]) {
    const resolver = new FailingResolver({ code });
    const failing = addressDiscoveryOver(resolver, 5000);
    const pick = await pickOf(failing, CLUSTER_IP);
    assert.deepEqual(pick.address, CLUSTER_IP, `code ${code}`);
    assert.equal(pick.key, null);
    assert.equal(
      resolver.cancelled,
      code === 3 ? 1 : 0,
      'rejected: no more watching; unreachable: keeps trying',
    );
    failing.close();
  }
});

test('without resolveAddresses (explicit mode), IP targets stay direct even with a resolver that knows them', () => {
  const resolver = new StaticResolver({ [targetKey(CLUSTER_IP)]: [staticEndpoint(A)] });
  for (const resolveAddresses of [undefined, false]) {
    const d = new ServiceDiscovery({
      resolver,
      failFastMs: 100,
      idleMs: 0,
      resolveAddresses,
      log: silentLogger,
    });
    assert.equal(d.isLogical(CLUSTER_IP), false);
    assert.equal(d.isLogical(WEB), true);
    const pick = asPick(d.pick(CLUSTER_IP) as PickOutcome);
    assert.deepEqual(pick.address, CLUSTER_IP);
    d.close();
  }
  assert.equal(resolver.openResolutions, 0);
  // And with no resolver at all, the option changes nothing.
  const none = new ServiceDiscovery({
    resolver: null,
    failFastMs: 100,
    idleMs: 0,
    resolveAddresses: true,
    log: silentLogger,
  });
  assert.equal(none.isLogical(CLUSTER_IP), false);
});
