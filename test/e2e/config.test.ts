// Configuration errors of `trellis proxy`, end to end: a bad YAML file, an unknown setting, a
// wrong type, bad flag values and unknown flags each stop the process with exit code 2 and a
// message naming what is wrong (the file, line and column with the setting's dotted path, or the
// flag as typed); flags override the file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { once } from 'node:events';
import { CLI, LOOPBACK_LISTENERS, NODE, REPO, startProxyProcess } from '../helpers/proxy-process.ts';

const TEST_TIMEOUT = 60_000;

type After = { after(fn: () => unknown): void };

/** Runs `trellis proxy ARGS` to completion (bounded); listeners on port 0 in case it starts. */
function runProxy(args: string[]): { status: number | null; stderr: string } {
  const r = spawnSync(NODE, [CLI, 'proxy', ...LOOPBACK_LISTENERS, ...args], {
    cwd: REPO,
    encoding: 'utf8',
    timeout: 15_000,
    killSignal: 'SIGKILL',
  });
  return { status: r.status, stderr: r.stderr };
}

function configFile(t: After, yaml: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'trellis-config-e2e-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'proxy.yaml');
  writeFileSync(file, yaml);
  return file;
}

function assertConfigError(r: { status: number | null; stderr: string }, ...mentions: string[]): void {
  assert.equal(r.status, 2, `exit code; stderr: ${r.stderr}`);
  assert.match(r.stderr, /^trellis: /);
  for (const m of mentions) assert.ok(r.stderr.includes(m), `stderr should mention ${m}: ${r.stderr}`);
  assert.ok(r.stderr.split('\n').filter(Boolean).length <= 3, `a short message, not a stack: ${r.stderr}`);
}

test(
  'config file errors exit 2 naming the file, line and column, and the setting',
  { timeout: TEST_TIMEOUT },
  (t) => {
    const badYaml = configFile(t, 'timeouts:\n  connectMs: [1, 2\n');
    assertConfigError(runProxy(['--config', badYaml]), `${badYaml}:`, 'not valid YAML');

    const unknown = configFile(t, 'timeouts:\n  conectMs: 100\n');
    assertConfigError(
      runProxy(['--config', unknown]),
      `${unknown}:2:3: timeouts.conectMs`,
      'unknown setting',
    );

    const wrongType = configFile(t, 'timeouts:\n  connectMs: fast\n');
    assertConfigError(runProxy(['--config', wrongType]), `${wrongType}:2:14: timeouts.connectMs`, 'number');

    const badDestination = configFile(t, 'destinations:\n  - listen: 127.0.0.1:0\n    target: nowhere\n');
    assertConfigError(
      runProxy(['--config', badDestination]),
      `${badDestination}:3:13: destinations.0.target`,
      'HOST:PORT',
    );

    const notAList = configFile(t, 'destinations: 7\n');
    assertConfigError(
      runProxy(['--config', notAList, '--destination', '127.0.0.1:0=127.0.0.1:1']),
      'destinations',
    );

    assertConfigError(
      runProxy(['--config', path.join(tmpdir(), 'no-such-trellis-config.yaml')]),
      'cannot read',
    );

    // Checked after the rest (a descriptor must be open, a pipe): still named where it was set.
    const badFd = configFile(t, 'supervisor:\n  fd: 99\n');
    assertConfigError(
      runProxy(['--config', badFd]),
      `${badFd}:2:7: supervisor.fd: descriptor 99 is not an open pipe`,
    );
    assertConfigError(
      runProxy(['--config', badFd, '--supervisor-fd', '98']),
      '--supervisor-fd: descriptor 98 is not an open pipe',
    );
  },
);

test('flag errors exit 2 naming the flag', { timeout: TEST_TIMEOUT }, () => {
  assertConfigError(runProxy(['--app-port', 'abc']), '--app-port', 'whole number');
  assertConfigError(runProxy(['--app-port', '70000']), '--app-port', '1..65535');
  assertConfigError(runProxy(['--connect-timeout-ms', '-5']), '--connect-timeout-ms', 'negative');
  assertConfigError(runProxy(['--mode', 'sideways']), '--mode', 'explicit or transparent');
  assertConfigError(runProxy(['--opaque-ports', '25,smtp']), '--opaque-ports');
  assertConfigError(runProxy(['--destination', 'nonsense']), '--destination', 'LISTEN=TARGET');
  assertConfigError(runProxy(['--destination', '127.0.0.1:0=127.0.0.1:1/quic']), '--destination', 'auto');
  assertConfigError(runProxy(['--no-such-flag', '1']), '--no-such-flag', 'unknown flag');
  assertConfigError(runProxy(['--app-port']), '--app-port', 'needs a value');
  const stray = runProxy(['stray']);
  assert.equal(stray.status, 2);
  assert.match(stray.stderr, /unexpected argument 'stray'/);
});

test('a flag overrides a wrong value of the file; --help exits 0', { timeout: TEST_TIMEOUT }, async (t) => {
  const file = configFile(t, 'timeouts:\n  connectMs: -1\ndetect:\n  timeoutMs: 1234\n');
  const proxy = await startProxyProcess({ args: ['--config', file, '--connect-timeout-ms', '250'] });
  t.after(() => proxy.stop());
  const config = JSON.parse(await proxy.admin('/config')) as {
    timeouts: { connectMs: number };
    detect: { timeoutMs: number };
  };
  assert.equal(config.timeouts.connectMs, 250);
  assert.equal(config.detect.timeoutMs, 1234);

  const help = spawnSync(NODE, [CLI, 'proxy', '--help'], { cwd: REPO, encoding: 'utf8', timeout: 15_000 });
  assert.equal(help.status, 0);
  assert.match(help.stdout, /--drain-grace-ms/);
});

test(
  'a listen address in use stops the process (exit 1) naming the listener',
  { timeout: TEST_TIMEOUT },
  async (t) => {
    const taken = net.createServer();
    taken.listen(0, '127.0.0.1');
    await once(taken, 'listening');
    t.after(() => taken.close());
    const address = `127.0.0.1:${(taken.address() as net.AddressInfo).port}`;
    // The admin listener starts last: what started before it must not keep the process alive.
    for (const [flag, name] of [
      ['--admin-listen', 'admin'],
      ['--outbound-listen', 'outbound'],
    ] as const) {
      const r = runProxy([flag, address]);
      assert.equal(r.status, 1, `${flag}: ${r.stderr}`);
      assert.ok(r.stderr.includes(`${name} listener cannot listen on ${address}`), r.stderr);
    }
  },
);
