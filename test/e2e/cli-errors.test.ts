// Wrong invocations of the CLI, as a new user types them: each exits with a status and one clear
// line naming what is wrong (the flag or argument, and what it takes), never a stack trace, never
// the usage text in place of the error, never "trellis: trellis CMD:", and never a name that only
// the code knows (a query parameter, a library's "fetch failed").
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { once } from 'node:events';
import { CLI, NODE, REPO } from '../helpers/proxy-process.ts';

const TEST_TIMEOUT = 60_000;

type After = { after(fn: () => unknown): void };

/** A fresh empty folder, removed after the test: a state folder or a HOME with no kubeconfig. */
function emptyDir(t: After): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'trellis-cli-errors-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Runs `trellis ARGS` to completion (bounded), over an empty state folder. */
function trellis(
  t: After,
  args: string[],
  env: NodeJS.ProcessEnv = {},
): { status: number | null; stderr: string } {
  const r = spawnSync(NODE, [CLI, ...args], {
    cwd: REPO,
    encoding: 'utf8',
    timeout: 20_000,
    killSignal: 'SIGKILL',
    env: { ...process.env, TRELLIS_STATE: emptyDir(t), ...env },
  });
  return { status: r.status, stderr: r.stderr };
}

/** One line on stderr, `trellis: ...` or `trellis CMD: ...`, with no stack trace or usage text. */
function assertOneClearLine(stderr: string): void {
  assert.match(stderr, /^trellis( [a-z-]+)?: [^\n]+\n$/, `stderr: ${stderr}`);
  assert.doesNotMatch(stderr, /^trellis: trellis [a-z-]+:/, 'the command is named once');
  assert.doesNotMatch(stderr, /Usage:|\n {4}at /);
}

test(
  'a missing RESOURCE of tap and top says it is required, naming the command once',
  { timeout: TEST_TIMEOUT },
  (t) => {
    for (const command of ['tap', 'top']) {
      const r = trellis(t, [command]);
      assert.equal(r.status, 2, r.stderr);
      assertOneClearLine(r.stderr);
      assert.match(r.stderr, /RESOURCE: required: /);
      assert.match(r.stderr, /deploy\/web/);
    }
  },
);

test('tap --max-rps out of range names the flag, not the query parameter', { timeout: TEST_TIMEOUT }, (t) => {
  const r = trellis(t, ['tap', 'web', '--max-rps', '5000']);
  assert.equal(r.status, 2, r.stderr);
  assertOneClearLine(r.stderr);
  assert.equal(r.stderr, "trellis: --max-rps: must be a whole number from 1 to 1000, got '5000'\n");
});

test('errors that name their command are not prefixed "trellis:" again', { timeout: TEST_TIMEOUT }, (t) => {
  for (const [args, mention] of [
    [['trace', 'zzz'], "trellis trace: 'zzz' is not a trace id"],
    [['stat', 'a', 'b'], "trellis stat: unexpected argument 'b'"],
    [['demo', 'extra'], "trellis demo: unexpected argument 'extra'"],
    [['edges', 'extra'], "trellis edges: unexpected argument 'extra'"],
  ] as const) {
    const r = trellis(t, [...args]);
    assert.equal(r.status, 2, r.stderr);
    assertOneClearLine(r.stderr);
    assert.ok(r.stderr.startsWith(mention), r.stderr);
  }
});

test(
  'trellis identity without NAME says what it takes, not the whole usage',
  { timeout: TEST_TIMEOUT },
  (t) => {
    const r = trellis(t, ['identity']);
    assert.equal(r.status, 2, r.stderr);
    assertOneClearLine(r.stderr);
    assert.match(r.stderr, /NAME: required: /);
    assert.match(r.stderr, /status/);
    assert.match(r.stderr, /rotate/);
  },
);

test('a zero duration is refused as too short, not as no duration', { timeout: TEST_TIMEOUT }, (t) => {
  for (const [args, flag] of [
    [['prometheus-config', '--scrape-interval', '0s'], '--scrape-interval'],
    [['tap', 'web', '--duration', '0ms'], '--duration'],
  ] as const) {
    const r = trellis(t, [...args]);
    assert.equal(r.status, 2, r.stderr);
    assertOneClearLine(r.stderr);
    assert.ok(r.stderr.startsWith(`trellis: ${flag}: must be longer than 0, got '0`), r.stderr);
  }
});

test(
  'check --pre without any kubeconfig says so, instead of failing on localhost:8080',
  { timeout: TEST_TIMEOUT },
  (t) => {
    const home = emptyDir(t);
    const env = { HOME: home, KUBECONFIG: '', KUBERNETES_SERVICE_HOST: '' };
    const r = trellis(t, ['check', '--pre'], env);
    assert.equal(r.status, 2, r.stderr);
    assertOneClearLine(r.stderr);
    assert.match(r.stderr, /^trellis: --kubeconfig: no kubeconfig found/);
    assert.ok(r.stderr.includes(path.join(home, '.kube', 'config')), r.stderr);
    assert.doesNotMatch(r.stderr, /skipTLSVerify|localhost:8080/);
  },
);

test(
  'a control plane that refuses the connection is said so, not "fetch failed"',
  { timeout: TEST_TIMEOUT },
  async (t) => {
    // A loopback port nothing listens on: bound once, then closed.
    const server = net.createServer().listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as net.AddressInfo;
    server.close();
    await once(server, 'close');
    for (const args of [['stat'], ['tap', 'web', '--max-events', '1']]) {
      const r = trellis(t, [...args, '--control', `http://127.0.0.1:${port}`]);
      assert.equal(r.status, 1, r.stderr);
      assertOneClearLine(r.stderr);
      assert.match(
        r.stderr,
        new RegExp(`cannot reach the control plane at http://127\\.0\\.0\\.1:${port}: `),
      );
      assert.match(r.stderr, /connection refused \(ECONNREFUSED\)/);
      assert.doesNotMatch(r.stderr, /fetch failed/);
    }
  },
);
