// Tests for the resources `trellis apply` accepts (src/control/resources.ts): the translation of
// Kubernetes-shaped Services into state-folder service files, errors that name the source, the line
// and column, the document and the field, every error of a file at once, and a property: no input
// makes parseResources throw anything but a ConfigError. The policy kinds (Server,
// AuthorizationPolicy): normalized output, and errors that name the field and say what is wrong
// with a SPIFFE pattern, a CIDR, a route path. References to Servers and workloads no one defines.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { ConfigError } from '../../src/core/errors.ts';
import {
  danglingReferences,
  parseResources,
  readResources,
  resourceName,
} from '../../src/control/resources.ts';

/** An error message without its line and column ("f.yaml:3:7: document 1: x" -> "f.yaml: document 1: x"). */
const withoutPosition = (message: string): string => message.replace(/^([\w.]+):\d+:\d+:/gm, '$1:');

const WEB = `
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
  labels: { app: web }
spec:
  type: ClusterIP
  selector: { app: web }
  ports:
    - name: http
      port: 80
      targetPort: http
      protocol: TCP
      appProtocol: http
    - name: grpc
      port: 9090
      appProtocol: kubernetes.io/h2c
    - port: 5432
      targetPort: 15432
      appProtocol: opaque
    - port: 7000
`;

function errorOf(text: string): ConfigError {
  try {
    parseResources(text, 'services.yaml');
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`);
    return error;
  }
  assert.fail('expected the file to be rejected');
}

test('a Kubernetes-shaped Service becomes a service file of the state folder', () => {
  const resources = parseResources(WEB, 'services.yaml');
  assert.equal(resources.length, 1);
  const [web] = resources;
  assert.equal(resourceName(web!), 'service/web.shop');
  assert.ok(web?.kind === 'Service');
  assert.deepEqual(web.service, {
    ports: [
      { port: 80, name: 'http', targetPort: 'http', protocol: 'http1' },
      { port: 9090, name: 'grpc', protocol: 'h2' },
      { port: 5432, targetPort: 15432, protocol: 'opaque' },
      { port: 7000, protocol: 'auto' },
    ],
  });
});

test('documents are counted from 1, empty ones are skipped, and the namespace defaults', () => {
  const text = `---\n${WEB}---\n---\napiVersion: v1\nkind: Service\nmetadata: {name: db}\nspec: {ports: [{port: 5432}]}\n`;
  const resources = parseResources(text, 'services.yaml');
  assert.deepEqual(resources.map(resourceName), ['service/web.shop', 'service/db.default']);
  assert.deepEqual(parseResources('', 'empty.yaml'), []);
  assert.deepEqual(parseResources('# nothing\n---\n', 'empty.yaml'), []);
});

test('errors name the source, the document and the field', () => {
  const db = (ports: string) =>
    `apiVersion: v1\nkind: Service\nmetadata: {name: db}\nspec: {ports: ${ports}}\n`;
  const cases: [string, string][] = [
    [
      `${WEB}---\n${db('[{port: 0}]')}`,
      'services.yaml: document 2: spec.ports.0.port: expected a port 1..65535',
    ],
    [
      db('[{port: 80}, {port: 70000}]'),
      'services.yaml: document 1: spec.ports.1.port: expected a port 1..65535',
    ],
    [db('[{port: "80"}]'), 'services.yaml: document 1: spec.ports.0.port: expected a port 1..65535'],
    [db('[]'), 'services.yaml: document 1: spec.ports: needs at least one port'],
    [
      db('[{port: 80}, {port: 80}]'),
      'services.yaml: document 1: spec.ports: two ports with the same port number',
    ],
    [db('[{port: 80, portt: 1}]'), 'services.yaml: document 1: spec.ports.0.portt: unknown field'],
    [
      db('[{port: 80, protocol: UDP}]'),
      'services.yaml: document 1: spec.ports.0.protocol: only TCP is supported',
    ],
    [
      db('[{port: 80, targetPort: Web_1}]'),
      'services.yaml: document 1: spec.ports.0.targetPort: expected a DNS label (a-z, 0-9, -; at most 63)',
    ],
    [
      db('[{port: 80, targetPort: true}]'),
      'services.yaml: document 1: spec.ports.0.targetPort: expected a port number or a port name',
    ],
    [
      db('[{port: 80, appProtocol: mqtt}]'),
      'services.yaml: document 1: spec.ports.0.appProtocol: expected one of http, kubernetes.io/h2c, opaque, trellis.dev/opaque',
    ],
    [
      'apiVersion: v1\nkind: Service\nmetadata: {name: Web}\nspec: {ports: [{port: 1}]}',
      'services.yaml: document 1: metadata.name: expected a DNS label (a-z, 0-9, -; at most 63)',
    ],
    ['apiVersion: v1\nkind: Service\nmetadata: {name: web}\n', 'services.yaml: document 1: spec: required'],
    [
      'apiVersion: apps/v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 1}]}',
      'services.yaml: document 1: apiVersion: expected v1',
    ],
    [
      'apiVersion: v1\nkind: Pod\n',
      'services.yaml: document 1: kind: expected one of Service, Server, AuthorizationPolicy, HTTPRoute, GRPCRoute, HTTPFault, HTTPLocalRateLimitPolicy, XBackendTrafficPolicy, got "Pod"',
    ],
    ['- 1\n- 2\n', 'services.yaml: document 1: expected an object with apiVersion, kind, metadata and spec'],
    ['a: 1\na: 2\n', 'services.yaml: document 1: not valid YAML (Map keys must be unique)'],
  ];
  for (const [text, message] of cases) assert.equal(withoutPosition(errorOf(text).message), message, text);
  assert.equal(errorOf(db('[{port: 0}]')).code, 'TRELLIS_ERR_CONFIG');
  assert.match(
    errorOf(`${WEB}---\nkind: [\n`).message,
    /^services\.yaml:\d+:\d+: document 2: not valid YAML \(/,
  );
});

test('property: random documents are accepted or rejected with a ConfigError, never anything else', () => {
  const scalar = fc.oneof(
    fc.constantFrom('v1', 'Service', 'web', 'default', 'TCP', 'http', 'opaque', 'kubernetes.io/h2c', ''),
    fc.integer({ min: -2, max: 70_000 }),
    fc.boolean(),
    fc.constant(null),
    fc.string({ maxLength: 8 }),
  );
  const key = fc.constantFrom(
    'apiVersion',
    'kind',
    'metadata',
    'spec',
    'name',
    'namespace',
    'ports',
    'port',
    'targetPort',
    'appProtocol',
    'protocol',
    'labels',
    'selector',
    'type',
    'other',
    '__proto__',
    'constructor',
  );
  const { value } = fc.letrec((tie) => ({
    value: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      scalar,
      fc.array(tie('value'), { maxLength: 3 }),
      fc.dictionary(key, tie('value'), { maxKeys: 5 }),
    ),
  }));
  const serviceLike = fc.record({
    apiVersion: fc.constantFrom('v1', 'v2'),
    kind: fc.constantFrom('Service', 'Pod'),
    metadata: fc.dictionary(key, value, { maxKeys: 3 }),
    spec: fc.record({ ports: fc.array(fc.dictionary(key, value, { maxKeys: 4 }), { maxLength: 3 }) }),
  });
  const documents = fc.array(fc.oneof(value, serviceLike), { maxLength: 3 });
  const texts = fc.oneof(
    documents.map((docs) => docs.map((d) => stringify(d)).join('---\n')),
    fc.string({ maxLength: 60 }),
    fc.string({
      unit: fc.constantFrom('-', ':', ' ', '\n', '[', '{', '&a', '*a', '!!', 'x', '#', '"', "'"),
      maxLength: 30,
    }),
  );
  fc.assert(
    fc.property(texts, (text) => {
      try {
        for (const resource of parseResources(text, 'f.yaml')) {
          assert.match(resource.name, /^[a-z0-9-]+$/);
          assert.ok(resource.kind === 'Service' && resource.service.ports.length > 0);
        }
      } catch (error) {
        if (!(error instanceof ConfigError)) throw error;
        assert.match(error.message, /^f\.yaml:\d+:\d+: document \d+: /);
      }
    }),
    { numRuns: 500 },
  );
});

const POLICY = `
apiVersion: policy.trellis.dev/v1alpha1
kind: Server
metadata: { name: web-http, namespace: shop }
spec:
  podSelector: { matchLabels: { app: web } }
  port: http
---
apiVersion: policy.trellis.dev/v1alpha1
kind: AuthorizationPolicy
metadata: { name: web-public, namespace: shop }
spec:
  server: web-http
  from:
    identities: ["spiffe://cluster.local/ns/*/sa/web", "*"]
    namespaces: [ops]
    networks: [198.18.0.0/15, "::1/128", 10.1.2.3]
  routes:
    - path: /api/*
      methods: [get, POST]
    - path: /healthz
`;

test('Server and AuthorizationPolicy documents are validated and normalized', () => {
  const resources = parseResources(POLICY, 'policy.yaml');
  assert.deepEqual(resources.map(resourceName), [
    'server/web-http.shop',
    'authorizationpolicy/web-public.shop',
  ]);
  assert.deepEqual(resources[0], {
    kind: 'Server',
    namespace: 'shop',
    name: 'web-http',
    spec: { podSelector: { matchLabels: { app: 'web' } }, port: 'http', protocol: 'detect' },
  });
  assert.deepEqual(resources[1], {
    kind: 'AuthorizationPolicy',
    namespace: 'shop',
    name: 'web-public',
    spec: {
      server: 'web-http',
      from: {
        identities: ['spiffe://cluster.local/ns/*/sa/web', '*'],
        namespaces: ['ops'],
        networks: ['198.18.0.0/15', '::1/128', '10.1.2.3'],
        unauthenticated: false,
      },
      routes: [
        { path: '/api/*', methods: ['GET', 'POST'] },
        { path: '/healthz', methods: [] },
      ],
    },
  });
  const [open] = parseResources(
    'apiVersion: policy.trellis.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec: {server: s, from: {unauthenticated: true}}\n',
    'p.yaml',
  );
  assert.deepEqual(open, {
    kind: 'AuthorizationPolicy',
    namespace: 'default',
    name: 'a',
    spec: {
      server: 's',
      from: { identities: [], namespaces: [], networks: [], unauthenticated: true },
      routes: [],
    },
  });
});

test('policy errors name the document, the field, and what is wrong with the value', () => {
  const server = (spec: string) =>
    `apiVersion: policy.trellis.dev/v1alpha1\nkind: Server\nmetadata: {name: s}\nspec: ${spec}\n`;
  const authz = (spec: string) =>
    `apiVersion: policy.trellis.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec: ${spec}\n`;
  const from = (f: string) => authz(`{server: s, from: ${f}}`);
  const cases: [string, string][] = [
    [server('{port: 80}'), 'p.yaml: document 1: spec: needs exactly one of workload and podSelector'],
    [
      server('{workload: w, podSelector: {}, port: 80}'),
      'p.yaml: document 1: spec: needs exactly one of workload and podSelector',
    ],
    [server('{workload: w, port: 0}'), 'p.yaml: document 1: spec.port: expected a port 1..65535'],
    [
      server('{workload: w, port: true}'),
      'p.yaml: document 1: spec.port: expected a port number 1..65535 or a port name',
    ],
    [server('{workload: w}'), 'p.yaml: document 1: spec.port: required'],
    [
      server('{workload: w, port: 80, protocol: http3}'),
      'p.yaml: document 1: spec.protocol: expected one of detect, http1, http2, grpc, opaque',
    ],
    [
      server('{workload: W!, port: 80}'),
      'p.yaml: document 1: spec.workload: expected a workload name (a-z, 0-9, -, .)',
    ],
    [server('{workload: w, port: 80, selector: {}}'), 'p.yaml: document 1: spec.selector: unknown field'],
    [
      server('{workload: w, port: 80}').replace('policy.trellis.dev/v1alpha1', 'policy.trellis.dev/v1'),
      'p.yaml: document 1: apiVersion: expected policy.trellis.dev/v1alpha1',
    ],
    [
      from('{identities: [web]}'),
      'p.yaml: document 1: spec.from.identities.0: expected a SPIFFE ID ("spiffe://...") or "*", got "web"',
    ],
    [
      from('{identities: ["spiffe://td/ns//sa/x"]}'),
      'p.yaml: document 1: spec.from.identities.0: has an empty path segment, got "spiffe://td/ns//sa/x"',
    ],
    [
      from('{networks: [10.0.0.0/8, 10.0.0.0/33]}'),
      'p.yaml: document 1: spec.from.networks.1: expected a CIDR such as 10.0.0.0/8 or ::1/128, got "10.0.0.0/33"',
    ],
    [
      from('{namespaces: [Shop]}'),
      'p.yaml: document 1: spec.from.namespaces.0: expected a DNS label (a-z, 0-9, -; at most 63)',
    ],
    [
      from('{}'),
      'p.yaml: document 1: spec.from: names nobody: give identities, namespaces, networks or unauthenticated: true',
    ],
    [
      from('{unauthenticated: false}'),
      'p.yaml: document 1: spec.from: names nobody: give identities, namespaces, networks or unauthenticated: true',
    ],
    [from('{unauthenticated: yes}'), 'p.yaml: document 1: spec.from.unauthenticated: expected true or false'],
    [authz('{server: s}'), 'p.yaml: document 1: spec.from: required'],
    [
      authz('{server: s, from: {unauthenticated: true}, routes: [{path: api}]}'),
      'p.yaml: document 1: spec.routes.0.path: expected a path starting with "/", got "api"',
    ],
    [
      authz('{server: s, from: {unauthenticated: true}, routes: [{path: "/a/*/b"}]}'),
      'p.yaml: document 1: spec.routes.0.path: "*" is only allowed at the end (a prefix), got "/a/*/b"',
    ],
    [
      authz('{server: s, from: {unauthenticated: true}, routes: [{path: /, methods: ["GET /"]}]}'),
      'p.yaml: document 1: spec.routes.0.methods.0: expected an HTTP method such as GET',
    ],
  ];
  for (const [text, message] of cases) {
    let error: unknown;
    try {
      parseResources(text, 'p.yaml');
    } catch (e) {
      error = e;
    }
    assert.ok(error instanceof ConfigError, `expected a ConfigError for ${text}`);
    assert.equal(withoutPosition(error.message), message, text);
  }
});

test('property: random policy documents are accepted or rejected with a ConfigError naming the document', () => {
  const scalar = fc.oneof(
    fc.constantFrom('web', 'http', '*', 'spiffe://td/ns/a/sa/b', '10.0.0.0/8', '/api/*', 'GET', 'grpc', ''),
    fc.integer({ min: -2, max: 70_000 }),
    fc.boolean(),
    fc.constant(null),
    fc.string({ maxLength: 8 }),
  );
  const list = fc.array(scalar, { maxLength: 3 });
  const doc = fc.record({
    apiVersion: fc.constantFrom('policy.trellis.dev/v1alpha1', 'v1'),
    kind: fc.constantFrom('Server', 'AuthorizationPolicy'),
    metadata: fc.record({ name: fc.constantFrom('a', 'B', 'web-1') }),
    spec: fc.record(
      {
        workload: scalar,
        podSelector: fc.oneof(
          scalar,
          fc.record({ matchLabels: fc.dictionary(fc.string({ maxLength: 3 }), scalar) }),
        ),
        port: scalar,
        protocol: scalar,
        server: scalar,
        from: fc.record(
          { identities: list, namespaces: list, networks: list, unauthenticated: scalar },
          { requiredKeys: [] },
        ),
        routes: fc.array(fc.record({ path: scalar, methods: list }, { requiredKeys: [] }), { maxLength: 2 }),
      },
      { requiredKeys: [] },
    ),
  });
  fc.assert(
    fc.property(doc, (d) => {
      try {
        for (const resource of parseResources(stringify(d), 'f.yaml'))
          assert.notEqual(resource.kind, 'Service');
      } catch (error) {
        if (!(error instanceof ConfigError)) throw error;
        assert.match(error.message, /^f\.yaml:\d+:\d+: document 1: /);
      }
    }),
    { numRuns: 500 },
  );
});

test('every error of a file at once, each at its line and column (the value; the key of an unknown field)', () => {
  const text = [
    'apiVersion: v1', //                                         1
    'kind: Service',
    'metadata:',
    '  name: Web', //                                            4: col 9
    '  colour: red', //                                          5: col 3 (the key)
    'spec:',
    '  ports:',
    '    - port: 0', //                                          8: col 13
    '    - { port: 80, appProtocol: mqtt }', //                  9: col 32
    '---',
    'apiVersion: policy.trellis.dev/v1alpha1',
    'kind: Server',
    'metadata: { name: s }', //                                  no spec: the document's start, line 11
    '---',
    'kind: Pod', //                                              15: col 7
    '---',
    'apiVersion: v1',
    'kind: Service',
    'metadata: {name: db}',
    'spec: {ports: [{port: 5432}]}', //                          a valid one, still read
  ].join('\n');
  const { resources, problems } = readResources(text, 'all.yaml');
  assert.deepEqual(resources.map(resourceName), ['service/db.default']);
  assert.deepEqual(problems, [
    'all.yaml:4:9: document 1: metadata.name: expected a DNS label (a-z, 0-9, -; at most 63)',
    'all.yaml:5:3: document 1: metadata.colour: unknown field',
    'all.yaml:8:13: document 1: spec.ports.0.port: expected a port 1..65535',
    'all.yaml:9:32: document 1: spec.ports.1.appProtocol: expected one of http, kubernetes.io/h2c, opaque, trellis.dev/opaque',
    'all.yaml:11:1: document 2: spec: required',
    'all.yaml:15:7: document 3: kind: expected one of Service, Server, AuthorizationPolicy, HTTPRoute, GRPCRoute, HTTPFault, HTTPLocalRateLimitPolicy, XBackendTrafficPolicy, got "Pod"',
  ]);
  const error = errorOf(text);
  assert.equal(error.message.split('\n').length, 6, 'parseResources throws them all, a line each');

  const broken = readResources('apiVersion: v1\nkind: Service\nmetadata: {name: web\n', 'bad.yaml');
  assert.deepEqual(broken.resources, []);
  assert.ok(broken.problems.length >= 1);
  for (const p of broken.problems) assert.match(p, /^bad\.yaml:[34]:\d+: document 1: not valid YAML \(/);
});

test("danglingReferences: a route's retry-budget annotations are named as doing nothing", () => {
  const [route] = parseResources(
    `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: hammer
  namespace: shop
  annotations: { retry.trellis.io/budget-ratio: '1', retry.trellis.io/limit: '2' }
spec:
  parentRefs: [{ group: "", kind: Service, name: web, port: 80 }]
  rules: [{ backendRefs: [{ name: web, port: 80 }] }]
`,
    'r.yaml',
  );
  assert.deepEqual(danglingReferences([route!], { servers: new Set(), workloads: new Set(['shop/web']) }), [
    "httproute/hammer.shop: metadata.annotations.retry.trellis.io/budget-ratio: the retry budget is the Service's (its annotations or an XBackendTrafficPolicy); on a route it does nothing",
  ]);
});

test('danglingReferences: an AuthorizationPolicy naming no Server, a Server naming no workload', () => {
  const resources = parseResources(
    `${POLICY}---\napiVersion: policy.trellis.dev/v1alpha1\nkind: Server\nmetadata: {name: db, namespace: shop}\nspec: {workload: db, port: 5432}\n` +
      `---\napiVersion: policy.trellis.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: to-db, namespace: shop}\nspec: {server: db-tcp, from: {namespaces: [shop]}}\n`,
    'p.yaml',
  );
  assert.deepEqual(danglingReferences(resources, { servers: new Set(), workloads: new Set() }), [
    'server/db.shop: spec.workload: no service or workload db in namespace shop; it selects nothing until there is one',
    'authorizationpolicy/to-db.shop: spec.server: no Server db-tcp in namespace shop; it admits no one until there is one',
  ]);
  assert.deepEqual(
    danglingReferences(resources, { servers: new Set(['shop/db-tcp']), workloads: new Set(['shop/db']) }),
    [],
  );
  // A Server of another namespace does not count; a Service among the resources does.
  const [service] = parseResources(
    'apiVersion: v1\nkind: Service\nmetadata: {name: db, namespace: shop}\nspec: {ports: [{port: 5432}]}\n',
    's.yaml',
  );
  assert.deepEqual(
    danglingReferences([...resources, service!], { servers: new Set(['ops/db-tcp']), workloads: new Set() }),
    [
      'authorizationpolicy/to-db.shop: spec.server: no Server db-tcp in namespace shop; it admits no one until there is one',
    ],
  );
});
