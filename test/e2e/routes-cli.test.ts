// `trellis apply -f` with HTTPRoute and GRPCRoute, and `trellis routes SERVICE` on one machine
// (src/cli/apply.ts, src/cli/routes.ts, src/control/routes/): routes are written to the state
// folder with their creation time (kept by a second apply), refused with every error at once,
// removed by --delete, and shown with their status (Accepted, ResolvedRefs with BackendNotFound,
// NoMatchingParent, PartiallyInvalid), rules, and backends with weights and shares.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, writeFile, access } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI, NODE, REPO } from '../helpers/proxy-process.ts';
import type { ServiceRoutesView } from '../../src/control/routes/view.ts';
import { removeTempDir } from '../helpers/temp-dir.ts';

async function runCli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const proc = spawn(NODE, [CLI, ...args], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => proc.kill('SIGKILL'), 60_000);
  const [code] = (await once(proc, 'exit')) as [number | null];
  clearTimeout(timer);
  return { code, stdout, stderr };
}

const SERVICES = `apiVersion: v1
kind: Service
metadata: { name: echo, namespace: mesh }
spec: { ports: [{ port: 80, name: http }] }
---
apiVersion: v1
kind: Service
metadata: { name: echo-v1, namespace: mesh }
spec: { ports: [{ port: 8080 }] }
`;

const ROUTES = `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: split, namespace: mesh }
spec:
  parentRefs: [{ group: "", kind: Service, name: echo, port: 80 }, { group: "", kind: Service, name: echo, port: 81 }]
  rules:
  - matches: [{ path: { type: PathPrefix, value: /v2 } }]
    backendRefs: [{ name: echo-v1, port: 8080, weight: 3 }, { name: echo-v2, port: 8080, weight: 1 }, { name: echo-v1, port: 8080, weight: 0 }]
  - filters: [{ type: ExtensionRef, extensionRef: { group: trellis.dev, kind: Fault, name: slow } }]
    backendRefs: [{ name: echo-v1, port: 8080 }]
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

test('trellis apply and trellis routes: status, rules, backends; creation time kept; --delete', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'trellis-routes-e2e-'));
  t.after(() => removeTempDir(dir));
  const state = join(dir, 'state');
  await writeFile(join(dir, 'services.yaml'), SERVICES);
  await writeFile(join(dir, 'routes.yaml'), ROUTES);

  const applied = await runCli([
    'apply',
    '--state',
    state,
    '-f',
    join(dir, 'services.yaml'),
    '-f',
    join(dir, 'routes.yaml'),
  ]);
  assert.equal(applied.code, 0, applied.stderr);
  assert.match(applied.stdout, /httproute\/split\.mesh created\ngrpcroute\/rpc\.consumer created/);
  assert.match(applied.stderr, /spec\.rules\.0\.backendRefs\.1: no service echo-v2 in namespace mesh/);
  const file = join(state, 'routes/mesh/httproute-split.yaml');
  const created = /creationTimestamp: (\S+)/.exec(await readFile(file, 'utf8'))?.[1];
  assert.ok(created);

  const json = await runCli(['routes', 'echo', '-n', 'mesh', '-o', 'json', '--state', state]);
  assert.equal(json.code, 0, json.stderr);
  const view = JSON.parse(json.stdout) as ServiceRoutesView;
  assert.deepEqual(
    view.routes.map((r) => [r.kind, r.namespace, r.name, r.role]),
    [
      ['HTTPRoute', 'mesh', 'split', 'producer'],
      ['GRPCRoute', 'consumer', 'rpc', 'consumer'],
    ],
  );
  const split = view.routes[0]!;
  const conditions = (i: number) =>
    split.parents[i]!.conditions.map((c) => `${c.type}=${c.status}/${c.reason}`);
  assert.deepEqual(conditions(0), [
    'Accepted=True/Accepted',
    'ResolvedRefs=False/BackendNotFound',
    'PartiallyInvalid=True/UnsupportedValue',
  ]);
  assert.deepEqual(conditions(1), [
    'Accepted=False/NoMatchingParent',
    'ResolvedRefs=False/BackendNotFound',
    'PartiallyInvalid=True/UnsupportedValue',
  ]);
  assert.deepEqual(
    split.rules[0]!.backends.map((b) => [b.name, b.weight, b.share, b.resolved]),
    [
      ['echo-v1', 3, 75, true],
      ['echo-v2', 1, 25, false],
      ['echo-v1', 0, 0, true],
    ],
  );
  const rpc = view.routes[1]!;
  assert.deepEqual(
    rpc.parents[0]!.conditions.map((c) => `${c.type}=${c.status}/${c.reason}`),
    ['Accepted=True/Accepted', 'ResolvedRefs=True/ResolvedRefs'],
  );
  assert.deepEqual(rpc.rules[0]!.matches, ['pkg.Echo/*']);

  const table = await runCli(['routes', 'echo', '-n', 'mesh', '--state', state]);
  assert.equal(table.code, 0);
  assert.match(table.stdout, /-> mesh\/echo-v2:8080 {2}weight 1 {2}25% {2}missing \(500\)/);
  assert.match(table.stdout, /ResolvedRefs {5}False BackendNotFound: no Service echo-v2 in namespace mesh/);

  // A second apply keeps the first creation time (it orders equal matches).
  const again = await runCli(['apply', '--state', state, '-f', join(dir, 'routes.yaml')]);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(/creationTimestamp: (\S+)/.exec(await readFile(file, 'utf8'))?.[1], created);

  const missing = await runCli(['routes', 'nope', '-n', 'mesh', '--state', state]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /no service nope in namespace mesh/);
  assert.equal(missing.stdout, ''); // not a table of a Service that is not there first

  const removed = await runCli(['apply', '--delete', '--state', state, '-f', join(dir, 'routes.yaml')]);
  assert.equal(removed.code, 0, removed.stderr);
  assert.match(removed.stdout, /httproute\/split\.mesh deleted/);
  await assert.rejects(access(file));
});

test('trellis apply refuses a bad route whole, every error with line, column, document and field', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'trellis-routes-e2e-'));
  t.after(() => removeTempDir(dir));
  const file = join(dir, 'bad.yaml');
  await writeFile(
    file,
    `${SERVICES}---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: bad, namespace: mesh }
spec:
  parentRefs: [{ group: "", kind: Service, name: echo }]
  rules:
  - matches: [{ path: { type: RegularExpression, value: "(a)\\\\1" } }]
    backendRefs: [{ name: echo-v1 }]
    timeouts: { request: 1s, backendRequest: 2s }
`,
  );
  const result = await runCli(['apply', '--state', join(dir, 'state'), '-f', file]);
  assert.equal(result.code, 2);
  assert.deepEqual(result.stderr.trim().split('\n'), [
    `trellis apply: ${file}:17:57: document 3: spec.rules.0.matches.0.path.value: backreferences (\\1, \\k<name>) are not supported (they need a backtracking engine)`,
    `trellis apply: ${file}:18:19: document 3: spec.rules.0.backendRefs.0: port: required for a Service reference`,
    `trellis apply: ${file}:19:15: document 3: spec.rules.0.timeouts: backendRequest timeout cannot be longer than request timeout`,
    'trellis apply: 3 errors; nothing was applied',
  ]);
  await assert.rejects(access(join(dir, 'state/services')));
});
