// `trellis stat --from/--to` end to end on loopback: `trellis up`, a meshed server and two meshed
// clients under `trellis run`, each client calling the server through its proxy's upstream
// listener (client proxy -> mTLS -> server proxy). A sends 30 requests and B 10, once the control
// plane has scraped every proxy; then the server's inbound view --from A counts A's 30 only (told by
// A's identity), --from B B's 10, and the clients' outbound views --to the server count their own.
// A peer that is no workload, and flags that disagree, are refused with a message.
// The bound: a client calling a service of MAX_PEERS + 30 workloads through its proxy gives the
// first MAX_PEERS destinations (the undiscovered one counts) series of their own and the rest
// "other", counted in trellis_peer_overflow_total, as its live /metrics page (checked by promtool)
// shows.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, runCli, startCli, waitFor } from '../helpers/cli.ts';
import { NODE, REPO } from '../helpers/proxy-process.ts';
import { readyRegistration, reaper, reportedPids, startUp } from '../helpers/trellis-run.ts';
import { writeServiceFile, writeWorkloadFile } from '../../src/control/discovery/local-state.ts';
import { MAX_PEERS } from '../../src/core/peer-metric-names.ts';
import { parsePrometheusText } from '../../src/core/prom-parse.ts';
import { removeTempDir } from '../helpers/temp-dir.ts';

const HELLO = join(REPO, 'test/fixtures/hello-server.ts');

interface Stat {
  name: string;
  rps: number | null;
  success: number | null;
  window_s: number | null;
  tcp_conn: number | null;
  direction: string;
  from?: string;
  to?: string;
}

/** The requests a stat line counted over its window (rps times the span it covers). */
function counted(stat: Stat | undefined): number {
  return Math.round((stat?.rps ?? 0) * (stat?.window_s ?? 0));
}

test('trellis stat --from/--to: by client identity inbound, by destination workload outbound', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'trellis-stat-peer-'));
  t.after(() => removeTempDir(root));
  const reap = reaper(t);
  await startUp(t, root);
  const [serverPort, aPort, bPort, aToServer, bToServer] = await Promise.all(
    Array.from({ length: 5 }, () => freePort()),
  );
  const runs = [
    // prettier-ignore
    startCli(t, ['run', '--state', root, '--name', 'server', '--port', String(serverPort), '--', NODE, HELLO, String(serverPort)]),
    // prettier-ignore
    startCli(t, ['run', '--state', root, '--name', 'client-a', '--port', String(aPort), '--upstream', `server.default:80=${aToServer}`, '--', NODE, HELLO, String(aPort)]),
    // prettier-ignore
    startCli(t, ['run', '--state', root, '--name', 'client-b', '--port', String(bPort), '--upstream', `server.default:80=${bToServer}`, '--', NODE, HELLO, String(bPort)]),
  ];
  for (const name of ['server', 'client-a', 'client-b']) await readyRegistration(root, name);
  for (const run of runs) {
    const pids = await waitFor('pids', async () => reportedPids(run.stderr()));
    reap([pids.app, pids.proxy]);
  }
  const stat = async (...args: string[]): Promise<Stat[]> => {
    const out = await runCli(['stat', '--state', root, '-t', '1m', '-o', 'json', ...args]);
    assert.equal(out.code, 0, out.stderr);
    return JSON.parse(out.stdout) as Stat[];
  };
  // Every proxy scraped twice before any traffic: the windows start before the first request.
  await waitFor('every proxy scraped', async () => {
    const all = await stat();
    return all.length === 3 && all.every((s) => s.window_s !== null) ? all : null;
  });

  for (const [port, n] of [
    [aToServer, 30],
    [bToServer, 10],
  ] as const) {
    for (let i = 0; i < n; i++) {
      const res = await fetch(`http://127.0.0.1:${port}/r${i}`);
      assert.equal(await res.text(), `hello /r${i}\n`);
    }
  }

  const [fromA] = await waitFor('the scrapes to show the 40 requests', async () => {
    const served = await stat('deploy/server', '--from', 'deploy/client-a');
    const all = await stat('deploy/server');
    return counted(all[0]) === 40 && counted(served[0]) >= 30 ? served : null;
  });
  assert.equal(fromA!.name, 'server');
  assert.equal(fromA!.direction, 'inbound');
  assert.equal(fromA!.from, 'default/client-a');
  assert.equal(counted(fromA), 30, "only client-a's requests");
  assert.equal(fromA!.success, 1);
  assert.equal(fromA!.tcp_conn, null, 'connections are not counted by peer');
  const [fromB] = await stat('server', '--from', 'client-b');
  assert.equal(counted(fromB), 10, "only client-b's requests");

  // Outbound: each client's requests to the server, told by the endpoint discovery gave.
  const [aTo] = await stat('deploy/client-a', '--to', 'deploy/server');
  assert.equal(aTo!.direction, 'outbound');
  assert.equal(aTo!.to, 'default/server');
  assert.equal(counted(aTo), 30);
  const toServer = await stat('--to', 'server', '--to-namespace', 'default');
  assert.deepEqual(
    toServer.map((s) => [s.name, counted(s)]),
    [
      ['client-a', 30],
      ['client-b', 10],
      ['server', 0],
    ],
  );
  const [aToB] = await stat('deploy/client-a', '--to', 'deploy/client-b');
  assert.equal(counted(aToB), 0);

  // The table shows the same line, with "-" for what is not counted by peer.
  const table = await runCli(['stat', '--state', root, '-t', '1m', 'deploy/server', '--from', 'client-a']);
  assert.equal(table.code, 0, table.stderr);
  assert.match(
    table.stdout.trimEnd().split('\n')[1]!,
    /^default\s+server\s+1\/1\s+100\.00%\s+\S+rps\s.*\s-$/,
  );

  // Refusals, with what is wrong.
  const unknown = await runCli(['stat', '--state', root, 'deploy/server', '--from', 'deploy/nobody']);
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /--from: no workload nobody in namespace default/);
  const elsewhere = await runCli(['stat', '--state', root, '--to', 'server', '--to-namespace', 'shop']);
  assert.equal(elsewhere.code, 1);
  assert.match(elsewhere.stderr, /--to: no workload server in namespace shop/);
  const both = await runCli(['stat', '--state', root, '--from', 'client-a', '--to', 'server']);
  assert.notEqual(both.code, 0);
  assert.match(both.stderr, /give --from or --to, not both/);
  const against = await runCli(['stat', '--state', root, '--direction', 'outbound', '--from', 'client-a']);
  assert.notEqual(against.code, 0);
  assert.match(against.stderr, /--from: filters the requests a workload served \(inbound\)/);
  const notWorkload = await runCli(['stat', '--state', root, '--from', 'ns/default']);
  assert.notEqual(notWorkload.code, 0);
  assert.match(notWorkload.stderr, /--from: expected a workload/);
});

test('per-peer series are bounded: past MAX_PEERS destinations the rest are "other", counted', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'trellis-stat-peer-cap-'));
  t.after(() => removeTempDir(root));
  const reap = reaper(t);
  // MAX_PEERS + 30 workloads of one service, each its own listener in this process.
  const hits: number[] = [];
  const servers: http.Server[] = [];
  t.after(() =>
    servers.forEach((s) => {
      s.close();
      s.closeAllConnections(); // the proxy's keep-alive connections must not hold the file open
    }),
  );
  for (let i = 0; i < MAX_PEERS + 30; i++) {
    const server = http.createServer((_req, res) => {
      hits.push(i);
      res.end('ok');
    });
    servers.push(server);
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as { port: number }).port;
    // prettier-ignore
    await writeWorkloadFile(root, 'default', `many-${i}`, { service: 'many', address: '127.0.0.1', ports: [{ name: 'http', port }] });
  }
  await writeServiceFile(root, 'default', 'many', { ports: [{ port: 8080, targetPort: 'http' }] });
  await startUp(t, root);
  const [appPort, toMany] = await Promise.all([freePort(), freePort()]);
  // prettier-ignore
  const run = startCli(t, ['run', '--state', root, '--name', 'client', '--port', String(appPort), '--upstream', `many.default:8080=${toMany}`, '--', NODE, HELLO, String(appPort)]);
  const registration = await readyRegistration(root, 'client');
  reap(Object.values(await waitFor('pids', async () => reportedPids(run.stderr()))));

  // Bounded: at most 4,000 requests, until past the bound (about 700 are needed: the balancer picks
  // endpoints at random).
  const overflowed = (): number => new Set(hits).size - (MAX_PEERS - 1);
  for (let i = 0; i < 4000 && overflowed() < 5; i++) {
    const res = await fetch(`http://127.0.0.1:${toMany}/x`);
    assert.equal(await res.text(), 'ok');
  }
  assert.ok(overflowed() >= 5, `only ${new Set(hits).size} endpoints picked`);
  // The first MAX_PEERS - 1 workloads picked have series (the undiscovered one is the other);
  // requests to every later one are "other".
  const own = new Set<number>();
  let toOther = 0;
  for (const i of hits) {
    if (own.has(i) || own.size < MAX_PEERS - 1) own.add(i);
    else toOther++;
  }
  // (Polled: the page may be read a moment before the last exchange is recorded.)
  let last = '';
  const page = await waitFor('the page to count every request', async () => {
    const text = await (await fetch(`http://${registration.admin}/metrics`)).text();
    const series = parsePrometheusText(text).filter((s) => s.name === 'trellis_outbound_peer_response_total');
    const other = series
      .filter((s) => s.labels.dst_workload === 'other')
      .reduce((sum, s) => sum + s.value, 0);
    last = `other ${other}, expected ${toOther}`;
    return other === toOther ? text : null;
  }).catch((error: Error) => assert.fail(`${error.message}: ${last}`));
  const samples = parsePrometheusText(page);
  const series = samples.filter((s) => s.name === 'trellis_outbound_peer_response_total');
  const workloads = new Set(series.map((s) => `${s.labels.dst_namespace}/${s.labels.dst_workload}`));
  assert.equal(workloads.size, MAX_PEERS + 1, 'MAX_PEERS destinations and "other"');
  assert.ok(workloads.has('/other') && workloads.has('/unknown'));
  for (const i of own) assert.ok(workloads.has(`default/many-${i}`), `many-${i}`);
  const overflow = samples.find(
    (s) => s.name === 'trellis_peer_overflow_total' && s.labels.direction === 'outbound',
  );
  // Once per endpoint past the bound (again when discovery hands a new copy of one).
  assert.ok((overflow?.value ?? 0) >= overflowed(), `overflow ${overflow?.value}, past ${overflowed()}`);
  if (existsSync('/usr/bin/promtool')) {
    const check = spawnSync('/usr/bin/promtool', ['check', 'metrics'], { input: page, encoding: 'utf8' });
    assert.equal(check.status, 0, check.stdout + check.stderr);
  }
});
