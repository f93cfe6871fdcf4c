// The status writer's leader election (src/control/leader-lease.ts) against the fake API server,
// with short timings: the fake serves Leases as the real one does (409 AlreadyExists, 409 Conflict
// on a stale PUT, MicroTimes only); of two electors exactly one leads, and the other takes over
// only after the Lease expired when the leader stops renewing, at once when it releases; a 409
// is not an error; a leader gives up when another holds the Lease, and when no renewal succeeded
// for renewDeadline; and the route source writes status only while it leads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger, type Logger } from '../../src/core/log.ts';
import { kubeConfigForServer } from '../../src/control/discovery/kubernetes.ts';
import { LeaseElector, type LeaseElectorOptions, type Leadership } from '../../src/control/leader-lease.ts';
import { KubernetesRouteSource } from '../../src/control/routes/kubernetes.ts';
import { FakeKubeServer, type KubeObject } from '../fake-kube/server.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

async function until<T>(what: string, check: () => T | null | false, limitMs = 10_000): Promise<T> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    const value = check();
    if (value !== null && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function fakeKube(t: { after(fn: () => Promise<void>): void }): Promise<FakeKubeServer> {
  const kube = new FakeKubeServer();
  await kube.start();
  t.after(() => kube.close());
  return kube;
}

/** A logger whose warn and error lines the test reads. */
function capture(): { log: Logger; problems: string[] } {
  const problems: string[] = [];
  return { log: createLogger({ level: 'warn', write: (line) => problems.push(line) }), problems };
}

/** An elector on lease trellis/status with short timings; stopped after the test. */
function elector(
  t: { after(fn: () => Promise<void>): void },
  kube: FakeKubeServer,
  identity: string,
  options: Partial<LeaseElectorOptions> = {},
): LeaseElector {
  const created = new LeaseElector({
    kubeConfig: kubeConfigForServer(kube.url),
    namespace: 'trellis',
    name: 'status',
    identity,
    log: createLogger({ level: 'off' }),
    leaseDurationMs: 1000,
    renewDeadlineMs: 600,
    retryPeriodMs: 100,
    ...options,
  });
  t.after(() => created.stop());
  return created;
}

const lease = (kube: FakeKubeServer): Json => kube.get('Lease', 'trellis', 'status') as Json;

test('the fake API server serves Leases as the real one: AlreadyExists, Conflict on a stale PUT, MicroTimes only', async (t) => {
  const kube = await fakeKube(t);
  const url = `${kube.url}/apis/coordination.k8s.io/v1/namespaces/trellis/leases`;
  const send = async (method: string, path: string, body: unknown) => {
    const answer = await fetch(`${url}${path}`, {
      method,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    return { status: answer.status, body: (await answer.json()) as Json };
  };
  const at = '2026-12-07T19:00:00.123456Z';
  const body = { metadata: { name: 'x' }, spec: { holderIdentity: 'a', renewTime: at, acquireTime: at } };
  const created = await send('POST', '', body);
  assert.equal(created.status, 201);
  assert.equal(created.body['kind'], 'Lease');
  const again = await send('POST', '', body);
  assert.deepEqual([again.status, again.body['reason']], [409, 'AlreadyExists']);
  const read = (await (await fetch(`${url}/x`)).json()) as Json;
  assert.equal(read.spec.holderIdentity, 'a');
  const next = { ...read, spec: { ...read.spec, holderIdentity: 'b' } };
  const replaced = await send('PUT', '/x', next);
  assert.equal(replaced.status, 200);
  assert.notEqual(replaced.body['metadata']['resourceVersion'], read.metadata.resourceVersion);
  // The same resourceVersion again: someone wrote in between.
  const stale = await send('PUT', '/x', { ...next, spec: { ...next.spec, holderIdentity: 'c' } });
  assert.deepEqual([stale.status, stale.body['reason']], [409, 'Conflict']);
  // A JavaScript Date's three fractional digits are not a MicroTime.
  const millis = { ...replaced.body, spec: { ...read.spec, renewTime: '2026-12-07T19:00:00.123Z' } };
  const refused = await send('PUT', '/x', millis);
  assert.deepEqual([refused.status, refused.body['reason']], [400, 'BadRequest']);
  assert.equal((kube.get('Lease', 'trellis', 'x') as Json)['spec']['holderIdentity'], 'b');
});

test('of two electors exactly one leads; the other takes over after the Lease expires when the leader stops renewing', async (t) => {
  const kube = await fakeKube(t);
  const a = capture();
  const b = capture();
  // Both start at once: both find no Lease, both create it, one gets 409 AlreadyExists.
  const first = elector(t, kube, 'a', { log: a.log, releaseOnStop: false });
  const second = elector(t, kube, 'b', { log: b.log, releaseOnStop: false });
  first.start();
  second.start();
  const leader = await until('a leader', () => (first.leading ? first : second.leading ? second : null));
  const other = leader === first ? second : first;
  assert.equal(kube.countRequests('create', 'Lease'), 2, 'both tried to create it');
  // Several renewals later the same one leads, and the other never did.
  const updates = kube.countRequests('update', 'Lease');
  await until('five renewals', () => kube.countRequests('update', 'Lease') >= updates + 5);
  assert.equal(leader.leading, true);
  assert.equal(other.leading, false);
  assert.equal(other.acquisitions, 0);
  const held = lease(kube)['spec'];
  assert.equal(held['holderIdentity'], leader.identity);
  assert.equal(held['leaseDurationSeconds'], 1);
  assert.equal(held['leaseTransitions'], 0);
  assert.match(held['renewTime'], /\.\d{6}Z$/);
  assert.deepEqual([...a.problems, ...b.problems], [], 'a 409 is not an error');

  // The leader stops without releasing (as if it crashed): the other waits for the expiry.
  const lastRenewal = String(held['renewTime']);
  const stoppedAt = Date.now();
  await leader.stop();
  assert.equal(leader.leading, false);
  await until('the takeover', () => other.leading);
  const waited = Date.now() - stoppedAt;
  assert.ok(waited >= 1000 - 300, `took over after ${waited} ms, before the Lease could expire`);
  const taken = lease(kube)['spec'];
  assert.equal(taken['holderIdentity'], other.identity);
  assert.equal(taken['leaseTransitions'], 1);
  assert.notEqual(taken['renewTime'], lastRenewal);
});

test('a leader that stops releases the Lease: the other takes over at once, not after the expiry', async (t) => {
  const kube = await fakeKube(t);
  // A long Lease: taking over by expiry would need 5 s.
  const timings = { leaseDurationMs: 5000, renewDeadlineMs: 1000, retryPeriodMs: 100 };
  const first = elector(t, kube, 'a', timings);
  first.start();
  await until('a leads', () => first.leading);
  const second = elector(t, kube, 'b', timings);
  second.start();
  await until('b tried', () => kube.countRequests('update', 'Lease') >= 3);
  assert.equal(second.leading, false);
  const stoppedAt = Date.now();
  await first.stop();
  const released = lease(kube)['spec'];
  if (released['holderIdentity'] !== 'b') {
    assert.equal(released['holderIdentity'], '');
    assert.equal(released['leaseDurationSeconds'], 1);
  }
  await until('b takes over', () => second.leading);
  const waited = Date.now() - stoppedAt;
  assert.ok(waited < 1500, `took ${waited} ms`);
  assert.equal(lease(kube)['spec']['holderIdentity'], 'b');
  assert.equal(lease(kube)['spec']['leaseTransitions'], 1);
});

test('a leader renews through a 409 when only its copy is stale, and stops at once when another holds the Lease', async (t) => {
  const kube = await fakeKube(t);
  const { log, problems } = capture();
  const only = elector(t, kube, 'a', { log });
  only.start();
  await until('a leads', () => only.leading);
  // Someone else touches the Lease (an annotation): the leader's next PUT is stale (409), it reads
  // again, still finds itself the holder and renews.
  const touched = structuredClone(lease(kube)) as KubeObject;
  touched.metadata.annotations = { touched: 'yes' };
  const rv = kube.apply(touched).metadata.resourceVersion;
  await until('a renewal after the touch', () =>
    Number(lease(kube)['metadata']['resourceVersion']) > Number(rv) ? true : null,
  );
  assert.equal(only.leading, true);
  assert.equal(only.acquisitions, 1);
  // It wrote from what it read again, not over it from its stale copy.
  assert.deepEqual(lease(kube)['metadata']['annotations'], { touched: 'yes' });
  assert.deepEqual(problems, [], 'a 409 is not an error');

  // Another holder appears (an operator, or a replica that saw the Lease expire): the next try
  // reads it and this one stops leading at once, long before its renewDeadline.
  const leading: boolean[] = [];
  only.onChange((now) => leading.push(now));
  const taken = structuredClone(lease(kube)) as KubeObject;
  (taken['spec'] as Json)['holderIdentity'] = 'intruder';
  const takenAt = Date.now();
  kube.apply(taken);
  await until('a stops leading', () => !only.leading);
  assert.ok(Date.now() - takenAt < 500, `took ${Date.now() - takenAt} ms`);
  assert.deepEqual(leading, [false]);
  assert.equal(lease(kube)['spec']['holderIdentity'], 'intruder');
});

test('a leader that cannot renew gives up after renewDeadline, not before', async (t) => {
  const kube = await fakeKube(t);
  const { log, problems } = capture();
  const only = elector(t, kube, 'a', { log, renewDeadlineMs: 800, retryPeriodMs: 100 });
  only.start();
  await until('a leads', () => only.leading);
  await until('a renewal', () => kube.countRequests('update', 'Lease') >= 1);
  const lastOk = Date.now();
  await kube.close();
  await until('a gives up', () => !only.leading, 5000);
  const held = Date.now() - lastOk;
  assert.ok(held >= 800 - 200 && held < 800 + 500, `gave up after ${held} ms`);
  assert.equal(
    problems.filter((p) => p.includes('trying for the status lease failed')).length,
    1,
    problems.join('\n'),
  );
});

test('the route source writes status only while it leads: nothing before, everything once on gaining, nothing after losing', async (t) => {
  const kube = await fakeKube(t);
  kube.applyYaml(`apiVersion: v1
kind: Service
metadata: { name: web, namespace: shop }
spec: { ports: [{ name: http, port: 80 }] }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: one, namespace: shop }
spec:
  parentRefs: [{ group: "", kind: Service, name: web, port: 80 }]
  rules: [{ backendRefs: [{ name: web, port: 80 }] }]
`);
  const listeners = new Set<(leading: boolean) => void>();
  const leadership: Leadership & { set(leading: boolean): void } = {
    leading: false,
    onChange: (listener) => (listeners.add(listener), () => listeners.delete(listener)),
    set(leading) {
      (this as { leading: boolean }).leading = leading;
      for (const l of listeners) l(leading);
    },
  };
  const source = new KubernetesRouteSource({
    kubeConfig: kubeConfigForServer(kube.url),
    log: createLogger({ level: 'off' }),
    retryDelayMs: 50,
    statusLeader: leadership,
  });
  t.after(() => source.close());
  await source.ready();
  const patches = () => kube.requests.filter((r) => r.verb === 'patch' && r.subresource === 'status').length;
  const metric = () => /^trellis_control_status_leader (\d)$/m.exec(source.metrics())?.[1];
  // A change while not leading: served, not written.
  kube.applyYaml(`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: two, namespace: shop }
spec:
  parentRefs: [{ group: "", kind: Service, name: web, port: 80 }]
  rules: [{ backendRefs: [{ name: web, port: 80 }] }]
`);
  await until('both routes served', () => source.snapshot().routes.length === 2);
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(patches(), 0);
  assert.equal(metric(), '0');

  leadership.set(true);
  await until('both statuses written', () => source.statusWrites.written === 2);
  assert.equal(patches(), 2);
  assert.equal(metric(), '1');

  // Losing: a change is not written; gaining again looks at every route once (the one changed).
  leadership.set(false);
  kube.applyYaml(`apiVersion: v1
kind: Service
metadata: { name: web, namespace: shop }
spec: { ports: [{ name: http, port: 81 }] }
`);
  await until('the Service change', () => source.snapshot().services.get('shop/web')?.[0]?.port === 81);
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(patches(), 2);
  leadership.set(true);
  await until('both statuses rewritten', () => patches() === 4);
  const accepted = (kube.get('HTTPRoute', 'shop', 'one') as Json)['status']['parents'][0]['conditions'][0];
  assert.equal(accepted['status'], 'False');
});
