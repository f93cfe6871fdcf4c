// `trellis get` on one machine (src/cli/get.ts): routes applied with `trellis apply -f` and the
// Services of the state folder, through the HTTP API of `trellis up` (GET /api/routes,
// /api/services): kubectl's kind names, -n / -A, one object by name, -o yaml|json|wide, the
// status `trellis routes` shows, and errors naming the known kinds or the missing object.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { runCli } from '../helpers/cli.ts';
import { startUp } from '../helpers/trellis-run.ts';
import { removeTempDir } from '../helpers/temp-dir.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const RESOURCES = `apiVersion: v1
kind: Service
metadata: { name: echo, namespace: mesh }
spec: { ports: [{ port: 80, name: http }] }
---
apiVersion: v1
kind: Service
metadata: { name: echo-v1, namespace: mesh }
spec: { ports: [{ port: 8080 }] }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: split, namespace: mesh }
spec:
  parentRefs: [{ group: "", kind: Service, name: echo, port: 80 }, { group: "", kind: Service, name: echo, port: 81 }]
  rules:
  - backendRefs: [{ name: echo-v1, port: 8080 }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: lost, namespace: mesh }
spec:
  parentRefs: [{ group: "", kind: Service, name: echo }]
  rules:
  - backendRefs: [{ name: echo-v9, port: 8080 }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: { name: rpc, namespace: consumer }
spec:
  parentRefs: [{ group: "", kind: Service, name: echo, namespace: mesh }]
  rules:
  - matches: [{ method: { service: pkg.Echo } }]
    backendRefs: [{ name: echo, namespace: mesh, port: 80 }]
`;

test('trellis get: routes with their status and services, by kind name, namespace and output', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'trellis-get-'));
  t.after(() => removeTempDir(root));
  await writeFile(join(root, 'all.yaml'), RESOURCES);
  const applied = await runCli(['apply', '-f', join(root, 'all.yaml'), '--state', root]);
  assert.equal(applied.code, 0, applied.stderr);
  await startUp(t, root);
  const get = (...args: string[]) => runCli(['get', ...args, '--state', root]);

  const table = await get('httproutes', '-n', 'mesh');
  assert.equal(table.code, 0, table.stderr);
  const rows = table.stdout
    .trimEnd()
    .split('\n')
    .map((l) => l.split(/\s{2,}/));
  assert.deepEqual(rows, [
    ['NAME', 'PARENTS', 'ACCEPTED', 'RESOLVED'],
    ['lost', 'echo', 'True', 'False(BackendNotFound)'],
    ['split', 'echo:80,echo:81', 'echo:80=True,echo:81=False(NoMatchingParent)', 'True'],
  ]);

  const wide = await get('httproute', 'lost', '-n', 'mesh', '-o', 'wide');
  assert.deepEqual(
    wide.stdout
      .trimEnd()
      .split('\n')
      .map((l) => l.split(/\s{2,}/)),
    [
      ['NAME', 'PARENTS', 'ACCEPTED', 'RESOLVED', 'HOSTNAMES', 'RULES', 'CREATED'],
      [
        'lost',
        'echo',
        'True',
        'False(BackendNotFound)',
        '*',
        '1',
        wide.stdout.split('\n')[1]!.split(/\s+/).pop()!,
      ],
    ],
  );
  assert.match(wide.stdout.split('\n')[1]!, /\d{4}-\d\d-\d\dT/);

  // Every spelling of the kind; -A adds the namespace column.
  for (const kind of ['grpcroute', 'grpcroutes', 'GRPCRoute']) {
    const all = await get(kind, '-A');
    assert.equal(all.code, 0, all.stderr);
    assert.deepEqual(
      all.stdout
        .trimEnd()
        .split('\n')
        .map((l) => l.split(/\s{2,}/)),
      [
        ['NAMESPACE', 'NAME', 'PARENTS', 'ACCEPTED', 'RESOLVED'],
        ['consumer', 'rpc', 'mesh/echo', 'True', 'True'],
      ],
      kind,
    );
  }

  // One object, as YAML and JSON, with the status `trellis routes` computes.
  const yaml = await get('httproute', 'split', '-n', 'mesh', '-o', 'yaml');
  assert.equal(yaml.code, 0, yaml.stderr);
  const split = parse(yaml.stdout) as Json;
  assert.equal(split['kind'], 'HTTPRoute');
  assert.equal(split['apiVersion'], 'gateway.networking.k8s.io/v1');
  assert.deepEqual(
    (split['status']['parents'] as Json[]).map((p) => [
      p['parentRef']['port'],
      p['controllerName'],
      ...(p['conditions'] as Json[]).map((c) => `${c['type']}=${c['status']}/${c['reason']}`),
    ]),
    [
      [80, 'trellis.dev/mesh', 'Accepted=True/Accepted', 'ResolvedRefs=True/ResolvedRefs'],
      [81, 'trellis.dev/mesh', 'Accepted=False/NoMatchingParent', 'ResolvedRefs=True/ResolvedRefs'],
    ],
  );
  const json = await get('httproutes', '-n', 'mesh', '-o', 'json');
  const list = JSON.parse(json.stdout) as Json;
  assert.equal(list['kind'], 'List');
  assert.deepEqual(
    (list['items'] as Json[]).map((o) => o['metadata']['name']),
    ['lost', 'split'],
  );

  // Services, by their short name; -o wide lists the endpoint addresses.
  const svc = await get('svc', '-n', 'mesh', '-o', 'wide');
  assert.equal(svc.code, 0, svc.stderr);
  assert.deepEqual(
    svc.stdout
      .trimEnd()
      .split('\n')
      .map((l) => l.split(/\s{2,}/)),
    [
      ['NAME', 'PORTS', 'ENDPOINTS', 'ADDRESSES'],
      ['echo', '80/http', '0', '<none>'],
      ['echo-v1', '8080', '0', '<none>'],
    ],
  );
  const one = JSON.parse((await get('service', 'echo', '-n', 'mesh', '-o', 'json')).stdout) as Json;
  assert.deepEqual(one['spec'], { ports: [{ name: 'http', port: 80 }] });

  // Errors: an unknown kind lists the known ones; a missing object and an empty namespace.
  const unknown = await get('gateways');
  assert.equal(unknown.code, 2);
  assert.match(
    unknown.stderr,
    /unknown kind 'gateways' \(known: httproute, httproutes; grpcroute, grpcroutes; service, services, svc\)/,
  );
  const missing = await get('httproute', 'nope', '-n', 'mesh');
  assert.deepEqual([missing.code, missing.stdout], [1, '']);
  assert.match(missing.stderr, /httproute "nope" not found in namespace mesh/);
  const empty = await get('httproutes');
  assert.deepEqual(
    [empty.code, empty.stdout, empty.stderr],
    [0, '', 'No resources found in default namespace.\n'],
  );
  const both = await get('svc', '-A', '-n', 'mesh');
  assert.equal(both.code, 2);
  assert.match(both.stderr, /--all-namespaces: not with --namespace/);
});
