// `trellis run` and `trellis stat` end to end, as real processes on loopback: `trellis up` over a
// temp state folder, a service applied, `trellis run` starting a small HTTP app beside its proxy
// and registering it (address: the proxy's inbound listener), bounded traffic through that proxy,
// then `trellis stat` showing the workload's golden metrics as the control plane collected them.
// SIGTERM to `trellis run` stops the app and the proxy and withdraws the registration.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NODE, REPO } from '../helpers/proxy-process.ts';
import { freePort, runCli, startCli, startUp, waitFor } from '../helpers/cli.ts';
import { removeTempDir } from '../helpers/temp-dir.ts';

const HELLO = join(REPO, 'test/fixtures/hello-server.ts');
const start = startCli;

/** The workload registrations of a namespace, parsed. */
async function workloads(root: string, namespace: string): Promise<Record<string, unknown>[]> {
  const dir = join(root, 'workloads', namespace);
  const names = await readdir(dir).catch(() => [] as string[]);
  const files = names.filter((n) => n.endsWith('.json'));
  return Promise.all(
    files.map(async (n) => JSON.parse(await readFile(join(dir, n), 'utf8')) as Record<string, unknown>),
  );
}

/** Kills, at the end of the test, the app and proxy that `trellis run` reported (in case it failed to). */
function reapReported(t: { after(fn: () => void): void }, pids: RegExpExecArray | null): void {
  t.after(() => {
    for (const pid of [pids?.[1], pids?.[2]])
      if (pid !== undefined && isAlive(Number(pid))) process.kill(Number(pid), 'SIGKILL');
  });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const SERVICE_YAML = `apiVersion: v1
kind: Service
metadata: { name: hello, namespace: shop }
spec:
  ports:
    - { name: http, port: 80, targetPort: http }
`;

interface Stat {
  name: string;
  namespace: string;
  meshed: string;
  success: number | null;
  rps: number | null;
  latency_p50_ms: number | null;
  latency_p99_ms: number | null;
  tcp_conn: number | null;
}

test('trellis run registers a workload behind its proxy; trellis stat shows its traffic', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'trellis-run-e2e-'));
  t.after(() => removeTempDir(root));
  const up = await startUp(t, root);
  const file = join(root, 'hello.yaml');
  await writeFile(file, SERVICE_YAML);
  assert.equal((await runCli(['apply', '-f', file, '--state', root])).code, 0);

  const [appPort, upstreamPort] = [await freePort(), await freePort()];
  const run = start(t, [
    'run',
    '--state',
    root,
    '--name',
    'hello',
    '--namespace',
    'shop',
    '--port',
    String(appPort),
    '--upstream',
    `hello.shop:80=${upstreamPort}`,
    '--',
    NODE,
    HELLO,
    String(appPort),
  ]);
  const registration = await waitFor('the workload to be ready', async () => {
    const [w] = await workloads(root, 'shop');
    return w?.ready === true ? w : null;
  });
  assert.equal(registration.service, 'hello');
  assert.equal(registration.address, '127.0.0.1');
  assert.equal(registration.meshed, true);
  const inbound = registration.port as number;
  assert.notEqual(inbound, appPort, 'traffic goes to the proxy, not to the app');
  assert.deepEqual(registration.ports, [{ name: 'http', port: inbound }]);
  assert.match(registration.admin as string, /^127\.0\.0\.1:\d+$/);
  const pids = /app pid (\d+), proxy pid (\d+)/.exec(run.stderr());
  reapReported(t, pids);
  assert.ok(pids !== null, run.stderr());

  // The app got its proxy's addresses; the proxy listens for the upstream.
  const env = (await (await fetch(`http://127.0.0.1:${inbound}/env`)).json()) as Record<string, string>;
  const outbound = /outbound (127\.0\.0\.1:\d+)/.exec(run.stderr())?.[1];
  assert.deepEqual(env, {
    HTTP_PROXY: `http://${outbound}`,
    grpc_proxy: `http://${outbound}`,
    NO_PROXY: 'localhost,127.0.0.1',
    TRELLIS_WORKLOAD: 'hello',
    TRELLIS_NAMESPACE: 'shop',
    TRELLIS_PROXY_OUTBOUND: outbound,
    TRELLIS_PROXY_INBOUND: `127.0.0.1:${inbound}`,
    TRELLIS_PROXY_ADMIN: registration.admin,
  });
  const looped = await fetch(`http://127.0.0.1:${upstreamPort}/loop`);
  assert.equal(await looped.text(), 'hello /loop\n', 'hello.shop:80 resolves to the workload itself');

  // Bounded traffic through the inbound proxy until the control plane has scraped it twice.
  let rounds = 0;
  const stat = await waitFor('trellis stat to show the traffic', async () => {
    if (++rounds > 40) throw new Error('too many rounds');
    for (let i = 0; i < 10; i++) {
      const res = await fetch(`http://127.0.0.1:${inbound}/n${i}`);
      assert.equal(await res.text(), `hello /n${i}\n`);
    }
    // And some through the outbound listener (the app's side), for `--direction outbound`.
    assert.equal(await (await fetch(`http://127.0.0.1:${upstreamPort}/o`)).text(), 'hello /o\n');
    const out = await runCli(['stat', '-o', 'json', '--state', root]);
    assert.equal(out.code, 0, out.stderr);
    const hello = (JSON.parse(out.stdout) as Stat[]).find((s) => s.name === 'hello');
    return hello !== undefined && (hello.rps ?? 0) > 0 ? hello : null;
  });
  assert.equal(stat.namespace, 'shop');
  assert.equal(stat.meshed, '1/1');
  assert.equal(stat.success, 1);
  assert.ok(stat.latency_p50_ms !== null && stat.latency_p50_ms >= 0);
  assert.ok(stat.latency_p99_ms! >= stat.latency_p50_ms);

  const table = await runCli(['stat', '--state', root, '-n', 'shop', 'workload/hello']);
  assert.equal(table.code, 0, table.stderr);
  const [header, row, ...others] = table.stdout.trimEnd().split('\n');
  assert.match(
    header!,
    /^NAME\s+MESHED\s+SUCCESS\s+RPS\s+LATENCY_P50\s+LATENCY_P95\s+LATENCY_P99\s+TCP_CONN$/,
  );
  assert.match(row!, /^hello\s+1\/1\s+100\.00%\s+\d+\.\drps\s/);
  assert.deepEqual(others, []);

  // The outbound view over a minute: the requests the workload made through its proxy.
  const out = await runCli(['stat', '--direction', 'outbound', '-t', '1m', '-o', 'json', '--state', root]);
  assert.equal(out.code, 0, out.stderr);
  const [calls] = JSON.parse(out.stdout) as (Stat & { direction: string; window_s: number })[];
  assert.equal(calls?.direction, 'outbound');
  assert.ok((calls.rps ?? 0) > 0, out.stdout);
  assert.ok(calls.window_s > 0 && calls.window_s <= 60, out.stdout);
  const wide = await runCli(['stat', '-A', '-o', 'wide', '--state', root]);
  assert.match(
    wide.stdout,
    /^NAMESPACE\s+NAME\s.*TCP_CONN\s+READ_BYTES\/SEC\s+WRITE_BYTES\/SEC\nshop\s+hello\s/,
  );

  assert.equal(await run.stop(), 0, run.stderr());
  assert.deepEqual(await workloads(root, 'shop'), [], 'the registration is withdrawn');
  assert.equal(isAlive(Number(pids[1])), false, 'the app has exited');
  assert.equal(isAlive(Number(pids[2])), false, 'the proxy has exited');
  await waitFor('the workload to leave trellis stat', async () => {
    const out = await runCli(['stat', '-o', 'json', '--state', root]);
    return (JSON.parse(out.stdout) as Stat[]).length === 0 ? true : null;
  });
  assert.equal(await up.stop(), 0, up.stderr());
});

test('trellis run creates a missing service and refuses to start without a control plane', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'trellis-run-e2e-'));
  t.after(() => removeTempDir(root));
  const none = await runCli([
    'run',
    '--state',
    root,
    '--name',
    'hello',
    '--port',
    '1',
    '--',
    NODE,
    '-e',
    '0',
  ]);
  assert.equal(none.code, 1);
  assert.match(none.stderr, /no control plane runs over/);

  const up = await startUp(t, root);
  // An app that exits on its own with code 3 (--restart=never: not started again): trellis run
  // exits with it, says so, and leaves nothing behind, not even the service it created for it.
  const appPort = await freePort();
  const result = await runCli([
    'run',
    '--state',
    root,
    '--name',
    'once',
    '--port',
    String(appPort),
    '--restart=never',
    '--',
    NODE,
    '-e',
    'process.exit(3)',
  ]);
  assert.equal(result.code, 3, result.stderr);
  assert.match(result.stderr, /created service once\.default with port 80: http:\/\/once\.default\/ reaches/);
  assert.match(result.stderr, /removed service once\.default: its app never became ready/);
  assert.match(
    result.stderr.trimEnd().split('\n').at(-1)!,
    /^trellis run: exiting with 3: the app exited with code 3$/,
  );
  await assert.rejects(readFile(join(root, 'services/default/once.yaml'), 'utf8'), /ENOENT/);
  assert.deepEqual(await workloads(root, 'default'), []);
  const pids = /app pid (\d+), proxy pid (\d+)/.exec(result.stderr);
  reapReported(t, pids);
  assert.ok(pids !== null && !isAlive(Number(pids[2])), 'the proxy has exited');
  assert.equal(await up.stop(), 0, up.stderr());
});
