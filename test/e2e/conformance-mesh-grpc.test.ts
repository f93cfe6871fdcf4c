// The Gateway API's mesh conformance tests on one machine, part 3: GRPCRoute weights and request
// header filters, for `echo:7070`. The app's gRPC channel is a client proxy listener bound for
// that Service port (HTTP/2 with prior knowledge); calls are gRPC-shaped (POST, application/grpc,
// te: trailers) to the suite's default method. See conformance-mesh.test.ts for the translation.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import {
  checkEchoedRequest,
  GRPC_PATH,
  MESH_NS,
  startConformanceMesh,
  withinTolerance,
  type ConformanceMesh,
  type Expected,
} from '../helpers/conformance-mesh.ts';
import { grpcCall } from '../helpers/mesh-echo.ts';

let mesh: ConformanceMesh;
before(async () => {
  mesh = await startConformanceMesh();
});
after(() => mesh.close());

/** An HTTP/2 session to a client's gRPC listener, closed after `body`. */
async function withChannel(body: (session: http2.ClientHttp2Session) => Promise<void>): Promise<void> {
  const { bound } = await mesh.client({ bound: [{ target: 'echo:7070', protocol: 'h2' }] });
  const session = http2.connect(`http://127.0.0.1:${bound[0]}`);
  session.on('error', () => {});
  try {
    await body(session);
  } finally {
    session.close();
  }
}

test('MeshGRPCRouteWeight', async () => {
  const yaml = `
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: { name: mesh-grpc-weighted-backends, namespace: ${MESH_NS} }
spec:
  parentRefs: [{ group: "", kind: Service, name: echo, port: 7070 }]
  rules:
  - backendRefs:
    - { name: echo-v1, port: 7070, weight: 70 }
    - { name: echo-v2, port: 7070, weight: 30 }
    - { name: echo-v3, port: 7070, weight: 0 }
`;
  await mesh.withRoutes(yaml, () =>
    withChannel(async (session) => {
      const first = await grpcCall(session, GRPC_PATH);
      assert.equal(first.headers[':status'], '200');
      assert.equal(first.headers['grpc-status'], '0', JSON.stringify(first.headers));
      // 500 calls, 10 at a time, on one channel; as in conformance-mesh.test.ts at most 3 tries.
      let problems: string[] = [];
      for (let attempt = 0; attempt < 3 && (attempt === 0 || problems.length > 0); attempt++) {
        const seen = new Map<string, number>();
        let next = 0;
        await Promise.all(
          Array.from({ length: 10 }, async () => {
            while (next < 500) {
              next++;
              const reply = await grpcCall(session, GRPC_PATH);
              assert.equal(reply.headers['grpc-status'], '0', JSON.stringify(reply.headers));
              const pod = reply.echo?.pod ?? 'none';
              seen.set(pod, (seen.get(pod) ?? 0) + 1);
            }
          }),
        );
        problems = withinTolerance(seen, { 'echo-v1': 0.7, 'echo-v2': 0.3 }, 500);
      }
      assert.deepEqual(problems, []);
    }),
  );
});

// The cases that `add` to a header the request has need the HTTP/2 hops to forward a field sent
// on several lines as those lines (node's header object joins them with ", "; h2-headers.ts
// keepRepeatedLines): the suite's echo reads them as "this-value-should-be-appended,add-appends-values".
// They failed before that fix.
test('MeshGRPCRouteRequestHeaderModifier', async (t) => {
  const rule = (testCase: string, modifier: string, backend: string) => `
  - matches: [{ headers: [{ name: x-test-case, value: ${testCase} }] }]
    filters: [{ type: RequestHeaderModifier, requestHeaderModifier: ${modifier} }]
    backendRefs: [{ name: ${backend}, port: 7070 }]`;
  const yaml = `
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: { name: mesh-grpc-request-header-modifier, namespace: ${MESH_NS} }
spec:
  parentRefs: [{ group: "", kind: Service, name: echo, port: 7070 }]
  rules:${rule('set', '{ set: [{ name: x-header-set, value: set-overwrites-values }] }', 'echo-v1')}${rule(
    'add',
    '{ add: [{ name: x-header-add, value: add-appends-values }] }',
    'echo-v1',
  )}${rule('remove', '{ remove: [x-header-remove] }', 'echo-v1')}${rule(
    'multi',
    '{ set: [{ name: x-header-set-1, value: header-set-1 }, { name: x-header-set-2, value: header-set-2 }], ' +
      'add: [{ name: x-header-add-1, value: header-add-1 }, { name: x-header-add-2, value: header-add-2 }], ' +
      'remove: [x-header-remove-1, x-header-remove-2] }',
    'echo-v2',
  )}
`;
  // [upstream case name, x-test-case, backend, headers sent, what the backend must receive]
  const cases: [string, string, string, Record<string, string>, NonNullable<Expected['request']>][] = [
    [
      'Set headers -- overwrites existing header',
      'set',
      'echo-v1',
      {
        'some-other-header': 'this-header-should-be-set',
        'x-header-set': 'this-value-should-be-overwritten',
      },
      {
        headers: {
          'x-test-case': 'set',
          'some-other-header': 'this-header-should-be-set',
          'x-header-set': 'set-overwrites-values',
        },
      },
    ],
    [
      'Add headers -- appends to existing header',
      'add',
      'echo-v1',
      { 'x-header-add': 'this-value-should-be-appended' },
      {
        headers: { 'x-test-case': 'add', 'x-header-add': 'this-value-should-be-appended,add-appends-values' },
      },
    ],
    [
      'Remove headers -- removes headers',
      'remove',
      'echo-v1',
      { 'x-header-remove': 'this-should-be-removed' },
      { headers: { 'x-test-case': 'remove' }, absentHeaders: ['x-header-remove'] },
    ],
    [
      'Multiple operations -- set, add, and remove headers',
      'multi',
      'echo-v2',
      {
        'x-header-set-2': 'set-header-2',
        'x-header-add-2': 'add-header-2',
        'x-header-remove-2': 'should-be-removed-2',
      },
      {
        headers: {
          'x-test-case': 'multi',
          'x-header-set-1': 'header-set-1',
          'x-header-set-2': 'header-set-2',
          'x-header-add-1': 'header-add-1',
          'x-header-add-2': 'add-header-2,header-add-2',
        },
        absentHeaders: ['x-header-remove-1', 'x-header-remove-2'],
      },
    ],
  ];
  await mesh.withRoutes(yaml, () =>
    withChannel(async (session) => {
      for (const [name, testCase, backend, headers, request] of cases) {
        await t.test(name, async () => {
          const reply = await grpcCall(session, GRPC_PATH, { 'x-test-case': testCase, ...headers });
          const what = `x-test-case: ${testCase}`;
          assert.equal(reply.headers[':status'], '200', `${what}: ${JSON.stringify(reply.headers)}`);
          assert.ok(reply.echo !== null, `${what}: answered by an echo app`);
          assert.equal(reply.echo.pod, backend, `${what}: backend`);
          assert.equal(reply.echo.protocol, 'h2', `${what}: arrived as HTTP/2`);
          checkEchoedRequest(reply.echo, request, what);
        });
      }
    }),
  );
});
