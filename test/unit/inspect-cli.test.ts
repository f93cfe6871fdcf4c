// The habits every inspection command shares (src/cli/targeting.ts), through the real `trellis`
// binary against a stand-in control plane and proxy admin listener: KIND/NAME with linkerd's kinds
// (deploy, po, ns, svc), -n, -o (table, wide, json where they apply), --state or $TRELLIS_STATE;
// a workload that does not exist exits 1 with a message, an unknown short flag or output exits 2;
// `trellis version`, `--version` and `trellis help CMD`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { WorkloadStat } from '../../src/control/metrics/collector.ts';
import type { AuthzView } from '../../src/control/policy/component.ts';
import { writeWorkloadFile } from '../../src/control/discovery/local-state.ts';
import { writeControlFile } from '../../src/api/control-file.ts';
import { runCli } from '../helpers/cli.ts';
import { createCa } from '../helpers/mesh-pki.ts';
import { removeTempDir } from '../helpers/temp-dir.ts';

const stat = (namespace: string, name: string, success: number): WorkloadStat => ({
  namespace,
  name,
  meshed: '1/1',
  success,
  rps: 2.5,
  latency_p50_ms: 1,
  latency_p95_ms: 2,
  latency_p99_ms: 3,
  tcp_conn: 1,
  direction: 'inbound',
  window_s: 10,
  read_bytes_per_s: 1500,
  write_bytes_per_s: 20.25,
});
const STATS = [stat('emojivoto', 'voting', 0.9), stat('emojivoto', 'web', 1), stat('shop', 'web', 1)];

/** A state folder whose control.json names a stand-in control plane, with web-1 and web-2 registered. */
async function mesh(t: { after(fn: () => unknown): void }) {
  const root = await mkdtemp(join(tmpdir(), 'trellis-inspect-cli-'));
  t.after(() => removeTempDir(root));
  const server = createServer((req, res) => {
    const url = new URL(req.url!, 'http://x');
    const json = (body: unknown) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    const namespace = url.searchParams.get('namespace');
    if (url.pathname === '/api/stat') {
      // The direction and window asked for come back in each line, as the control plane's do.
      const direction = url.searchParams.get('direction') as 'inbound' | 'outbound';
      const window_s = Number(/^(\d+)ms$/.exec(url.searchParams.get('window') ?? '')?.[1]) / 1000;
      json(
        STATS.filter((s) => namespace === null || s.namespace === namespace).map((s) => ({
          ...s,
          direction,
          window_s,
        })),
      );
    } else if (url.pathname === '/api/authz') {
      const view: AuthzView = {
        namespace: namespace!,
        workload: url.searchParams.get('workload')!,
        labels: {},
        servers: [],
        skipped: [],
      };
      json(view);
    } else if (url.pathname === '/healthz' || url.pathname === '/ready') json({ status: 'ok' });
    else if (url.pathname === '/config') json({ policy: { default: 'deny' } });
    else res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const address = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  await writeControlFile(root, { grpc: '127.0.0.1:1', http: address, pid: process.pid });
  await writeFile(join(root, 'trust-anchor.pem'), (await createCa()).certPem);
  for (const [ns, name] of [
    ['emojivoto', 'web-1'],
    ['shop', 'web-2'],
  ] as const) {
    await writeWorkloadFile(root, ns, name, {
      service: 'web',
      address: '127.0.0.1',
      port: 1,
      admin: address,
    });
  }
  return root;
}

test('trellis stat: deploy/NAME, ns/NAME, -n, -A, -t, --direction, -o wide|json; a missing workload exits 1', async (t) => {
  const root = await mesh(t);
  const all = await runCli(['stat', '--state', root]);
  assert.equal(all.code, 0, all.stderr);
  assert.deepEqual(
    all.stdout.split('\n').map((l) => l.split(/\s+/).slice(0, 2).join(' ')),
    ['NAMESPACE NAME', 'emojivoto voting', 'emojivoto web', 'shop web', ''],
  );
  assert.equal((await runCli(['stat', 'deploy', '--state', root])).stdout, all.stdout);
  assert.equal((await runCli(['stat', 'deployments', '--state', root])).stdout, all.stdout);

  const web = await runCli(['stat', '-n', 'emojivoto', 'deploy/web', '--state', root]);
  assert.equal(web.code, 0, web.stderr);
  assert.deepEqual(
    web.stdout.split('\n').map((l) => l.split(/\s+/)[0]),
    ['NAME', 'web', ''],
  );
  assert.match(web.stdout, /^NAME\s+MESHED\s+SUCCESS\s+RPS\s/);
  assert.equal(
    (await runCli(['stat', 'svc/web', '--namespace', 'emojivoto', '--state', root])).stdout,
    web.stdout,
  );
  const byNamespace = await runCli(['stat', 'ns/emojivoto', '--state', root]);
  assert.equal(byNamespace.stdout, (await runCli(['stat', '-n', 'emojivoto', '--state', root])).stdout);
  assert.match(byNamespace.stdout, /^NAME\s/);
  const wide = await runCli(['stat', '-n', 'emojivoto', '-o', 'wide', '--state', root]);
  assert.match(wide.stdout, /^NAMESPACE\s+NAME\s+MESHED.*\nemojivoto\s+voting\s/);
  assert.match(wide.stdout, /^NAMESPACE\s+NAME\s+MESHED.*TCP_CONN\s+READ_BYTES\/SEC\s+WRITE_BYTES\/SEC\n/);
  assert.match(wide.stdout, /\n\S+\s+voting\s.*\s1\.5kB\/s\s+20\.3B\/s\n/);
  const json = await runCli(['stat', 'deploy/web', '-o', 'json', '--state', root]);
  assert.deepEqual(JSON.parse(json.stdout), [STATS[1], STATS[2]]);
  const outbound = await runCli([
    'stat',
    '-t',
    '1m30s',
    '--direction',
    'outbound',
    '-o',
    'json',
    '--state',
    root,
  ]);
  assert.deepEqual(
    (JSON.parse(outbound.stdout) as WorkloadStat[]).map((s) => [s.name, s.direction, s.window_s]),
    [
      ['voting', 'outbound', 90],
      ['web', 'outbound', 90],
      ['web', 'outbound', 90],
    ],
  );
  assert.equal((await runCli(['stat', '-A', '--state', root])).stdout, all.stdout);
  assert.equal((await runCli(['stat', '--all-namespaces', 'deploy', '--state', root])).stdout, all.stdout);

  const missing = await runCli(['stat', 'deploy/nope', '-n', 'emojivoto', '--state', root]);
  assert.deepEqual(
    [missing.code, missing.stdout, missing.stderr],
    [1, '', 'trellis stat: no workload nope in namespace emojivoto\n'],
  );
  const refusals: [string[], RegExp][] = [
    [['stat', '-x', '--state', root], /^trellis: -x: unknown flag \(see --help\)\n$/],
    [['stat', '-o', 'yaml', '--state', root], /--output: expected table, wide, json, got 'yaml'/],
    [['stat', '-t', '11m', '--state', root], /--time-window: must be between 1s and 10m, got '11m'/],
    [['stat', '-t', '500ms', '--state', root], /--time-window: must be between 1s and 10m/],
    [['stat', '-t', 'soon', '--state', root], /--time-window: expected a duration/],
    [['stat', '--direction', 'sideways', '--state', root], /--direction: expected inbound or outbound/],
    [['stat', '-A', '-n', 'shop', '--state', root], /--all-namespaces: give -A or a namespace \(shop\)/],
    [['stat', '-A', 'ns/shop', '--state', root], /--all-namespaces: give -A or a namespace/],
    [
      ['stat', 'po/web-1', '--state', root],
      /KIND: expected deploy \(deployment, workload, wl, svc\), or ns \(namespace\), got 'po'/,
    ],
    [
      ['stat', 'ns/shop', '-n', 'emojivoto', '--state', root],
      /--namespace: 'emojivoto' and ns\/shop disagree/,
    ],
  ];
  for (const [args, message] of refusals) {
    const result = await runCli(args);
    assert.equal(result.code, 2, args.join(' '));
    assert.match(result.stderr, message);
  }
});

test('trellis authz and check: the same targeting; a missing workload exits 1', async (t) => {
  const root = await mesh(t);
  const authz = await runCli(['authz', '-n', 'emojivoto', 'deploy/web', '--state', root]);
  assert.equal(authz.code, 0, authz.stderr);
  assert.equal(
    authz.stdout,
    'No Server selects emojivoto/web: every port follows the proxy default.\nproxy default: deny (ports no Server selects)\n',
  );
  const json = await runCli(['authz', 'web', '-o', 'json', '-n', 'shop', '--state', root]);
  assert.equal((JSON.parse(json.stdout) as { namespace: string }).namespace, 'shop');
  const noWorkload = await runCli(['authz', 'voting', '-n', 'shop', '--state', root]);
  assert.equal(noWorkload.code, 1);
  assert.match(noWorkload.stderr, /^trellis authz: no workload voting in namespace shop/);
  assert.equal((await runCli(['authz', 'ns/shop', '--state', root])).code, 2);

  const check = await runCli(['check', 'deploy/web', '-n', 'shop', '--state', root]);
  assert.equal(check.code, 0, check.stdout + check.stderr);
  assert.match(check.stdout, /^✔ workload shop\/web-2 proxy: ready$/m);
  assert.doesNotMatch(check.stdout, /web-1/);
  const pod = await runCli(['check', 'po/web-1', '-o', 'json', '--state', root]);
  const checks = (JSON.parse(pod.stdout) as { check: string }[]).map((c) => c.check);
  assert.ok(
    checks.includes('workload emojivoto/web-1 proxy') && !checks.some((c) => c.includes('web-2')),
    checks.join(),
  );
  const none = await runCli(['check', 'po/web-9', '--state', root]);
  assert.equal(none.code, 1);
  assert.match(none.stdout, /^✖ instance web-9: not registered \(state folder /m);
});

test('TRELLIS_STATE names the state folder of every command without --state', async (t) => {
  const root = await mesh(t);
  const elsewhere = await mkdtemp(join(tmpdir(), 'trellis-inspect-cwd-'));
  t.after(() => removeTempDir(elsewhere));
  const env = { ...process.env, TRELLIS_STATE: root };
  const found = await runCli(['stat', '-n', 'shop'], { cwd: elsewhere, env });
  assert.equal(found.code, 0, found.stderr);
  assert.match(found.stdout, /^NAME\s.*\nweb\s/);
  const lost = await runCli(['stat'], { cwd: elsewhere, env: { ...process.env, TRELLIS_STATE: '' } });
  assert.equal(lost.code, 1);
  assert.match(lost.stderr, /no control plane runs over the state folder \.trellis/);
  await writeFile(
    join(elsewhere, 'db.yaml'),
    'apiVersion: v1\nkind: Service\nmetadata: {name: db, namespace: shop}\nspec: {ports: [{port: 5432}]}\n',
  );
  const applied = await runCli(['apply', '-f', 'db.yaml'], { cwd: elsewhere, env });
  assert.equal(applied.code, 0, applied.stderr);
  assert.ok(existsSync(join(root, 'services', 'shop', 'db.yaml')), 'apply writes into $TRELLIS_STATE');
  assert.equal(existsSync(join(elsewhere, '.trellis')), false);
});

test('trellis version, --version, and help CMD', async () => {
  const version = await runCli(['version']);
  assert.equal(version.code, 0);
  assert.match(version.stdout, /^trellis 0\.1\.0 \(node v24\.\d+\.\d+\)\n$/);
  assert.equal((await runCli(['--version'])).stdout, version.stdout);
  const help = await runCli(['help', 'stat']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: trellis stat /);
  assert.equal(help.stdout, (await runCli(['stat', '--help'])).stdout);
  const list = (await runCli(['help'])).stdout;
  assert.match(list, /^ {2}version +the version of trellis/m);
  // Every summary starts in the same column, behind the longest command name.
  const columns = list
    .split('\n')
    .filter((l) => /^ {2}[a-z]/.test(l))
    .map((l) => /^ {2}\S+ +/.exec(l)![0].length);
  assert.ok(columns.length > 10);
  assert.equal(new Set(columns).size, 1, list);
  // `version --help` and `help version` answer like every other command's --help.
  const versionHelp = await runCli(['version', '--help']);
  assert.equal(versionHelp.code, 0);
  assert.match(versionHelp.stdout, /^Usage: trellis version\n/);
  assert.equal((await runCli(['help', 'version'])).stdout, versionHelp.stdout);
  assert.equal((await runCli(['version', 'extra'])).code, 2);
  const unknown = await runCli(['help', 'nope']);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown command 'nope'/);
  // Names of Object.prototype are not commands (`constructor` crashed with a TypeError).
  for (const name of ['constructor', 'toString', '__proto__']) {
    const r = await runCli([name]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, new RegExp(`^trellis: unknown command '${name}'`));
  }
});
