// `trellis demo` end to end, as a user runs it. By default the emojivoto example on the mesh: a
// control plane over a temporary state folder and the four services each under `trellis run`.
// With --duration and -o json it prints rows for every workload with traffic, success rates and
// latencies (voting fails some votes on purpose), then exits 0 leaving no process and no state
// folder behind; SIGTERM stops it cleanly too; and a workload whose `trellis run` dies (its
// proxy and app die with it; a proxy alone would be started again) stops the demo with a
// non-zero exit, again leaving nothing behind. While it runs, `trellis stat`, `check`, `authz` and
// `identity` typed in the same folder work against it (it runs over the default state folder
// .trellis there), as does the command of its caption, pasted. `--simple` still runs the proxy-only
// demo. Each demo runs in a fresh working directory of its own.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { runCli } from '../helpers/cli.ts';
import { alive, type DemoRun, startDemo, stateFolder, until } from '../helpers/demo-run.ts';

const TEST_TIMEOUT = 120_000;
/** What the mesh demo starts: the control plane, and each service's `trellis run` with its app and proxy. */
const MESH_WORKLOADS = [
  'control plane',
  ...['emoji', 'vote-bot', 'voting', 'web'].flatMap((n) => [n, `${n} app`, `${n} proxy`]),
];

/** Every process the demo started (all of `names`) is gone, none shows up in pgrep, and its state folder is gone. */
function assertNothingLeft(run: DemoRun, names: readonly string[], scripts: RegExp): void {
  const pids = run.children();
  assert.deepEqual([...pids.keys()].sort(), [...names].sort(), run.stderr());
  for (const [name, pid] of pids) assert.equal(alive(pid), false, `${name} (pid ${pid}) is still running`);
  const pgrep = spawnSync('pgrep', ['-f', scripts.source], { encoding: 'utf8' });
  const running = pgrep.stdout.split('\n').filter(Boolean).map(Number);
  for (const pid of pids.values()) assert.ok(!running.includes(pid), `pgrep still finds pid ${pid}`);
  if (!names.includes('control plane')) return;
  const state = stateFolder(run.stderr());
  assert.ok(state !== undefined, 'the demo names its state folder');
  assert.equal(existsSync(state), false, `${state} was left behind`);
}

const EMOJIVOTO_SCRIPTS = /examples\/emojivoto\/(web|emoji|voting|vote-bot)\.ts/;

interface Row {
  name: string;
  meshed: string;
  success: number | null;
  rps: number | null;
  latencyMsP50: number | null;
  latencyMsP95: number | null;
  latencyMsP99: number | null;
  tcpConnections: number | null;
}

function parseTables(stdout: string): Row[][] {
  return stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Row[]);
}

function assertServing(row: Row, minRps: number): void {
  assert.equal(row.meshed, '1/1', row.name);
  assert.ok(row.rps !== null && row.rps > minRps, `${row.name} rps ${row.rps}`);
  assert.ok(
    row.success !== null && row.success > 0.5 && row.success <= 1,
    `${row.name} success ${row.success}`,
  );
  const { latencyMsP50: p50, latencyMsP95: p95, latencyMsP99: p99 } = row;
  assert.ok(p50 !== null && p95 !== null && p99 !== null, `${row.name} latencies`);
  assert.ok(p50 > 0 && p50 <= p95 && p95 <= p99 && p99 < 5000, `${row.name} latencies ${p50} ${p95} ${p99}`);
  assert.ok(row.tcpConnections !== null && row.tcpConnections >= 1, `${row.name} connections`);
}

/** The mesh demo started, once it printed its first table. */
async function runningDemo(t: { after(fn: () => unknown): void }): Promise<DemoRun> {
  const run = startDemo(t, ['--interval', '500']);
  await until(
    () => run.stdout().includes('LATENCY_P99'),
    90_000,
    'the first table',
    () => run.stderr() + run.stdout(),
  );
  return run;
}

/** SIGTERM stops the demo with exit 0, leaving nothing behind. */
async function stopDemo(run: DemoRun): Promise<void> {
  run.proc.kill('SIGTERM');
  assert.equal(await run.exited, 0, run.stderr());
  assertNothingLeft(run, MESH_WORKLOADS, EMOJIVOTO_SCRIPTS);
}

test(
  'trellis demo --duration 10 -o json: emojivoto on the mesh with traffic, then exits 0 and cleans up',
  { timeout: TEST_TIMEOUT },
  async (t) => {
    const run = startDemo(t, ['--duration', '10', '-o', 'json']);
    const code = await run.exited;
    assert.equal(code, 0, run.stderr());
    const tables = parseTables(run.stdout());
    assert.ok(tables.length >= 5, `expected a table a second, got ${tables.length}`);
    const last = tables[tables.length - 1]!;
    assert.deepEqual(
      last.map((r) => r.name),
      ['web', 'emoji', 'voting', 'vote-bot'],
    );
    const [web, emoji, voting, bot] = last as [Row, Row, Row, Row];
    for (const row of [web, emoji, voting]) assertServing(row, 3);
    assert.ok(voting.success! < 1, 'voting fails every vote for :doughnut: on purpose');
    assert.ok(web.success! < 1, 'web answers 500 when the vote fails');
    assert.ok(emoji.success! > 0.95, `emoji success ${emoji.success}`);
    assert.equal(bot.meshed, '1/1', 'vote-bot runs beside its proxy (it gets no inbound traffic)');
    assertNothingLeft(run, MESH_WORKLOADS, EMOJIVOTO_SCRIPTS);
  },
);

test('SIGTERM stops the demo with exit 0 and leaves nothing behind', { timeout: TEST_TIMEOUT }, async (t) => {
  const run = await runningDemo(t);
  assert.match(run.stdout(), /^web\s+1\/1/m);
  await stopDemo(run);
});

test(
  'while the demo runs, stat, check, authz, identity and the caption pasted work from its folder',
  { timeout: TEST_TIMEOUT },
  async (t) => {
    const run = await runningDemo(t);
    const state = stateFolder(run.stderr());
    assert.equal(state, join(run.cwd, '.trellis'), 'the default state folder of its working directory');
    const env = { ...process.env, TRELLIS_STATE: '' };
    const here = { cwd: run.cwd, env };

    const stat = await runCli(['stat', '-n', 'emojivoto'], here);
    assert.equal(stat.code, 0, stat.stderr);
    assert.match(stat.stdout, /^NAME\s+MESHED.*\n(\w+.*\n)*web\s+1\/1\s/);
    const check = await runCli(['check'], here);
    assert.equal(check.code, 0, check.stdout);
    assert.match(
      check.stdout,
      /^✔ workload emojivoto\/web-\S+ identity: spiffe:\/\/cluster\.local\/ns\/emojivoto\/sa\/web, chain verifies/m,
    );
    const authz = await runCli(['authz', 'voting', '-n', 'emojivoto'], here);
    assert.equal(authz.code, 0, authz.stderr);
    assert.match(authz.stdout, /^SERVER\s+PORT\s+PROTOCOL/);
    assert.match(authz.stdout, /identities spiffe:\/\/cluster\.local\/ns\/emojivoto\/sa\/web/);
    const identity = await runCli(['identity', 'web', '-n', 'emojivoto'], here);
    assert.equal(identity.code, 0, identity.stderr);
    assert.match(identity.stdout, /^-----BEGIN CERTIFICATE-----\n/);

    // The caption (a line, as the output is not a terminal) names a command that works pasted.
    const caption = /inbound, last 10 s \((.+)\)$/m.exec(run.stdout())?.[1];
    assert.ok(caption !== undefined && caption.endsWith(' stat -n emojivoto'), run.stdout().slice(0, 300));
    const pasted = spawnSync('sh', ['-c', caption], { cwd: run.cwd, env, encoding: 'utf8', timeout: 30_000 });
    assert.equal(pasted.status, 0, pasted.stderr);
    assert.match(pasted.stdout, /^web\s+1\/1\s/m);

    await stopDemo(run);
  },
);

test(
  "the demo's traces join: one trace spans vote-bot, web and the gRPC services web calls",
  { timeout: TEST_TIMEOUT },
  async (t) => {
    const run = await runningDemo(t);
    const here = { cwd: run.cwd, env: { ...process.env, TRELLIS_STATE: '' } };
    // web carries each request's trace context to its calls (examples/emojivoto/common.ts), so the
    // trace the vote-bot's proxy starts goes on through web to emoji or voting.
    // Spans reach the control plane in each proxy's batches (up to a second apart), so a trace is
    // looked at again until its web SERVER span is in: then the emoji or voting SERVER span must
    // sit under it, not at the top.
    const depth = (l: string) => l.indexOf('─ ');
    const joinedTree = (tree: string): boolean => {
      const lines = tree.split('\n');
      const callee = lines.find((l) => /\b(emoji|voting) SERVER\b/.test(l));
      const web = lines.find((l) => /\bweb SERVER\b/.test(l));
      return callee !== undefined && web !== undefined && depth(callee) > depth(web);
    };
    let joined: { trace_id: string; services: string[]; spans: number } | undefined;
    let last = '';
    const deadline = Date.now() + 30_000;
    while (joined === undefined && Date.now() < deadline) {
      const out = await runCli(['trace', '--service', 'web', '--limit', '200', '-o', 'json'], here);
      assert.equal(out.code, 0, out.stderr);
      const traces = JSON.parse(out.stdout) as { trace_id: string; services: string[]; spans: number }[];
      const candidates = traces.filter(
        (s) =>
          s.services.includes('vote-bot') &&
          s.services.includes('web') &&
          (s.services.includes('emoji') || s.services.includes('voting')) &&
          s.spans >= 4,
      );
      last = candidates.length === 0 ? out.stdout : '';
      // The oldest listed first: their spans have had the longest to come in.
      for (const candidate of candidates.slice(-5).reverse()) {
        const tree = await runCli(['trace', candidate.trace_id], here);
        assert.equal(tree.code, 0, tree.stderr);
        if (joinedTree(tree.stdout)) {
          joined = candidate;
          break;
        }
        last = tree.stdout;
      }
      if (joined === undefined) await new Promise((r) => setTimeout(r, 500));
    }
    assert.ok(joined !== undefined, `no trace joins web and emoji/voting under it: ${last.slice(0, 2000)}`);
    await stopDemo(run);
  },
);

test(
  'a workload that dies stops the demo with a non-zero exit and the others are stopped',

  { timeout: TEST_TIMEOUT },
  async (t) => {
    const run = startDemo(t, ['-o', 'json']);
    await until(() => run.children().has('vote-bot'), 90_000, 'the demo to start its processes');
    process.kill(run.children().get('voting')!, 'SIGKILL');
    assert.equal(await run.exited, 1);
    assert.match(run.stderr(), /voting \(pid \d+\) exited/);
    assertNothingLeft(run, MESH_WORKLOADS, EMOJIVOTO_SCRIPTS);
  },
);

test(
  'trellis demo --simple: two services beside their proxies, no control plane',
  { timeout: TEST_TIMEOUT },
  async (t) => {
    const run = startDemo(t, ['--simple', '--duration', '6', '-o', 'json']);
    const code = await run.exited;
    assert.equal(code, 0, run.stderr());
    const tables = parseTables(run.stdout());
    assert.ok(tables.length >= 3, `expected a table a second, got ${tables.length}`);
    const last = tables[tables.length - 1]!;
    assert.deepEqual(
      last.map((r) => r.name),
      ['web', 'quotes'],
    );
    for (const row of last) assertServing(row, 5);
    const quotes = last.find((r) => r.name === 'quotes')!;
    assert.ok(quotes.success! < 1, 'quotes fails ~10% of /quote/random on purpose');
    // web waits for quotes, through two proxies: its median cannot be below quotes' by much
    assert.ok(last[0]!.latencyMsP50! >= quotes.latencyMsP50! * 0.5);
    assertNothingLeft(
      run,
      ['quotes', 'quotes proxy', 'web', 'web proxy'],
      /examples\/demo-app\/(web|quotes)\.ts/,
    );
  },
);
