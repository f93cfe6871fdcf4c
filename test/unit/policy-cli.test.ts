// The table of `trellis authz` (src/cli/authz.ts) for the cases the end-to-end test does not
// reach: a Server without authorizations, every kind of "who", several routes, skipped Servers,
// named ports (one number, or one per instance).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { authzTable } from '../../src/cli/authz.ts';

test('authz table: servers, every kind of who, routes, skipped servers, the proxy default', () => {
  const lines = authzTable(
    {
      namespace: 'shop',
      workload: 'web',
      labels: {},
      servers: [
        {
          name: 'shop/admin',
          port: 9990,
          protocol: 'http2',
          authorizations: [
            {
              name: 'shop/ops',
              identities: ['*', 'spiffe://td/ns/ops/sa/*'],
              namespaces: ['ops', 'sre'],
              networks: ['10.0.0.0/8'],
              unauthenticated: false,
              routes: [
                { path: '/metrics', methods: [] },
                { path: '/admin/*', methods: ['GET', 'POST'] },
              ],
            },
          ],
        },
        { name: 'shop/db', port: 5432, protocol: 'opaque', authorizations: [] },
      ],
      skipped: [{ server: 'shop/named', reason: 'port name "grpc" is not a port of this workload' }],
    },
    'deny',
  );
  assert.deepEqual(lines, [
    'SERVER      PORT  PROTOCOL  AUTHORIZATION                WHO                                                                                             ROUTES',
    'shop/admin  9990  http2     shop/ops                     any authenticated; identities spiffe://td/ns/ops/sa/*; namespaces ops,sre; networks 10.0.0.0/8  * /metrics, GET|POST /admin/*',
    'shop/db     5432  opaque    (none: every client denied)',
    'skipped shop/named: port name "grpc" is not a port of this workload',
    'proxy default: deny (ports no Server selects)',
  ]);
});

test('authz table: a named port shows as written, with its number or each instance number', () => {
  const server = (name: string, extra: object) => ({
    name,
    port: 8080,
    protocol: 'http1',
    authorizations: [],
    portName: 'http',
    ...extra,
  });
  const lines = authzTable(
    {
      namespace: 'shop',
      workload: 'web',
      labels: {},
      servers: [
        server('shop/a', {}), // Kubernetes: the pod's own
        server('shop/b', { instancePorts: [{ instance: 'web-1', port: 8080 }] }),
        server('shop/c', {
          instancePorts: [
            { instance: 'web-1', port: 8080 },
            { instance: 'web-2', port: 8081 },
          ],
        }),
      ],
      skipped: [],
    },
    null,
  );
  assert.deepEqual(lines, [
    'SERVER  PORT                         PROTOCOL  AUTHORIZATION                WHO  ROUTES',
    'shop/a  http (8080)                  http1     (none: every client denied)',
    'shop/b  http (8080)                  http1     (none: every client denied)',
    'shop/c  http (differs per instance)  http1     (none: every client denied)',
    'port http of shop/c per instance: web-1 8080, web-2 8081',
    'proxy default: unknown (ports no Server selects)',
  ]);
});
