// The traffic annotations of Services and routes (src/core/routes/service-annotations.ts), the
// Service resource that carries them through `trellis apply`, and the route set that carries them
// to proxies (src/proxy/route/route-table.ts).
import assert from 'node:assert/strict';
import test from 'node:test';
import fc from 'fast-check';
import {
  NO_TRAFFIC_POLICY,
  parseGrpcCodes,
  parseHttpCodes,
  parseTrafficAnnotations,
  trafficAnnotations,
} from '../../src/core/routes/service-annotations.ts';
import { readResources } from '../../src/control/resources.ts';
import { compileRouteSet, routePolicyKey } from '../../src/proxy/route/route-table.ts';

test('no annotations: no policy; other prefixes are not ours', () => {
  assert.deepEqual(parseTrafficAnnotations({}), { policy: NO_TRAFFIC_POLICY, issues: [] });
  assert.deepEqual(trafficAnnotations({ 'linkerd.io/inject': 'enabled', 'retry.trellis.io/http': '5xx' }), {
    'retry.trellis.io/http': '5xx',
  });
});

test('retry, timeout, budget and failure accrual annotations', () => {
  const { policy, issues } = parseTrafficAnnotations({
    'retry.trellis.io/http': '5xx, 429',
    'retry.trellis.io/grpc': 'unavailable,DEADLINE_EXCEEDED',
    'retry.trellis.io/limit': '3',
    'retry.trellis.io/timeout': '300ms',
    'retry.trellis.io/budget-ratio': '0.5',
    'timeout.trellis.io/request': '2s',
    'balancer.trellis.io/failure-accrual': 'consecutive',
    'balancer.trellis.io/failure-accrual-max-failures': '3',
    'balancer.trellis.io/max-pending-requests': '100',
  });
  assert.deepEqual(issues, []);
  assert.equal(policy.retry?.httpCodes.length, 101);
  assert.equal(policy.retry?.httpCodes[0], 429);
  assert.deepEqual(policy.retry?.grpcCodes, [4, 14]);
  assert.equal(policy.retry?.retries, 3);
  assert.equal(policy.retry?.timeoutMs, 300);
  assert.equal(policy.budget.ratio, 0.5);
  assert.equal(policy.requestTimeoutMs, 2000);
  assert.deepEqual(policy.failureAccrual, {
    mode: 'consecutive',
    maxFailures: 3,
    minPenaltyMs: 1000,
    maxPenaltyMs: 60_000,
    jitterRatio: 0.5,
  });
  assert.equal(policy.maxPendingRequests, 100);
});

test('bad values and unknown names are issues naming the annotation', () => {
  const { issues } = parseTrafficAnnotations({
    'retry.trellis.io/http': '6xx',
    'retry.trellis.io/grpc': 'fine',
    'retry.trellis.io/limit': '99',
    'timeout.trellis.io/request': '10',
    'balancer.trellis.io/failure-accrual': 'sometimes',
    'balancer.trellis.io/max-pending': '1',
  });
  assert.deepEqual(
    issues.map((i) => i.annotation),
    [
      'balancer.trellis.io/max-pending',
      'retry.trellis.io/http',
      'retry.trellis.io/grpc',
      'retry.trellis.io/limit',
      'timeout.trellis.io/request',
      'balancer.trellis.io/failure-accrual',
    ],
  );
  assert.match(issues[1]!.message, /expected statuses such as 5xx/);
});

test('property: any annotation values give a policy and issues, never a throw; codes stay in range', () => {
  const names = [
    'retry.trellis.io/http',
    'retry.trellis.io/grpc',
    'retry.trellis.io/limit',
    'retry.trellis.io/timeout',
    'timeout.trellis.io/request',
    'balancer.trellis.io/failure-accrual',
    'balancer.trellis.io/failure-accrual-min-penalty',
    'balancer.trellis.io/failure-accrual-max-penalty',
    'balancer.trellis.io/max-connections',
  ];
  const value = fc.oneof(
    fc.string({ maxLength: 20 }),
    fc.constantFrom(
      '5xx',
      '500-504',
      'gateway-error',
      '1s',
      '0s',
      '100ms',
      '3',
      'consecutive',
      'unavailable',
    ),
  );
  fc.assert(
    fc.property(fc.dictionary(fc.constantFrom(...names), value), (annotations) => {
      const { policy } = parseTrafficAnnotations(annotations);
      for (const code of policy.retry?.httpCodes ?? []) assert.ok(code >= 100 && code <= 599);
      for (const code of policy.retry?.grpcCodes ?? []) assert.ok(code >= 1 && code <= 16);
      assert.ok((policy.retry?.retries ?? 0) <= 10);
      if (policy.failureAccrual !== null)
        assert.ok(policy.failureAccrual.maxPenaltyMs >= policy.failureAccrual.minPenaltyMs);
    }),
  );
  fc.assert(
    fc.property(fc.string({ maxLength: 30 }), (text) => {
      const http = parseHttpCodes(text);
      if (typeof http !== 'string') for (const c of http) assert.ok(c >= 100 && c <= 599);
      const grpc = parseGrpcCodes(text);
      if (typeof grpc !== 'string') for (const c of grpc) assert.ok(c >= 1 && c <= 16);
    }),
  );
});

test('trellis apply keeps a Service traffic annotations and refuses a bad one naming it', () => {
  const service = (annotation: string) =>
    [
      'apiVersion: v1',
      'kind: Service',
      'metadata:',
      '  name: web',
      '  annotations:',
      '    other.io/x: y',
      `    ${annotation}`,
      'spec:',
      '  ports: [{ port: 80 }]',
    ].join('\n');
  const ok = readResources(service('retry.trellis.io/http: 5xx'), 'svc.yaml');
  assert.deepEqual(ok.problems, []);
  const resource = ok.resources[0];
  assert.deepEqual(resource?.kind === 'Service' && resource.service.annotations, {
    'retry.trellis.io/http': '5xx',
  });
  const bad = readResources(service('retry.trellis.io/limit: many'), 'svc.yaml');
  assert.deepEqual(bad.resources, []);
  assert.match(
    bad.problems[0] ?? '',
    /^svc\.yaml:7:\d+: document 1: metadata\.annotations\.retry\.trellis\.io\/limit: expected a whole number/,
  );
});

test('the route set carries the Service policy, and route annotations laid over it', () => {
  const spec = JSON.stringify({ parentRefs: [{ group: '', kind: 'Service', name: 'echo' }], rules: [] });
  const route = { kind: 'HTTPRoute', namespace: 'mesh', name: 'r', createdMs: 0, specJson: spec };
  const compiled = compileRouteSet({
    routes: [{ ...route, annotations: { 'retry.trellis.io/limit': '4' } }],
    unresolvedBackends: [],
    serviceAnnotations: { 'retry.trellis.io/http': '503' },
    extensions: [],
  });
  assert.ok(compiled.ok);
  assert.deepEqual(compiled.table.policy?.retry, {
    httpCodes: [503],
    grpcCodes: [],
    retries: 1,
    timeoutMs: null,
  });
  assert.equal(compiled.table.routePolicies?.get(routePolicyKey(route))?.retry?.retries, 4);
  const refused = compileRouteSet({
    routes: [],
    unresolvedBackends: [],
    serviceAnnotations: { 'retry.trellis.io/http': 'sometimes' },
    extensions: [],
  });
  assert.equal(refused.ok, false);
  assert.match(!refused.ok ? refused.problem : '', /retry\.trellis\.io\/http/);
});

test('a value longer than 1024 characters is refused before it is read (a Service owner stalled every client proxy)', () => {
  // Kubernetes lets a Service carry 256 KiB of annotations, and a Service's annotations reach every
  // proxy that calls it. "100-599" 32,000 times took ~300 ms to parse (500 codes a part), once for
  // the Service and once more for each route with annotations, on every update of the route set.
  const hostile = Array(32_000).fill('100-599').join(',');
  for (const name of ['retry.trellis.io/http', 'retry.trellis.io/grpc', 'timeout.trellis.io/request']) {
    const { policy, issues } = parseTrafficAnnotations({ [name]: hostile });
    assert.deepEqual(
      issues.map((i) => [i.annotation, i.message]),
      [[name, 'at most 1024 characters (got 255999)']],
    );
    assert.equal(policy.retry, null);
  }
  // A long valid list is still read in full.
  const long = Array(100).fill('500-504').join(',');
  assert.equal(long.length, 799);
  assert.deepEqual(parseTrafficAnnotations({ 'retry.trellis.io/http': long }).issues, []);
  const spec = JSON.stringify({ parentRefs: [{ group: '', kind: 'Service', name: 'echo' }], rules: [] });
  const refused = compileRouteSet({
    routes: [
      { kind: 'HTTPRoute', namespace: 'mesh', name: 'r', createdMs: 0, specJson: spec, annotations: {} },
    ],
    unresolvedBackends: [],
    serviceAnnotations: { 'retry.trellis.io/http': hostile },
    extensions: [],
  });
  assert.equal(refused.ok, false);
  assert.match(!refused.ok ? refused.problem : '', /retry\.trellis\.io\/http: at most 1024 characters/);
});
