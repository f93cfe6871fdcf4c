// The control-plane commands end to end, as real processes on loopback: `trellis up` over a temp
// state folder, fed by `trellis apply -f` and a workload registration, watched through the
// Destination gRPC API and listed by the HTTP API; SIGTERM stops it cleanly; its operator token
// (kept across restarts) is what `trellis identity rotate` sends. `trellis apply` rejects a bad file
// whole; `trellis control` serves a fake Kubernetes API's Service and EndpointSlice the same way,
// and takes its operator token from --operator-token-file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { access, mkdtemp, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeWorkloadFile } from '../../src/control/discovery/local-state.ts';
import { DestinationResolver } from '../../src/proxy/resolve/destination-client.ts';
import type { Update } from '../../src/core/endpoints.ts';
import { FakeKubeServer } from '../fake-kube/server.ts';
import { CLI, NODE, REPO } from '../helpers/proxy-process.ts';
import { removeTempDir } from '../helpers/temp-dir.ts';

const TIMEOUT_MS = 10_000;
const LOOPBACK = ['--grpc-listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0', '--log-level', 'warn'];

interface Running {
  readonly proc: ChildProcess;
  readonly ready: Record<string, string>;
  stderr(): string;
  /** SIGTERM (SIGKILL after a while); resolves with the exit code. */
  stop(): Promise<number | null>;
}

async function start(t: { after(fn: () => Promise<unknown>): void }, args: string[]): Promise<Running> {
  const proc = spawn(NODE, [CLI, ...args], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const stop = async (): Promise<number | null> => {
    if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
    const exited = once(proc, 'exit');
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), TIMEOUT_MS);
    const [code] = (await exited) as [number | null];
    clearTimeout(timer);
    return code;
  };
  t.after(stop);
  const ready = await new Promise<Record<string, string>>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`no ready line in time: ${err}`)), 15_000);
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const nl = out.indexOf('\n');
      if (nl === -1) return;
      clearTimeout(timer);
      resolve(JSON.parse(out.slice(0, nl)) as Record<string, string>);
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`exited with ${code} before ready: ${err}`));
    });
  });
  return { proc, ready, stderr: () => err, stop };
}

/** Runs a command to its end: exit code and output. */
async function runCli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const proc = spawn(NODE, [CLI, ...args], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => proc.kill('SIGKILL'), TIMEOUT_MS);
  const [code] = (await once(proc, 'exit')) as [number | null];
  clearTimeout(timer);
  return { code, stdout, stderr };
}

/** The endpoint address keys of one Destination watch, kept up to date. */
function watchEndpoints(t: { after(fn: () => void): void }, grpc: string, target: string) {
  const resolver = new DestinationResolver({ address: grpc, backoff: { initialMs: 50, maxMs: 300 } });
  const endpoints = new Map<string, Update>();
  const resolution = resolver.resolve(
    target,
    (update) => {
      if (update.kind === 'reset' || update.kind === 'does-not-exist') endpoints.clear();
      if (update.kind === 'reset' || update.kind === 'add') {
        for (const e of update.endpoints) endpoints.set(`${e.address.host}:${e.address.port}`, update);
      }
      if (update.kind === 'remove') for (const a of update.addresses) endpoints.delete(a);
    },
    () => {},
  );
  t.after(() => {
    resolution.cancel();
    resolver.close();
  });
  return { keys: () => [...endpoints.keys()].sort() };
}

async function waitFor(what: string, predicate: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + TIMEOUT_MS;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function getJson(http: string, path: string): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`http://${http}${path}`);
  return { status: res.status, body: await res.json() };
}

const exists = (path: string) =>
  access(path).then(
    () => true,
    () => false,
  );

const SERVICE_YAML = `apiVersion: v1
kind: Service
metadata: { name: web, namespace: shop }
spec:
  ports:
    - { name: http, port: 80, targetPort: http, appProtocol: http }
`;

test('trellis up serves applied services and registered workloads, and stops cleanly', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'trellis-up-e2e-'));
  t.after(() => removeTempDir(root));
  const up = await start(t, ['up', '--state', root, ...LOOPBACK]);
  assert.equal(up.ready.event, 'ready');
  assert.equal(up.ready.state, root);
  const control = JSON.parse(await readFile(join(root, 'control.json'), 'utf8')) as Record<string, unknown>;
  assert.deepEqual(control, {
    grpc: up.ready.grpc,
    http: up.ready.http,
    pid: up.proc.pid,
    trustDomain: 'cluster.local',
    // Its proxies trace into its embedded collector (docs/tracing.md), with its trace token.
    tracing: { collector: `http://${up.ready.http}`, sampleRatio: 1, tokenFile: join(root, 'trace-token') },
  });
  assert.deepEqual(await getJson(up.ready.http!, '/healthz'), { status: 200, body: { status: 'ok' } });

  const file = join(root, 'services.yaml');
  await writeFile(file, SERVICE_YAML);
  const applied = await runCli(['apply', '-f', file, '--state', root]);
  assert.deepEqual(applied, { code: 0, stdout: 'service/web.shop created\n', stderr: '' });

  const web = watchEndpoints(t, up.ready.grpc!, 'web.shop.svc.cluster.local:80');
  await writeWorkloadFile(root, 'shop', 'web-a', {
    service: 'web',
    address: '127.0.0.21',
    ports: [{ name: 'http', port: 18080 }],
  });
  await waitFor(
    'the workload to show through the Destination API',
    () => web.keys().join() === '127.0.0.21:18080',
  );

  const { status, body } = await getJson(up.ready.http!, '/api/services');
  assert.equal(status, 200);
  const services = body as {
    namespace: string;
    name: string;
    ports: { port: number; endpoints: { address: string }[] }[];
  }[];
  assert.deepEqual(
    services.map((s) => [
      s.namespace,
      s.name,
      s.ports.map((p) => [p.port, p.endpoints.map((e) => e.address)]),
    ]),
    [['shop', 'web', [[80, ['127.0.0.21:18080']]]]],
  );

  assert.equal(await up.stop(), 0, up.stderr());
  assert.equal(await exists(join(root, 'control.json')), false);
});

test('trellis up makes an operator token (0600, kept across restarts) that `trellis identity rotate` sends', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'trellis-up-token-'));
  t.after(() => removeTempDir(root));
  const first = await start(t, ['up', '--state', root, ...LOOPBACK]);
  const tokenFile = join(root, 'operator-token');
  const token = await readFile(tokenFile, 'utf8');
  assert.match(token, /^[A-Za-z0-9_-]{43}\n$/);
  assert.equal((await stat(tokenFile)).mode & 0o777, 0o600);
  const anonymous = await fetch(`http://${first.ready.http}/api/identity/rotate`, { method: 'POST' });
  assert.equal(anonymous.status, 401);
  assert.match(((await anonymous.json()) as { authenticate: string }).authenticate, new RegExp(tokenFile));
  assert.equal(await first.stop(), 0, first.stderr());

  const again = await start(t, ['up', '--state', root, ...LOOPBACK]);
  assert.equal(await readFile(tokenFile, 'utf8'), token, 'the same token after a restart');
  const rotate = await runCli(['identity', 'rotate', '--state', root]);
  assert.equal(rotate.code, 0, rotate.stderr);
  assert.match(rotate.stdout, /^anchor rotation started: phase anchor-added/);
  const status = await runCli(['identity', 'status', '--state', root, '-o', 'json']);
  assert.equal((JSON.parse(status.stdout) as { rotation: { phase: string } }).rotation.phase, 'anchor-added');
  assert.equal(await again.stop(), 0, again.stderr());
});

test('trellis apply rejects bad files whole, with every error at once: line, column, document, field', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'trellis-apply-e2e-'));
  t.after(() => removeTempDir(root));
  const file = join(root, 'services.yaml');
  await writeFile(
    file,
    `${SERVICE_YAML}---\napiVersion: v1\nkind: Service\nmetadata: {name: db}\nspec: {ports: [{port: 0}]}\n` +
      `---\napiVersion: v1\nkind: Service\nmetadata: {name: Cache, colour: red}\nspec: {ports: [{port: 6379}]}\n`,
  );
  const other = join(root, 'other.yaml');
  await writeFile(other, 'kind: [\n');
  const state = join(root, 'state');
  const result = await runCli(['apply', '-f', file, '-f', other, '--state', state]);
  assert.equal(result.code, 2);
  assert.equal(result.stdout, '');
  const lines = result.stderr.trimEnd().split('\n');
  assert.deepEqual(lines.slice(0, 3), [
    `trellis apply: ${file}:11:23: document 2: spec.ports.0.port: expected a port 1..65535`,
    `trellis apply: ${file}:15:18: document 3: metadata.name: expected a DNS label (a-z, 0-9, -; at most 63)`,
    `trellis apply: ${file}:15:25: document 3: metadata.colour: unknown field`,
  ]);
  assert.match(lines[3]!, new RegExp(`^trellis apply: ${other}:\\d+:\\d+: document 1: not valid YAML \\(`));
  assert.equal(lines[lines.length - 1], `trellis apply: ${lines.length - 1} errors; nothing was applied`);
  assert.equal(await exists(state), false, 'nothing is written');

  const badFlag = await runCli(['up', '--state', state, '--grpc-listen', 'nowhere']);
  assert.equal(badFlag.code, 2);
  assert.match(badFlag.stderr, /--grpc-listen: expected HOST:PORT/);
  const missing = await runCli(['apply', '--state', state, '-f', join(root, 'missing.yaml')]);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /-f: cannot read .*missing\.yaml: ENOENT/);
  assert.deepEqual((await readdir(root)).sort(), ['other.yaml', 'services.yaml']);
});

test('trellis apply warns about a reference to a Server or a service that does not exist, and applies', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'trellis-apply-refs-'));
  t.after(() => removeTempDir(root));
  const policy = (server: string, workload: string) => `apiVersion: policy.trellis.dev/v1alpha1
kind: Server
metadata: { name: web-http, namespace: shop }
spec: { workload: ${workload}, port: 80 }
---
apiVersion: policy.trellis.dev/v1alpha1
kind: AuthorizationPolicy
metadata: { name: web-public, namespace: shop }
spec: { server: ${server}, from: { unauthenticated: true } }
`;
  const file = join(root, 'policy.yaml');
  await writeFile(file, policy('web-htp', 'webb'));
  const warned = await runCli(['apply', '-f', file, '--state', root]);
  assert.equal(warned.code, 0, warned.stderr);
  assert.equal(warned.stdout, 'server/web-http.shop created\nauthorizationpolicy/web-public.shop created\n');
  assert.equal(
    warned.stderr,
    'trellis apply: warning: server/web-http.shop: spec.workload: no service or workload webb in namespace shop; it selects nothing until there is one\n' +
      'trellis apply: warning: authorizationpolicy/web-public.shop: spec.server: no Server web-htp in namespace shop; it admits no one until there is one\n',
  );
  // Defined by the state folder (an earlier apply) or by the same files: no warning.
  await writeFile(join(root, 'services.yaml'), SERVICE_YAML);
  assert.equal((await runCli(['apply', '-f', join(root, 'services.yaml'), '--state', root])).stderr, '');
  await writeFile(file, policy('web-http', 'web'));
  const quiet = await runCli(['apply', '-f', file, '--state', root]);
  assert.deepEqual([quiet.code, quiet.stderr], [0, '']);
});

test('trellis control serves a Kubernetes Service and its EndpointSlice through the Destination API', async (t) => {
  const kube = new FakeKubeServer();
  await kube.start();
  t.after(() => kube.close());
  kube.applyYaml(await readFile(new URL('../fake-kube/fixtures/web.yaml', import.meta.url), 'utf8'));
  const tokenFile = join(await mkdtemp(join(tmpdir(), 'trellis-control-e2e-')), 'operator-token');
  t.after(() => removeTempDir(join(tokenFile, '..')));
  await writeFile(tokenFile, 'f'.repeat(64) + '\n'); // as `openssl rand -hex 32` would
  const control = await start(t, [
    'control',
    '--kubeconfig-server',
    kube.url,
    '--trust-domain',
    'cluster.local',
    '--operator-token-file',
    tokenFile,
    ...LOOPBACK,
  ]);
  assert.equal(control.ready.kubernetes, kube.url);
  const url = `http://${control.ready.http}`;
  const anonymous = await runCli(['identity', 'rotate', '--control', url]);
  assert.equal(anonymous.code, 1);
  assert.match(anonymous.stderr, /HTTP 401: .*--operator-token-file/);
  const rotate = await runCli(['identity', 'rotate', '--control', url, '--operator-token-file', tokenFile]);
  assert.equal(rotate.code, 0, rotate.stderr);
  assert.match(rotate.stdout, /^anchor rotation started/);

  const web = watchEndpoints(t, control.ready.grpc!, 'web.shop.svc.cluster.local:80');
  await waitFor('the ready pods of web', () => web.keys().join() === '10.244.1.12:8080,10.244.2.7:8080');
  await waitFor(
    'discovery to sync',
    async () => (await getJson(control.ready.http!, '/healthz')).status === 200,
  );
  const { body } = await getJson(control.ready.http!, '/api/services');
  const services = body as { name: string; ports: { port: number; endpoints: { address: string }[] }[] }[];
  const webView = services.find((s) => s.name === 'web');
  assert.deepEqual(
    webView?.ports.map((p) => [p.port, p.endpoints.map((e) => e.address).sort()]),
    [
      [80, ['10.244.1.12:8080', '10.244.2.7:8080']],
      [9090, ['10.244.1.12:9090', '10.244.2.7:9090']],
    ],
  );
  assert.equal(await control.stop(), 0, control.stderr());
});
