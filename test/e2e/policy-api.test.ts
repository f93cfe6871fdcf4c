// The policy API end to end on one machine: a control plane (startControlPlane with the local
// policy component over a temp state folder, as `trellis up` will wire it), fed by the real
// `trellis apply -f` process, watched by the proxy's authorizer through Policy.WatchInbound on
// loopback. A change applied with `trellis apply` reaches the stream within a second (measured
// from the moment apply exits); `apply --delete` removes it; GET /api/authz and `trellis authz`
// show the policy, with the proxy's default read from its admin /config when registered. The same
// component over the fake Kubernetes API serves a pod its policy and follows a CRD change.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../src/core/log.ts';
import { writeWorkloadFile } from '../../src/control/discovery/local-state.ts';
import { LocalWatcher } from '../../src/control/discovery/local.ts';
import { kubeConfigForServer } from '../../src/control/discovery/kubernetes.ts';
import { kubernetesPolicyComponent, localPolicyComponent } from '../../src/control/policy/component.ts';
import { FakeKubeServer } from '../fake-kube/server.ts';
import { writeControlFile } from '../../src/api/control-file.ts';
import { localCatalog, startControlPlane } from '../../src/control/server.ts';
import { createAuthorizer } from '../../src/proxy/policy/authorizer.ts';
import { runCli } from '../helpers/cli.ts';
import { NODE, REPO } from '../helpers/proxy-process.ts';
import { removeTempDir } from '../helpers/temp-dir.ts';
import { startStateControlPlane } from '../helpers/state-control-plane.ts';

const ALICE = { identity: 'spiffe://cluster.local/ns/shop/sa/alice', ip: '127.0.0.1' };
const ANON = { identity: null, ip: '127.0.0.1' };

const SERVER = `apiVersion: policy.trellis.dev/v1alpha1
kind: Server
metadata: { name: web-http, namespace: shop }
spec: { workload: web, port: http, protocol: http1 }
`;
const SHOP_ONLY = `apiVersion: policy.trellis.dev/v1alpha1
kind: AuthorizationPolicy
metadata: { name: web-from-shop, namespace: shop }
spec:
  server: web-http
  from: { namespaces: [shop] }
`;
const PUBLIC = `apiVersion: policy.trellis.dev/v1alpha1
kind: AuthorizationPolicy
metadata: { name: web-public, namespace: shop }
spec:
  server: web-http
  from: { unauthenticated: true }
  routes: [{ path: /public/*, methods: [GET] }]
`;

/** `trellis authz ARGS` (not yet registered in main.ts: its run() in a process of its own). */
async function runAuthz(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const script = `const m = await import(${JSON.stringify(join(REPO, 'src/cli/authz.ts'))});
process.exitCode = await m.run(process.argv.slice(1));`;
  const proc = spawn(NODE, ['--input-type=module', '-e', script, ...args], {
    cwd: REPO,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => proc.kill('SIGKILL'), 20_000);
  const [code] = (await once(proc, 'exit')) as [number | null];
  clearTimeout(timer);
  return { code, stdout, stderr };
}

function nextChange(authz: { onChange(l: () => void): () => void }, timeoutMs = 10_000): Promise<number> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no policy change in time')), timeoutMs);
    const off = authz.onChange(() => {
      clearTimeout(timer);
      off();
      resolve(performance.now() - started);
    });
  });
}

test('apply -> WatchInbound -> authorizer; changes within a second; authz API and CLI', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'trellis-policy-e2e-'));
  t.after(() => removeTempDir(root));
  // The service `trellis run --name web --port 18080` creates: port name http -> app port 18080.
  await writeFile(
    join(root, 'service.yaml'),
    'apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec: {ports: [{name: http, port: 18080, targetPort: http}]}\n',
  );
  await writeFile(join(root, 'server.yaml'), `${SERVER}---\n${SHOP_ONLY}`);
  await writeFile(join(root, 'public.yaml'), PUBLIC);
  const applied = await runCli([
    'apply',
    '-f',
    join(root, 'service.yaml'),
    '-f',
    join(root, 'server.yaml'),
    '--state',
    root,
  ]);
  assert.equal(applied.code, 0, applied.stderr);
  assert.equal(
    applied.stdout,
    'service/web.shop created\nserver/web-http.shop created\nauthorizationpolicy/web-from-shop.shop created\n',
  );

  const component = localPolicyComponent(root, silentLogger);
  const control = await startControlPlane({
    watcher: new LocalWatcher({ root }),
    catalog: localCatalog(root),
    grpcListen: '127.0.0.1:0',
    httpListen: '127.0.0.1:0',
    log: silentLogger,
    components: [component],
  });
  t.after(() => control.close());
  await writeControlFile(root, { grpc: control.grpc, http: control.http, pid: process.pid });

  const authz = createAuthorizer({
    defaultPolicy: 'all-unauthenticated',
    address: control.grpc,
    namespace: 'shop',
    workload: 'web',
    log: silentLogger,
  });
  t.after(() => authz.close());
  await authz.firstPolicy;
  assert.equal(authz.protocolOf(18080), 'http1');
  assert.deepEqual(authz.checkRequest(18080, ALICE, { method: 'GET', path: '/public/x' }), {
    allowed: true,
    server: 'shop/web-http',
    policy: 'shop/web-from-shop',
    audited: false,
  });
  assert.equal(
    authz.checkRequest(18080, ANON, { method: 'GET', path: '/public/x' }).policy,
    'shop/web-http:no-authorization',
  );
  assert.equal(authz.checkConnection(9999, ANON).policy, 'default:all-unauthenticated');

  // A second instance whose app listens on another port: its proxy names its own app port, and the
  // Server selects that port on it (not the port the workload's other facts give).
  const instance = createAuthorizer({
    defaultPolicy: 'all-unauthenticated',
    address: control.grpc,
    namespace: 'shop',
    workload: 'web',
    namedPorts: { http: 19090 },
    log: silentLogger,
  });
  t.after(() => instance.close());
  await instance.firstPolicy;
  assert.equal(instance.protocolOf(19090), 'http1');
  assert.equal(instance.protocolOf(18080), null);
  assert.equal(instance.checkConnection(19090, ANON).policy, 'shop/web-http:no-authorization');
  instance.close();

  // A new AuthorizationPolicy: the stream gets it within a second of `apply` exiting.
  const change = nextChange(authz);
  let apply = runCli(['apply', '-f', join(root, 'public.yaml'), '--state', root]);
  const applyDone = await apply;
  const afterApply = performance.now();
  assert.equal(applyDone.code, 0, applyDone.stderr);
  await change;
  const latencyMs = performance.now() - afterApply;
  t.diagnostic(`policy change reached the proxy ${latencyMs.toFixed(0)} ms after apply exited`);
  assert.ok(latencyMs < 1000, `took ${latencyMs} ms`);
  assert.equal(
    authz.checkRequest(18080, ANON, { method: 'GET', path: '/public/x' }).policy,
    'shop/web-public',
  );
  assert.equal(authz.checkRequest(18080, ANON, { method: 'POST', path: '/public/x' }).allowed, false);

  // GET /api/authz and `trellis authz` (no proxy registered: its default is unknown).
  const res = await fetch(`http://${control.http}/api/authz?namespace=shop&workload=web`);
  assert.equal(res.status, 200);
  const view = (await res.json()) as {
    servers: { name: string; port: number; authorizations: { name: string }[] }[];
  };
  assert.deepEqual(
    view.servers.map((s) => [s.name, s.port, s.authorizations.map((a) => a.name)]),
    [['shop/web-http', 18080, ['shop/web-from-shop', 'shop/web-public']]],
  );
  assert.equal((await fetch(`http://${control.http}/api/authz`)).status, 400);
  const table = await runAuthz(['web', '-n', 'shop', '--state', root]);
  assert.equal(table.code, 0, table.stderr);
  assert.equal(
    table.stdout,
    [
      'SERVER         PORT          PROTOCOL  AUTHORIZATION       WHO                       ROUTES',
      'shop/web-http  http (18080)  http1     shop/web-from-shop  namespaces shop           (whole server)',
      '                                       shop/web-public     anyone (unauthenticated)  GET /public/*',
      'proxy default: unknown (ports no Server selects)',
      '',
    ].join('\n'),
  );

  // A registered proxy whose admin /config says its default: `trellis authz` reads it.
  const admin = createServer((req, res) => {
    res.writeHead(req.url === '/config' ? 200 : 404, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ policy: { default: 'audit' } }));
  });
  await new Promise<void>((resolve) => admin.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => admin.close(() => resolve())));
  await writeWorkloadFile(root, 'shop', 'web-1', {
    service: 'web',
    address: '127.0.0.1',
    port: 40001,
    admin: `127.0.0.1:${(admin.address() as AddressInfo).port}`,
  });
  const json = await runAuthz(['web', '--namespace', 'shop', '-o', 'json', '--state', root]);
  assert.equal(json.code, 0, json.stderr);
  const parsed = JSON.parse(json.stdout) as { proxyDefault: string; servers: unknown[]; skipped: unknown[] };
  assert.equal(parsed.proxyDefault, 'audit');
  assert.equal(parsed.servers.length, 1);
  assert.deepEqual(parsed.skipped, []);

  // apply --delete removes the Server: its port falls back to the default policy.
  const removed = nextChange(authz);
  apply = runCli(['apply', '--delete', '-f', join(root, 'server.yaml'), '--state', root]);
  const deleted = await apply;
  assert.equal(deleted.code, 0, deleted.stderr);
  assert.equal(
    deleted.stdout,
    'server/web-http.shop deleted\nauthorizationpolicy/web-from-shop.shop deleted\n',
  );
  await removed;
  assert.equal(authz.protocolOf(18080), null);
  assert.equal(
    authz.checkRequest(18080, ANON, { method: 'POST', path: '/' }).policy,
    'default:all-unauthenticated',
  );
  const again = await runCli(['apply', '--delete', '-f', join(root, 'server.yaml'), '--state', root]);
  assert.equal(
    again.stdout,
    'server/web-http.shop not found\nauthorizationpolicy/web-from-shop.shop not found\n',
  );

  // Only web-public is left, for a Server that no longer exists: nothing selects the workload.
  const empty = await runAuthz(['web', '-n', 'shop', '--state', root]);
  assert.equal(
    empty.stdout,
    'No Server selects shop/web: every port follows the proxy default.\nproxy default: audit (ports no Server selects)\n',
  );
  assert.equal(component.openStreams, 1);
  authz.close();
  const deadline = Date.now() + 5000;
  while (component.openStreams > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.equal(component.openStreams, 0, 'the stream is released when the proxy goes');
});

// On one machine each `trellis run` instance of a workload has its own app port, and its proxy
// resolves a Server's port name to it (InboundRequest.named_ports). The view showed one number for
// the whole workload (the first instance's); it now shows the port as the Server wrote it and each
// instance's number, keeping `port` (a number) for the scripts that read it.
test('GET /api/authz and trellis authz show a named port as written, and its number per instance', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'trellis-policy-e2e-'));
  t.after(() => removeTempDir(root));
  await writeFile(
    join(root, 'policy.yaml'),
    [
      'apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec: {ports: [{name: web, port: 80, targetPort: http}]}\n',
      SERVER,
      SHOP_ONLY,
      'apiVersion: policy.trellis.dev/v1alpha1\nkind: Server\nmetadata: { name: web-metrics, namespace: shop }\nspec: { workload: web, port: 9090, protocol: http1 }\n',
    ].join('---\n'),
  );
  const applied = await runCli(['apply', '-f', join(root, 'policy.yaml'), '--state', root]);
  assert.equal(applied.code, 0, applied.stderr);
  // Two instances, as `trellis run` registers them: the named ports of the proxy's inbound port,
  // and the app port each of them reaches.
  for (const [instance, inbound, appPort] of [
    ['web-101', 40001, 18080],
    ['web-102', 40002, 19090],
  ] as const) {
    await writeWorkloadFile(root, 'shop', instance, {
      service: 'web',
      address: '127.0.0.1',
      ports: [{ name: 'http', port: inbound }],
      appPort,
    });
  }
  const control = await startControlPlane({
    watcher: new LocalWatcher({ root }),
    catalog: localCatalog(root),
    grpcListen: '127.0.0.1:0',
    httpListen: '127.0.0.1:0',
    log: silentLogger,
    components: [localPolicyComponent(root, silentLogger)],
  });
  t.after(() => control.close());
  await writeControlFile(root, { grpc: control.grpc, http: control.http, pid: process.pid });

  const view = (await (
    await fetch(`http://${control.http}/api/authz?namespace=shop&workload=web`)
  ).json()) as {
    servers: { name: string; port: number; portName?: string; instancePorts?: unknown }[];
  };
  assert.deepEqual(
    view.servers.map((s) => [s.name, s.port, s.portName, s.instancePorts]),
    [
      [
        'shop/web-http',
        18080,
        'http',
        [
          { instance: 'web-101', port: 18080 },
          { instance: 'web-102', port: 19090 },
        ],
      ],
      ['shop/web-metrics', 9090, undefined, undefined],
    ],
  );
  const table = await runAuthz(['web', '-n', 'shop', '--state', root]);
  assert.equal(table.code, 0, table.stderr);
  assert.equal(
    table.stdout,
    [
      'SERVER            PORT                         PROTOCOL  AUTHORIZATION                WHO              ROUTES',
      'shop/web-http     http (differs per instance)  http1     shop/web-from-shop           namespaces shop  (whole server)',
      'shop/web-metrics  9090                         http1     (none: every client denied)',
      'port http of shop/web-http per instance: web-101 18080, web-102 19090',
      'proxy default: unknown (ports no Server selects)',
      '',
    ].join('\n'),
  );
  const json = JSON.parse((await runAuthz(['web', '-n', 'shop', '-o', 'json', '--state', root])).stdout) as {
    servers: { port: number; portName?: string; instancePorts?: unknown[] }[];
  };
  assert.deepEqual(
    json.servers.map((s) => [s.port, s.portName, s.instancePorts?.length]),
    [
      [18080, 'http', 2],
      [9090, undefined, undefined],
    ],
  );
});

test('WatchInbound refuses a request without a workload, or with bad named ports', async (t) => {
  const { plane: control } = await startStateControlPlane(t, (root) => ({
    log: silentLogger,
    components: [localPolicyComponent(root, silentLogger)],
  }));
  const grpc = await import('@grpc/grpc-js');
  const { loadPolicyApi } = await import('../../src/api/load.ts');
  const client = new (loadPolicyApi().Policy)(control.grpc, grpc.credentials.createInsecure());
  t.after(() => client.close());
  const refusal = async (request: Record<string, unknown>): Promise<string> => {
    const call = client.WatchInbound(request);
    call.on('data', () => {});
    call.on('error', () => {}); // the status below is what counts (events.once would reject on 'error')
    const status = await new Promise<{ code: number; details: string }>((resolve) =>
      call.on('status', resolve),
    );
    assert.equal(status.code, grpc.status.INVALID_ARGUMENT);
    return status.details;
  };
  assert.match(await refusal({ namespace: 'shop', workload: '' }), /namespace and a workload/);
  assert.match(
    await refusal({ namespace: 'shop', workload: 'web', namedPorts: { http: 0 } }),
    /named_ports: http: 0 is not a port/,
  );
  assert.match(
    await refusal({ namespace: 'shop', workload: 'web', namedPorts: { 'Not A Name': 80 } }),
    /named_ports: "Not A Name" is not a port name/,
  );
  const many = Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`p${i}`, 80]));
  assert.match(await refusal({ namespace: 'shop', workload: 'web', namedPorts: many }), /at most 32 names/);
});

test('on Kubernetes: a pod gets its policy from CRDs and follows a change', async (t) => {
  const kube = new FakeKubeServer();
  await kube.start();
  t.after(() => kube.close());
  kube.applyYaml(readFileSync(new URL('../fake-kube/fixtures/web.yaml', import.meta.url), 'utf8'));
  kube.applyYaml(readFileSync(new URL('../fake-kube/fixtures/policy.yaml', import.meta.url), 'utf8'));
  const component = kubernetesPolicyComponent(kubeConfigForServer(kube.url), silentLogger);
  const { plane: control } = await startStateControlPlane(t, () => ({
    log: silentLogger,
    components: [component],
  }));
  const authz = createAuthorizer({
    defaultPolicy: 'deny',
    address: control.grpc,
    namespace: 'shop',
    workload: 'web-7d4b9c8f5-9hzlm',
    log: silentLogger,
  });
  t.after(() => authz.close());
  await authz.firstPolicy;
  // The pod's container port "http" is 8080; only the public GET routes are authorized.
  assert.equal(authz.protocolOf(8080), 'http1');
  assert.equal(
    authz.checkRequest(8080, ANON, { method: 'GET', path: '/public/a' }).policy,
    'shop/web-http-public',
  );
  assert.equal(authz.checkRequest(8080, ALICE, { method: 'GET', path: '/private' }).allowed, false);
  const change = nextChange(authz);
  kube.apply({
    apiVersion: 'policy.trellis.dev/v1alpha1',
    kind: 'AuthorizationPolicy',
    metadata: { name: 'web-http-shop', namespace: 'shop' },
    spec: { server: 'web-http', from: { namespaces: ['shop'] } },
  });
  const ms = await change;
  t.diagnostic(`CRD change reached the proxy in ${ms.toFixed(0)} ms`);
  assert.equal(
    authz.checkRequest(8080, ALICE, { method: 'GET', path: '/private' }).policy,
    'shop/web-http-shop',
  );
});
