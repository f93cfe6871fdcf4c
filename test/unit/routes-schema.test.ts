// Route validation (src/core/routes/schema.ts, parse.ts): the conformance manifests of the mesh
// tests are accepted, with the CRD's defaults filled in; each CRD rule refuses what it should,
// naming the field; and every problem of a document is reported at once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parse } from 'yaml';
import { validateRoute } from '../../src/core/routes/parse.ts';

const base = (spec: unknown, kind = 'HTTPRoute') => ({
  apiVersion: 'gateway.networking.k8s.io/v1',
  kind,
  metadata: { name: 'r', namespace: 'mesh' },
  spec: { parentRefs: [{ group: '', kind: 'Service', name: 'echo', port: 80 }], ...(spec as object) },
});

function problems(raw: unknown): string[] {
  return validateRoute(raw).issues.map((i) => `${i.path.join('.')}: ${i.message}`);
}

test('a conformance manifest is accepted with the CRD defaults', () => {
  const { route, issues } = validateRoute(
    parse(`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: mesh-split
  namespace: gateway-conformance-mesh
spec:
  parentRefs:
  - group: ""
    kind: Service
    name: echo
    port: 80
  rules:
  - matches:
    - path:
        type: Exact
        value: /v1
    backendRefs:
    - name: echo-v1
      port: 80
  - backendRefs:
    - name: echo-v2
      port: 80
      weight: 0
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{ name: X-Header-Set, value: set }]
    timeouts: { request: 10s, backendRequest: 2s }
    retry: { codes: [500, 503], attempts: 2, backoff: 100ms }
`),
  );
  assert.deepEqual(issues, []);
  assert.ok(route?.kind === 'HTTPRoute');
  const rules = route.spec.rules;
  assert.deepEqual(rules[1]?.matches, [
    { path: { type: 'PathPrefix', value: '/' }, headers: [], queryParams: [] },
  ]);
  assert.equal(rules[0]?.backendRefs[0]?.weight, 1);
  assert.equal(rules[1]?.backendRefs[0]?.weight, 0);
  assert.equal(rules[0]?.backendRefs[0]?.kind, 'Service');
  assert.deepEqual(rules[1]?.filters[0]?.requestHeaderModifier, {
    set: [{ name: 'X-Header-Set', value: 'set' }],
    add: [],
    remove: [],
  });
});

test('every problem of a document is reported, each with its field', () => {
  const got = problems(
    base({
      rules: [
        {
          matches: [{ path: { type: 'Exact', value: 'no-slash' }, method: 'FETCH' }],
          backendRefs: [{ name: 'b' }],
          timeouts: { request: '1.5s' },
          typo: 1,
        },
      ],
    }),
  );
  assert.deepEqual(got.sort(), [
    'spec.rules.0.backendRefs.0: port: required for a Service reference',
    'spec.rules.0.matches.0.method: expected one of GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE, PATCH',
    'spec.rules.0.matches.0.path.value: must be an absolute path starting with "/"',
    'spec.rules.0.timeouts.request: expected a duration such as 10s, 1m30s or 250ms (1-4 parts of up to 5 digits and h, m, s or ms), got "1.5s"',
    'spec.rules.0.typo: unknown field',
  ]);
});

test('a timeout written as a number says what a duration looks like', () => {
  const got = problems(
    base({ rules: [{ backendRefs: [{ name: 'b', port: 80 }], timeouts: { request: 10 } }] }),
  );
  assert.deepEqual(got, [
    'spec.rules.0.timeouts.request: expected a duration such as 10s, 1m30s or 250ms, a string (quoted in YAML if need be), got 10',
  ]);
});

test('the CRD rules: limits, filter combinations, paths, timeouts, regexes', () => {
  const rule = (r: object) => base({ rules: [r] });
  const backend = [{ name: 'b', port: 80 }];
  const cases: [unknown, string][] = [
    [
      base({ rules: Array.from({ length: 17 }, () => ({ backendRefs: backend })) }),
      'spec.rules: at most 16 items',
    ],
    [rule({ matches: Array.from({ length: 65 }, () => ({})) }), 'spec.rules.0.matches: at most 64 items'],
    [
      base({ rules: Array.from({ length: 3 }, () => ({ matches: Array.from({ length: 50 }, () => ({})) })) }),
      'spec.rules: at most 128 matches across all rules of a route',
    ],
    [
      rule({ matches: [{ headers: Array.from({ length: 17 }, (_, i) => ({ name: `h${i}`, value: 'v' })) }] }),
      'spec.rules.0.matches.0.headers: at most 16 items',
    ],
    [
      rule({ matches: [{ path: { value: '/a//b' } }] }),
      'spec.rules.0.matches.0.path.value: must not contain "//"',
    ],
    [
      rule({ matches: [{ path: { value: '/a/..' } }] }),
      'spec.rules.0.matches.0.path.value: must not end with "/." or "/.."',
    ],
    [
      rule({ matches: [{ path: { value: '/a b' } }] }),
      'spec.rules.0.matches.0.path.value: holds a character a path cannot hold (use %XX escapes)',
    ],
    [
      rule({ matches: [{ path: { type: 'RegularExpression', value: '(a)\\1' } }] }),
      'spec.rules.0.matches.0.path.value: backreferences (\\1, \\k<name>) are not supported (they need a backtracking engine)',
    ],
    [
      rule({ filters: [{ type: 'RequestRedirect', requestRedirect: {} }], backendRefs: backend }),
      'spec.rules.0: RequestRedirect filter must not be used together with backendRefs',
    ],
    [
      rule({
        filters: [
          { type: 'RequestRedirect', requestRedirect: {} },
          { type: 'URLRewrite', urlRewrite: {} },
        ],
      }),
      'spec.rules.0.filters: RequestRedirect and URLRewrite cannot be used together',
    ],
    [
      rule({
        matches: [{ path: { type: 'Exact', value: '/a' } }],
        filters: [
          {
            type: 'URLRewrite',
            urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/b' } },
          },
        ],
      }),
      'spec.rules.0: a path.replacePrefixMatch needs exactly one match, of type PathPrefix',
    ],
    [
      rule({ filters: [{ type: 'RequestHeaderModifier', responseHeaderModifier: {} }] }),
      'spec.rules.0.filters.0: the field named by type must be set, and no other filter field',
    ],
    [
      rule({ filters: [{ type: 'CORS', cors: {} }] }),
      'spec.rules.0.filters.0.type: CORS filters are not supported by Trellis',
    ],
    [
      rule({ timeouts: { request: '1s', backendRequest: '2s' } }),
      'spec.rules.0.timeouts: backendRequest timeout cannot be longer than request timeout',
    ],
    [rule({ retry: { codes: [200] } }), 'spec.rules.0.retry.codes.0: expected a status code 400..599'],
    [
      rule({ backendRefs: [{ name: 'b', port: 80, weight: -1 }] }),
      'spec.rules.0.backendRefs.0.weight: expected a weight 0..1000000',
    ],
    [
      rule({ sessionPersistence: {} }),
      'spec.rules.0.sessionPersistence: sessionPersistence is not supported by Trellis',
    ],
    [
      base({
        parentRefs: [
          { group: '', kind: 'Service', name: 'a' },
          { group: '', kind: 'Service', name: 'a' },
        ],
      }),
      'spec.parentRefs: two parentRefs name the same parent with the same sectionName and port',
    ],
    [
      base({ rules: [{ matches: [{ method: { service: 'pkg.Svc/x' } }] }] }, 'GRPCRoute'),
      'spec.rules.0.matches.0.method.service: expected a gRPC service name',
    ],
    [
      base({ rules: [{ matches: [{ method: { type: 'Exact' } }] }] }, 'GRPCRoute'),
      'spec.rules.0.matches.0.method: give service or method (or both)',
    ],
    [
      base({ rules: [{ filters: [{ type: 'URLRewrite' }] }] }, 'GRPCRoute'),
      'spec.rules.0.filters.0.type: expected one of RequestHeaderModifier, ResponseHeaderModifier, RequestMirror, ExtensionRef',
    ],
  ];
  for (const [raw, want] of cases) assert.deepEqual(problems(raw), [want]);
});

test('timeouts of 0s disable the check against backendRequest, and request and backendRequest may be equal', () => {
  assert.deepEqual(problems(base({ rules: [{ timeouts: { request: '0s', backendRequest: '5s' } }] })), []);
  assert.deepEqual(
    problems(base({ rules: [{ timeouts: { request: '5s', backendRequest: '5000ms' } }] })),
    [],
  );
});
