// The route matcher (src/core/routes/matcher.ts, select.ts): examples taken case by case from the
// Gateway API mesh conformance tests (conformance/tests/mesh/httproute-matching,
// httproute-query-param-matching, mesh-consumer-route, mesh-ports), and fast-check properties of
// the precedence order: exact > longer prefix > method > more headers > more query parameters >
// older route > namespace/name > rule order.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  compileRouteTable,
  matchRoute,
  NO_MATCHING_RULE,
  type RouteMatch,
  type RouteTable,
} from '../../src/core/routes/matcher.ts';
import { routesFor } from '../../src/core/routes/select.ts';
import type { RouteResource } from '../../src/core/routes/schema.ts';
import { request, routesFromYaml } from './routes-helpers.ts';

const everyBackend = () => true;
const PARENT = { namespace: 'mesh', name: 'echo', port: 80 };

function table(yaml: string): RouteTable {
  return compileRouteTable(routesFor(routesFromYaml(yaml), PARENT, 'mesh'), everyBackend);
}

/** The first backend's name of the matched rule, "404" for no matching rule, "none" without routes. */
function backendOf(
  t: RouteTable,
  target: string,
  headers: Record<string, string> = {},
  method = 'GET',
): string {
  const m = matchRoute(t, request(target, headers, method));
  if (m === null) return 'none';
  if (m === NO_MATCHING_RULE) return '404';
  return (m as RouteMatch).rule.backends.backends[0]?.name ?? 'no-backend';
}

const HEADER = `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: r, namespace: mesh }
spec:
  parentRefs: [{ group: "", kind: Service, name: echo, port: 80 }]
  rules:
`;

test('conformance MeshHTTPRouteMatching: element-wise prefixes and header matches', () => {
  const t = table(`${HEADER}
  - matches: [{ path: { type: PathPrefix, value: / } }, { headers: [{ name: version, value: one }] }]
    backendRefs: [{ name: echo-v1, port: 8080 }]
  - matches: [{ path: { type: PathPrefix, value: /v2 } }, { headers: [{ name: version, value: two }] }]
    backendRefs: [{ name: echo-v2, port: 8080 }]
`);
  const cases: [string, Record<string, string>, string][] = [
    ['/', {}, 'echo-v1'],
    ['/example', {}, 'echo-v1'],
    ['/', { Version: 'one' }, 'echo-v1'],
    ['/v2', {}, 'echo-v2'],
    ['/v2/example', {}, 'echo-v2'],
    ['/', { Version: 'two' }, 'echo-v2'],
    ['/v2/', {}, 'echo-v2'],
    ['/v2example', {}, 'echo-v1'],
    ['/foo/v2/example', {}, 'echo-v1'],
  ];
  for (const [path, headers, want] of cases)
    assert.equal(backendOf(t, path, headers), want, `${path} ${JSON.stringify(headers)}`);
});

test('conformance MeshHTTPRouteQueryParamMatching: every case, 404 when nothing matches', () => {
  const t = table(`${HEADER}
  - matches: [{ queryParams: [{ name: animal, value: whale }] }]
    backendRefs: [{ name: echo-v1, port: 8080 }]
  - matches: [{ queryParams: [{ name: animal, value: dolphin }] }]
    backendRefs: [{ name: echo-v2, port: 8080 }]
  - matches: [{ path: { type: PathPrefix, value: /path1 }, queryParams: [{ name: animal, value: whale }] }]
    backendRefs: [{ name: echo-v1, port: 8080 }]
  - matches: [{ headers: [{ name: version, value: one }], queryParams: [{ name: animal, value: whale }] }]
    backendRefs: [{ name: echo-v2, port: 8080 }]
  - matches:
    - { path: { type: PathPrefix, value: /path3 }, queryParams: [{ name: animal, value: shark }] }
    - path: { type: PathPrefix, value: /path4 }
      headers: [{ name: version, value: three }]
      queryParams: [{ name: animal, value: kraken }]
    backendRefs: [{ name: echo-v1, port: 8080 }]
  - matches: [{ path: { type: PathPrefix, value: /path5 } }]
    backendRefs: [{ name: echo-v1, port: 8080 }]
  - matches: [{ queryParams: [{ name: animal, value: hydra }] }]
    backendRefs: [{ name: echo-v2, port: 8080 }]
`);
  const cases: [string, Record<string, string>, string][] = [
    ['/?animal=whale', {}, 'echo-v1'],
    ['/?animal=dolphin', {}, 'echo-v2'],
    ['/?animal=whale&otherparam=irrelevant', {}, 'echo-v1'],
    ['/?animal=dolphin&color=yellow', {}, 'echo-v2'],
    ['/?color=blue', {}, '404'],
    ['/?animal=dog', {}, '404'],
    ['/?animal=whaledolphin', {}, '404'],
    ['/', {}, '404'],
    ['/path1?animal=whale', {}, 'echo-v1'],
    ['/?animal=whale', { version: 'one' }, 'echo-v2'],
    ['/path3?animal=shark', {}, 'echo-v1'],
    ['/path4?animal=kraken', { version: 'three' }, 'echo-v1'],
    ['/?animal=shark', {}, '404'],
    ['/path4?animal=kraken', {}, '404'],
    ['/path5?animal=hydra', {}, 'echo-v1'],
  ];
  for (const [path, headers, want] of cases)
    assert.equal(backendOf(t, path, headers), want, `${path} ${JSON.stringify(headers)}`);
});

test('exact paths, methods and regular expressions', () => {
  const t = table(`${HEADER}
  - matches: [{ path: { type: Exact, value: /abc } }]
    backendRefs: [{ name: exact, port: 80 }]
  - matches: [{ path: { type: RegularExpression, value: "/v[0-9]+/.*" } }]
    backendRefs: [{ name: regex, port: 80 }]
  - matches: [{ path: { value: /abc }, method: POST }]
    backendRefs: [{ name: post, port: 80 }]
  - matches: [{ headers: [{ type: RegularExpression, name: X-Id, value: "[0-9]+" }] }]
    backendRefs: [{ name: header-regex, port: 80 }]
`);
  assert.equal(backendOf(t, '/abc'), 'exact');
  assert.equal(backendOf(t, '/abc', {}, 'POST'), 'exact');
  assert.equal(backendOf(t, '/abc/', {}, 'POST'), 'post');
  assert.equal(backendOf(t, '/abcd', {}, 'POST'), '404');
  assert.equal(backendOf(t, '/v12/x'), 'regex');
  assert.equal(backendOf(t, '/x/v12/x'), '404', 'a regular expression matches the whole path');
  assert.equal(backendOf(t, '/q', { 'x-id': '123' }), 'header-regex');
  assert.equal(backendOf(t, '/q', { 'x-id': '12a' }), '404');
});

test('without routes the matcher says so (null), and GRPCRoutes do not apply to plain HTTP', () => {
  assert.equal(matchRoute(compileRouteTable([], everyBackend), request('/')), null);
  const grpcOnly = compileRouteTable(
    routesFromYaml(`apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: { name: g, namespace: mesh }
spec:
  parentRefs: [{ group: "", kind: Service, name: echo }]
  rules: [{ backendRefs: [{ name: v1, port: 80 }] }]
`),
    everyBackend,
  );
  assert.equal(matchRoute(grpcOnly, request('/')), null);
  const m = matchRoute(grpcOnly, { ...request('/pkg.Echo/Say'), grpc: true });
  assert.equal((m as RouteMatch).rule.backends.backends[0]?.name, 'v1');
});

test('GRPCRoute precedence: longer service, then longer method, then more headers', () => {
  const t = compileRouteTable(
    routesFromYaml(`apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: { name: g, namespace: mesh }
spec:
  parentRefs: [{ group: "", kind: Service, name: echo }]
  rules:
  - matches: [{ headers: [{ name: env, value: canary }] }]
    backendRefs: [{ name: any-canary, port: 80 }]
  - matches: [{ method: { method: Say } }]
    backendRefs: [{ name: any-say, port: 80 }]
  - matches: [{ method: { service: pkg.Echo } }]
    backendRefs: [{ name: echo, port: 80 }]
  - matches: [{ method: { service: pkg.Echo, method: Say } }]
    backendRefs: [{ name: echo-say, port: 80 }]
  - matches: [{ method: { type: RegularExpression, service: "pkg\\\\..*" } }]
    backendRefs: [{ name: regex, port: 80 }]
`),
    everyBackend,
  );
  const pick = (path: string, headers: Record<string, string> = {}) => {
    const m = matchRoute(t, { ...request(path, headers), grpc: true });
    return m === NO_MATCHING_RULE || m === null ? String(m?.toString()) : m.rule.backends.backends[0]?.name;
  };
  assert.equal(pick('/pkg.Echo/Say'), 'echo-say');
  assert.equal(pick('/pkg.Echo/Other'), 'echo');
  assert.equal(pick('/other.Svc/Say'), 'any-say');
  assert.equal(pick('/pkg.Other/Do'), 'regex');
  assert.equal(pick('/x.Y/Z', { env: 'canary' }), 'any-canary');
  assert.equal(pick('/x.Y/Z'), 'Symbol(no matching rule)');
});

test('conformance MeshConsumerRoute: a consumer route applies only to its namespace and replaces the producer routes there', () => {
  const routes = routesFromYaml(`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: consumer, namespace: consumer-ns }
spec:
  parentRefs: [{ group: "", kind: Service, name: echo-v1, namespace: mesh }]
  rules:
  - filters: [{ type: ResponseHeaderModifier, responseHeaderModifier: { set: [{ name: X-Header-Set, value: set }] } }]
    backendRefs: [{ name: echo-v1, namespace: mesh, port: 80 }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: producer, namespace: mesh }
spec:
  parentRefs: [{ group: "", kind: Service, name: echo-v1 }]
  rules: [{ backendRefs: [{ name: echo-v2, port: 80 }] }]
`);
  const parent = { namespace: 'mesh', name: 'echo-v1', port: 80 };
  assert.deepEqual(
    routesFor(routes, parent, 'consumer-ns').map((r) => r.name),
    ['consumer'],
  );
  assert.deepEqual(
    routesFor(routes, parent, 'mesh').map((r) => r.name),
    ['producer'],
  );
  assert.deepEqual(
    routesFor(routes, parent, 'elsewhere').map((r) => r.name),
    ['producer'],
  );
  const consumer = compileRouteTable(routesFor(routes, parent, 'consumer-ns'), everyBackend);
  const m = matchRoute(consumer, request('/')) as RouteMatch;
  assert.deepEqual(m.rule.responseHeaders?.set, [{ name: 'X-Header-Set', value: 'set' }]);
});

test('conformance MeshPorts: parentRef.port attaches a route to that port only', () => {
  const routes = routesFromYaml(`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: p, namespace: mesh }
spec:
  parentRefs: [{ group: "", kind: Service, name: echo, port: 80 }]
  rules: [{ backendRefs: [{ name: v1, port: 80 }] }]
`);
  assert.equal(routesFor(routes, { namespace: 'mesh', name: 'echo', port: 80 }, 'mesh').length, 1);
  assert.equal(routesFor(routes, { namespace: 'mesh', name: 'echo', port: 8080 }, 'mesh').length, 0);
  assert.equal(routesFor(routes, { namespace: 'other', name: 'echo', port: 80 }, 'other').length, 0);
});

// ---- precedence properties ----

interface Spec {
  readonly pathType: 'Exact' | 'PathPrefix';
  readonly path: string;
  readonly method: 'GET' | null;
  readonly headers: number; // how many of h0..h2 it requires
  readonly query: number; // how many of q0..q2 it requires
}

const segmentArb = fc.constantFrom('a', 'b', 'ab');
const pathArb = fc.array(segmentArb, { minLength: 0, maxLength: 3 }).map((s) => '/' + s.join('/'));
const specArb: fc.Arbitrary<Spec> = fc.record({
  pathType: fc.constantFrom('Exact', 'PathPrefix'),
  path: pathArb,
  method: fc.constantFrom('GET', null),
  headers: fc.integer({ min: 0, max: 2 }),
  query: fc.integer({ min: 0, max: 2 }),
});

function specRoute(spec: Spec, index: number, createdMs: number, name: string): RouteResource {
  const match = {
    path: { type: spec.pathType, value: spec.path },
    ...(spec.method ? { method: spec.method } : {}),
    headers: Array.from({ length: spec.headers }, (_, i) => ({ name: `h${i}`, value: 'x' })),
    queryParams: Array.from({ length: spec.query }, (_, i) => ({ name: `q${i}`, value: 'x' })),
  };
  return routesFromYaml(
    JSON.stringify({
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'HTTPRoute',
      metadata: { name, namespace: 'mesh', creationTimestamp: new Date(createdMs).toISOString() },
      spec: {
        parentRefs: [{ group: '', kind: 'Service', name: 'echo' }],
        rules: [{ matches: [match], backendRefs: [{ name: `b${index}`, port: 80 }] }],
      },
    }),
  )[0] as RouteResource;
}

/** The spec's order, written independently of the matcher: does `a` beat `b`? */
function better(
  a: Spec & { created: number; name: string },
  b: Spec & { created: number; name: string },
): number {
  const kind = (s: Spec) => (s.pathType === 'Exact' ? 0 : 1);
  return (
    kind(a) - kind(b) ||
    (a.pathType === 'PathPrefix' ? b.path.length - a.path.length : 0) ||
    (a.method ? 0 : 1) - (b.method ? 0 : 1) ||
    b.headers - a.headers ||
    b.query - a.query ||
    a.created - b.created ||
    (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)
  );
}

function specMatches(s: Spec, path: string): boolean {
  if (s.pathType === 'Exact') return path === s.path;
  return s.path === '/' || path === s.path || path.startsWith(s.path + '/');
}

test('property: the matched rule is the best matching one in the spec order (one route per rule)', () => {
  fc.assert(
    fc.property(
      fc.array(fc.record({ spec: specArb, created: fc.integer({ min: 0, max: 3 }) }), {
        minLength: 1,
        maxLength: 6,
      }),
      pathArb,
      fc.constantFrom('GET', 'POST'),
      (entries, path, method) => {
        const named = entries.map((e, i) => ({
          ...e.spec,
          created: e.created * 1000,
          name: `r${i}`,
          index: i,
        }));
        const routes = named.map((s) => specRoute(s, s.index, s.created, s.name));
        const t = compileRouteTable(routes, everyBackend);
        const req = request(`${path}?q0=x&q1=x`, { h0: 'x', h1: 'x' }, method);
        const got = matchRoute(t, req);
        const matching = named.filter(
          (s) => specMatches(s, path) && (s.method === null || s.method === method),
        );
        if (matching.length === 0) return got === NO_MATCHING_RULE;
        const want = matching.sort(better)[0];
        return (
          got !== null &&
          got !== NO_MATCHING_RULE &&
          got.rule.backends.backends[0]?.name === `b${want?.index}`
        );
      },
    ),
    { numRuns: 300 },
  );
});

test('property: a PathPrefix matches exactly the paths equal to it or continuing it with "/"', () => {
  fc.assert(
    fc.property(pathArb, pathArb, fc.boolean(), (prefix, path, slash) => {
      const value = slash && prefix !== '/' ? prefix + '/' : prefix;
      const t = table(`${HEADER}
  - matches: [{ path: { type: PathPrefix, value: "${value}" } }]
    backendRefs: [{ name: hit, port: 80 }]
`);
      const expected = prefix === '/' || path === prefix || path.startsWith(prefix + '/');
      return (backendOf(t, path) === 'hit') === expected;
    }),
    { numRuns: 200 },
  );
});

test('equal matches: the older route wins, then the one first by namespace/name, then the first rule', () => {
  const make = (name: string, created: number, backend: string, rules = 1) =>
    routesFromYaml(
      JSON.stringify({
        apiVersion: 'gateway.networking.k8s.io/v1',
        kind: 'HTTPRoute',
        metadata: { name, namespace: 'mesh', creationTimestamp: new Date(created).toISOString() },
        spec: {
          parentRefs: [{ group: '', kind: 'Service', name: 'echo' }],
          rules: Array.from({ length: rules }, (_, i) => ({
            backendRefs: [{ name: `${backend}${i}`, port: 80 }],
          })),
        },
      }),
    )[0] as RouteResource;
  const first = (routes: RouteResource[]) => backendOf(compileRouteTable(routes, everyBackend), '/x');
  assert.equal(first([make('b', 1000, 'new'), make('a', 2000, 'old')]), 'new0');
  assert.equal(first([make('b', 1000, 'b'), make('a', 1000, 'a')]), 'a0');
  assert.equal(first([make('a', 1000, 'a', 3)]), 'a0');
});

test('an empty matches list is the default match (every request), for HTTPRoute and GRPCRoute', () => {
  const http = table(`${HEADER}
  - matches: []
    backendRefs: [{ name: all, port: 80 }]
`);
  assert.equal(backendOf(http, '/anything'), 'all');
  const grpc = compileRouteTable(
    routesFromYaml(`apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: { name: g, namespace: mesh }
spec:
  parentRefs: [{ group: "", kind: Service, name: echo }]
  rules: [{ matches: [], backendRefs: [{ name: all, port: 80 }] }]
`),
    everyBackend,
  );
  const m = matchRoute(grpc, { ...request('/pkg.Echo/Say'), grpc: true });
  assert.equal(
    m !== null && m !== NO_MATCHING_RULE ? m.rule.backends.backends[0]?.name : String(m?.toString()),
    'all',
  );
});

test('an ExtensionRef (no extension kind is implemented) makes its rule fail, or its backend share get 500', () => {
  const t = table(`${HEADER}
  - matches: [{ path: { value: /rule } }]
    filters: [{ type: ExtensionRef, extensionRef: { group: trellis.dev, kind: Fault, name: f } }]
    backendRefs: [{ name: a, port: 80 }]
  - backendRefs:
    - { name: b, port: 80, filters: [{ type: ExtensionRef, extensionRef: { group: trellis.dev, kind: Fault, name: f } }] }
    - { name: c, port: 80 }
`);
  const rule = matchRoute(t, request('/rule')) as RouteMatch;
  assert.match(rule.rule.failure ?? '', /ExtensionRef trellis.dev\/Fault f is not implemented/);
  const other = matchRoute(t, request('/x')) as RouteMatch;
  assert.equal(other.rule.failure, null);
  assert.deepEqual(
    other.rule.backends.backends.map((b) => [b.name, b.resolved]),
    [
      ['b', false],
      ['c', true],
    ],
  );
});
