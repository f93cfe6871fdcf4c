// `trellis demo` end to end, as a user runs it: real demo services and real proxies on loopback.
// With --duration and -o json it prints rows for both workloads with traffic, success rates and
// latencies, then exits 0 leaving no process behind; SIGTERM stops it cleanly too; and a child
// that dies stops the demo with a non-zero exit, again leaving nothing behind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { CLI, NODE, REPO } from '../helpers/proxy-process.ts';

const TEST_TIMEOUT = 90_000;

type After = { after(fn: () => unknown): void };

interface DemoRun {
  proc: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Pids of the processes the demo started, by name, from its "<name> is up (pid N, ...)" notes. */
  children(): Map<string, number>;
  exited: Promise<number | null>;
}

function startDemo(t: After, args: string[]): DemoRun {
  const proc = spawn(NODE, [CLI, 'demo', ...args], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = once(proc, 'exit').then(([code]) => code as number | null);
  const children = () =>
    new Map([...err.matchAll(/trellis demo: (.+?) is up \(pid (\d+)/g)].map((m) => [m[1]!, Number(m[2])]));
  t.after(async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGKILL');
      await exited;
    }
    for (const pid of children().values()) if (alive(pid)) process.kill(pid, 'SIGKILL');
  });
  return { proc, stdout: () => out, stderr: () => err, children, exited };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Waits until `check` holds, polling; fails after `ms`. */
async function until(check: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Every process the demo started is gone, and none of its demo services shows up in pgrep. */
function assertNothingLeft(run: DemoRun): void {
  const pids = run.children();
  assert.deepEqual([...pids.keys()].sort(), ['quotes', 'quotes proxy', 'web', 'web proxy'], run.stderr());
  for (const [name, pid] of pids) assert.equal(alive(pid), false, `${name} (pid ${pid}) is still running`);
  const pgrep = spawnSync('pgrep', ['-f', 'examples/demo-app/(web|quotes)\\.ts'], { encoding: 'utf8' });
  const running = pgrep.stdout.split('\n').filter(Boolean).map(Number);
  for (const pid of pids.values()) assert.ok(!running.includes(pid), `pgrep still finds pid ${pid}`);
}

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

test(
  'trellis demo --duration 6 -o json shows both workloads with traffic, then exits 0 and cleans up',
  { timeout: TEST_TIMEOUT },
  async (t) => {
    const run = startDemo(t, ['--duration', '6', '-o', 'json']);
    const code = await run.exited;
    assert.equal(code, 0, run.stderr());
    const tables = run
      .stdout()
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Row[]);
    assert.ok(tables.length >= 3, `expected a table a second, got ${tables.length}`);
    const last = tables[tables.length - 1]!;
    assert.deepEqual(
      last.map((r) => r.name),
      ['web', 'quotes'],
    );
    for (const row of last) {
      assert.equal(row.meshed, '1/1');
      assert.ok(row.rps !== null && row.rps > 5, `${row.name} rps ${row.rps}`);
      assert.ok(
        row.success !== null && row.success > 0.5 && row.success <= 1,
        `${row.name} success ${row.success}`,
      );
      const { latencyMsP50: p50, latencyMsP95: p95, latencyMsP99: p99 } = row;
      assert.ok(p50 !== null && p95 !== null && p99 !== null, `${row.name} latencies`);
      assert.ok(
        p50 > 0 && p50 <= p95 && p95 <= p99 && p99 < 5000,
        `${row.name} latencies ${p50} ${p95} ${p99}`,
      );
      assert.ok(row.tcpConnections !== null && row.tcpConnections >= 1, `${row.name} connections`);
    }
    const quotes = last.find((r) => r.name === 'quotes')!;
    assert.ok(quotes.success! < 1, 'quotes fails ~10% of /quote/random on purpose');
    // web waits for quotes, through two proxies: its median cannot be below quotes' by much
    assert.ok(last[0]!.latencyMsP50! >= quotes.latencyMsP50! * 0.5);
    assertNothingLeft(run);
  },
);

test('SIGTERM stops the demo with exit 0 and leaves nothing behind', { timeout: TEST_TIMEOUT }, async (t) => {
  const run = startDemo(t, ['--interval', '500']);
  await until(() => run.stdout().includes('LATENCY_P99'), 60_000, 'the first table');
  assert.match(run.stdout(), /^web\s+1\/1/m);
  run.proc.kill('SIGTERM');
  assert.equal(await run.exited, 0, run.stderr());
  assertNothingLeft(run);
});

test(
  'a child that dies stops the demo with a non-zero exit and the others are stopped',
  { timeout: TEST_TIMEOUT },
  async (t) => {
    const run = startDemo(t, ['-o', 'json']);
    await until(() => run.children().size === 4, 60_000, 'the demo to start its processes');
    process.kill(run.children().get('quotes proxy')!, 'SIGKILL');
    assert.equal(await run.exited, 1);
    assert.match(run.stderr(), /quotes proxy \(pid \d+\) exited on SIGKILL/);
    assertNothingLeft(run);
  },
);
