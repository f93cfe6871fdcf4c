// The status the control plane writes back into routes on Kubernetes
// (src/control/routes/kubernetes-status.ts) and the writer that sends it
// (src/control/routes/status-writer.ts): property tests over any prior status (other controllers'
// entries, junk) and any route object (valid, invalid, junk), then the writer's bounds: one patch
// per change, none while one is in flight or before the watch brings the written version, 409 and
// failures handled.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parse } from 'yaml';
import { silentLogger } from '../../src/core/log.ts';
import { validateRoute } from '../../src/core/routes/parse.ts';
import {
  routeParents,
  statusPatch,
  type ParentEntry,
  type RouteObject,
} from '../../src/control/routes/kubernetes-status.ts';
import { CONTROLLER_NAME, type ServiceIndex } from '../../src/control/routes/status.ts';
import { RouteStatusWriter, type StatusTarget } from '../../src/control/routes/status-writer.ts';
import { mergePatch } from '../fake-kube/server.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const services: ServiceIndex = new Map([
  ['shop/web', [{ port: 80, name: 'http' }]],
  ['shop/web-v2', [{ port: 8080 }]],
]);

const ROUTE = parse(`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: split, namespace: shop, resourceVersion: "7", generation: 3 }
spec:
  parentRefs: [{ group: "", kind: Service, name: web, port: 80 }, { group: "", kind: Service, name: web, port: 81 }]
  rules:
  - backendRefs: [{ name: web-v2, port: 8080 }]
`) as Json;

const parsedOf = (object: Json) => {
  const { resourceVersion: _rv, generation: _g, ...metadata } = object['metadata'] as Json;
  const { status: _s, ...rest } = object;
  return validateRoute({ ...rest, metadata });
};

const otherEntry = fc.record({
  parentRef: fc.record({ name: fc.string({ minLength: 1, maxLength: 8 }) }),
  controllerName: fc.constantFrom('example.com/gateway', 'other.io/mesh'),
  conditions: fc.array(fc.record({ type: fc.string(), status: fc.constantFrom('True', 'False') }), {
    maxLength: 2,
  }),
});
/** Whatever status.parents may hold: other controllers' entries, stale entries of ours, junk. */
const priorParents = fc.array(
  fc.oneof(
    otherEntry,
    fc.record({
      parentRef: fc.constantFrom({ group: '', kind: 'Service', name: 'web', port: 80 }, { name: 'gone' }),
      controllerName: fc.constant(CONTROLLER_NAME),
      conditions: fc.array(
        fc.record({
          type: fc.constantFrom('Accepted', 'ResolvedRefs'),
          status: fc.constantFrom('True', 'False'),
          lastTransitionTime: fc.constant('2026-01-01T00:00:00Z'),
        }),
        { maxLength: 2 },
      ),
    }),
    fc.jsonValue(),
  ),
  { maxLength: 6 },
);

test('property: after its own patch the status needs no other (no write storms); other entries stay as they are, in order', () => {
  fc.assert(
    fc.property(priorParents, fc.boolean(), (prior, valid) => {
      const object = structuredClone(ROUTE);
      if (!valid) object['spec']['rules'][0]['matches'] = [{ path: { value: 'no-slash' } }];
      object['status'] = { parents: prior };
      const desired = routeParents(object, parsedOf(object), services);
      const patch = statusPatch(object, desired, '2026-12-06T21:00:00Z');
      const after = patch === null ? object : (mergePatch(object, patch) as Json);
      after['metadata']['resourceVersion'] = '8';
      assert.equal(statusPatch(after, desired, '2026-12-06T22:00:00Z'), null);
      const isOurs = (e: unknown) =>
        typeof e === 'object' && e !== null && (e as Json)['controllerName'] === CONTROLLER_NAME;
      // As JSON on both sides (what the API server stores): -0 and 0 are one number there.
      assert.deepEqual(
        JSON.parse(JSON.stringify((after['status']['parents'] as unknown[]).filter((e) => !isOurs(e)))),
        JSON.parse(JSON.stringify(prior.filter((e) => !isOurs(e)))),
      );
      const ours = (after['status']['parents'] as Json[]).filter(isOurs);
      assert.equal(ours.length, 2, 'one entry per parentRef');
      for (const entry of ours)
        for (const c of entry['conditions'] as Json[]) assert.equal(c['observedGeneration'], 3);
      if (patch !== null) assert.equal((patch as Json)['metadata']['resourceVersion'], '7', 'a precondition');
    }),
    { numRuns: 300 },
  );
});

test('property: any route object (junk spec, junk parentRefs) gets entries or none, never a throw', () => {
  fc.assert(
    fc.property(fc.anything(), fc.anything(), (spec, status) => {
      const object = { metadata: { resourceVersion: '1' }, spec, status } as RouteObject;
      const parsed = validateRoute({ ...ROUTE, spec });
      const desired = routeParents(object, parsed, services);
      for (const entry of desired) assert.equal(typeof entry.parentRef['name'], 'string');
      statusPatch(object, desired, '2026-12-06T21:00:00Z');
    }),
    { numRuns: 300 },
  );
});

test('the conditions: reasons of status.ts; lastTransitionTime kept while the status holds, new when it flips', () => {
  const object = structuredClone(ROUTE);
  const first = statusPatch(object, routeParents(object, parsedOf(object), services), 'T1') as Json;
  const [port80, port81] = first['status']['parents'] as Json[];
  assert.deepEqual(
    (port81!['conditions'] as Json[]).map((c) => [
      c['type'],
      c['status'],
      c['reason'],
      c['lastTransitionTime'],
    ]),
    [
      ['Accepted', 'False', 'NoMatchingParent', 'T1'],
      ['ResolvedRefs', 'True', 'ResolvedRefs', 'T1'],
    ],
  );
  assert.equal(port80!['conditions'][0]['status'], 'True');
  // The Service gets port 81 and loses the backend: Accepted flips, ResolvedRefs flips.
  const written = mergePatch(object, first) as Json;
  written['metadata']['generation'] = 4;
  const changed = new Map([['shop/web', [{ port: 80 }, { port: 81 }]]]);
  const second = statusPatch(written, routeParents(written, parsedOf(written), changed), 'T2') as Json;
  const again = (second['status']['parents'] as Json[])[1]!['conditions'] as Json[];
  assert.deepEqual(
    again.map((c) => [c['type'], c['status'], c['reason'], c['lastTransitionTime'], c['observedGeneration']]),
    [
      ['Accepted', 'True', 'Accepted', 'T2', 4],
      ['ResolvedRefs', 'False', 'BackendNotFound', 'T2', 4],
    ],
  );
  // Only the message or generation changes: the transition time stays.
  const third = statusPatch(
    mergePatch(written, second) as Json,
    routeParents(written, parsedOf(written), new Map([...changed, ['shop/web-v2', [{ port: 1 }]]])),
    'T3',
  ) as Json;
  const resolved = ((third['status']['parents'] as Json[])[1]!['conditions'] as Json[])[1]!;
  assert.deepEqual([resolved['reason'], resolved['lastTransitionTime']], ['BackendNotFound', 'T2']);
  assert.match(resolved['message'], /web-v2 has no port 8080/);
});

test('an invalid route: Accepted=False UnsupportedValue naming the field, for each readable parentRef', () => {
  const object = structuredClone(ROUTE);
  object['spec']['rules'][0]['backendRefs'][0]['weight'] = -1;
  object['spec']['parentRefs'].push({ name: 42 }, 'junk', {
    name: 'db',
    port: 'x',
    kind: 'Service',
    group: '',
  });
  const desired = routeParents(object, parsedOf(object), services);
  assert.deepEqual(
    desired.map((d) => d.parentRef),
    [
      { group: '', kind: 'Service', name: 'web', port: 80 },
      { group: '', kind: 'Service', name: 'web', port: 81 },
      { group: '', kind: 'Service', name: 'db' },
    ],
  );
  for (const d of desired) {
    assert.deepEqual(
      d.conditions.map((c) => [c.type, c.status, c.reason]),
      [['Accepted', 'False', 'UnsupportedValue']],
    );
    assert.match(d.conditions[0]!.message, /^invalid route, not applied: spec\.parentRefs\.2\.name: /);
  }
});

// ---- The writer.

function target(version: string, desired: ParentEntry[], status: unknown = undefined): StatusTarget {
  return {
    key: 'uid-1',
    kind: 'HTTPRoute',
    namespace: 'shop',
    name: 'split',
    object: { metadata: { resourceVersion: version, generation: 1 }, status },
    desired,
  };
}

const ENTRY: ParentEntry = {
  parentRef: { name: 'web' },
  controllerName: CONTROLLER_NAME,
  conditions: [{ type: 'Accepted', status: 'True', reason: 'Accepted', message: 'ok' }],
};

test("a Gateway parent is another controller's: no entry for it, and a route attached only to Gateways is never written", () => {
  const object = structuredClone(ROUTE);
  object['spec']['parentRefs'] = [
    { name: 'edge' },
    { group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'edge2' },
  ];
  object['status'] = {
    parents: [{ parentRef: { name: 'edge' }, controllerName: 'example.com/gw', conditions: [] }],
  };
  const desired = routeParents(object, parsedOf(object), services);
  assert.deepEqual(desired, []);
  assert.equal(statusPatch(object, desired, 'T'), null);
  // With a Service beside it: only the Service's entry.
  object['spec']['parentRefs'].push({ group: '', kind: 'Service', name: 'web' });
  assert.deepEqual(
    routeParents(object, parsedOf(object), services).map((d) => d.parentRef),
    [{ group: '', kind: 'Service', name: 'web' }],
  );
});

test('the writer: one patch per change; none in flight twice, none before the watch brings the written version', async () => {
  const sent: Record<string, unknown>[] = [];
  let answer: (error?: Error & { code?: number }) => void = () => {};
  const writer = new RouteStatusWriter({
    log: silentLogger,
    retryDelayMs: 10,
    patch: (_t, body) => {
      sent.push(body);
      return new Promise<void>((resolve, reject) => (answer = (e) => (e ? reject(e) : resolve())));
    },
  });
  const retry = () => {};
  writer.sync([target('1', [ENTRY])], retry);
  writer.sync([target('1', [ENTRY])], retry);
  writer.sync([target('1', [ENTRY])], retry);
  assert.equal(sent.length, 1, 'one in flight');
  answer();
  await new Promise((r) => setImmediate(r));
  assert.equal(sent.length, 1, 'the stale copy is not patched again');
  writer.sync([target('1', [ENTRY])], retry);
  assert.equal(sent.length, 1);
  // The watch brings the written version: nothing to do.
  const written = mergePatch({ metadata: { resourceVersion: '1' } }, sent[0]) as Json;
  writer.sync([target('2', [ENTRY], written['status'])], retry);
  assert.equal(sent.length, 1);
  assert.deepEqual(writer.counts, { written: 1, conflicts: 0, failed: 0 });

  // A change: one patch; a 409 waits for the watch; a failure is retried after the delay.
  const flipped = { ...ENTRY, conditions: [{ ...ENTRY.conditions[0]!, status: 'False' as const }] };
  writer.sync([target('2', [flipped], written['status'])], retry);
  assert.equal(sent.length, 2);
  answer(Object.assign(new Error('conflict'), { code: 409 }));
  await new Promise((r) => setImmediate(r));
  writer.sync([target('2', [flipped], written['status'])], retry);
  assert.equal(sent.length, 2, 'after a 409 the copy is stale too');
  let retried = 0;
  writer.sync([target('3', [flipped], written['status'])], () => retried++);
  assert.equal(sent.length, 3);
  answer(Object.assign(new Error('unavailable'), { code: 503 }));
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(retried, 1, 'looked at again after the backoff');
  writer.sync([target('3', [flipped], written['status'])], retry);
  assert.equal(sent.length, 4, 'a failed patch is sent again');
  answer();
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(writer.counts, { written: 2, conflicts: 1, failed: 1 });
  writer.close();
});
