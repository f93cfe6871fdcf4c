// The one-machine lifecycle of `trellis run`, end to end with real processes on loopback:
// - SIGKILL of `trellis run` takes its proxy, its app and the app's children with it, and its
//   registration expires (also when it was left behind while the control plane was down);
// - an app that crashes is started again after a backoff (not ready meanwhile), a proxy that is
//   killed too, on the same ports;
// - signals reach the app's whole process group; a command that does not exist leaves no service
//   or registration behind, nor does one whose port another process holds, and `trellis run` says
//   why it exits on its last line.
// Every process a test learns of is SIGKILLed when it ends, whatever happened.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NODE, REPO } from '../helpers/proxy-process.ts';
import { freePort, runCli, startCli, waitFor } from '../helpers/cli.ts';
import {
  familyOf,
  groupMembers,
  isGone,
  readyRegistration,
  reaper,
  registrations,
  reportedPids,
  startUp,
} from '../helpers/trellis-run.ts';
import { removeTempDir } from '../helpers/temp-dir.ts';

const APP = join(REPO, 'test/fixtures/lifecycle-app.ts');

async function tempState(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'trellis-lifecycle-'));
  t.after(() => removeTempDir(root));
  return root;
}

/** An app whose process group has two processes: a shell, and the app it started. */
function familyCommand(port: number): string[] {
  return ['sh', '-c', `"${NODE}" "${APP}" ${port} & wait`];
}

/** A short lease (--lease-ms), so that the expiries below come within seconds. */
const LEASE_MS = 2000;

test('SIGKILL of trellis run takes its proxy, app and the app children; the registration expires', async (t) => {
  const root = await tempState(t);
  const reap = reaper(t);
  let up = await startUp(t, root);
  const port = await freePort();
  // prettier-ignore
  const run = startCli(t, ['run', '--state', root, '--name', 'doomed', '--port', String(port), '--lease-ms', String(LEASE_MS), '--', ...familyCommand(port)]);
  await readyRegistration(root, 'doomed');
  const pids = reportedPids(run.stderr())!;
  const family = await groupMembers(pids.app);
  reap([pids.app, pids.proxy, ...family, ...(await familyOf(pids.app))]);
  assert.equal(family.length, 2, 'the shell and its child, in the app group');

  run.proc.kill('SIGKILL');
  await waitFor('the proxy and the app family to exit', async () =>
    [pids.proxy, ...family].every(isGone) ? true : null,
  );
  await waitFor('the registration to expire', async () =>
    (await registrations(root)).length === 0 ? true : null,
  );

  // Left behind while the control plane is down: the next one removes it once its lease runs out.
  // prettier-ignore
  const orphan = startCli(t, ['run', '--state', root, '--name', 'doomed', '--port', String(port), '--lease-ms', String(LEASE_MS), '--', ...familyCommand(port)]);
  await readyRegistration(root, 'doomed');
  const second = reportedPids(orphan.stderr())!;
  reap([second.app, second.proxy, ...(await familyOf(second.app))]);
  assert.equal(await up.stop(), 0);
  orphan.proc.kill('SIGKILL');
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.equal((await registrations(root)).length, 1, 'nobody removed it');
  up = await startUp(t, root);
  await waitFor('the new control plane to remove the stale registration', async () =>
    (await registrations(root)).length === 0 ? true : null,
  );
  const check = await runCli(['check', '--state', root, '-o', 'json']);
  const results = JSON.parse(check.stdout) as { check: string }[];
  assert.deepEqual(
    results.filter((r) => r.check.startsWith('workload')),
    [],
    'trellis check no longer sees it',
  );
  assert.equal(await up.stop(), 0);
});

test('a crashed app and a killed proxy are started again; the workload is not ready meanwhile', async (t) => {
  const root = await tempState(t);
  const reap = reaper(t);
  const up = await startUp(t, root);
  const port = await freePort();
  // prettier-ignore
  const run = startCli(t, ['run', '--state', root, '--name', 'phoenix', '--port', String(port), '--', NODE, APP, String(port)]);
  const registration = await readyRegistration(root, 'phoenix');
  const first = reportedPids(run.stderr())!;
  reap([first.app, first.proxy]);
  const inbound = `http://127.0.0.1:${registration.port}`;
  assert.equal(await (await fetch(`${inbound}/pid`)).text(), String(first.app));

  // The app crashes: not ready until it runs again, then started again after the backoff.
  await fetch(`${inbound}/crash`).catch(() => null);
  await waitFor('not ready', async () =>
    (await registrations(root)).some((r) => r.service === 'phoenix' && !r.ready) ? true : null,
  );
  await readyRegistration(root, 'phoenix');
  const second = reportedPids(run.stderr())!;
  reap([second.app]);
  assert.notEqual(second.app, first.app);
  assert.match(run.stderr(), /the app exited with code 1; starting it again in \d+\.\d s \(restart 1\)/);
  assert.equal(await (await fetch(`${inbound}/pid`)).text(), String(second.app));

  // The proxy is killed: started again on the same ports, the app untouched.
  process.kill(first.proxy, 'SIGKILL');
  await waitFor('a new proxy', async () => {
    const now = reportedPids(run.stderr());
    return /the proxy was killed by SIGKILL; starting it again/.test(run.stderr()) && now !== null
      ? true
      : null;
  });
  const text = await waitFor('the inbound port to answer again', async () => {
    try {
      return await (await fetch(`${inbound}/pid`)).text();
    } catch {
      return null;
    }
  });
  assert.equal(text, String(second.app), 'the same app, through the new proxy');
  await readyRegistration(root, 'phoenix');

  assert.equal(await run.stop(), 0, run.stderr());
  assert.match(
    run.stderr().trimEnd().split('\n').at(-1)!,
    /^trellis run: exiting with 0: stopped by SIGTERM; the app exited with code 0$/,
  );
  assert.deepEqual(await registrations(root), []);
  assert.equal(await up.stop(), 0);
});

test('signals reach the app group; a missing command leaves nothing behind; the last line says why', async (t) => {
  const root = await tempState(t);
  const reap = reaper(t);
  const up = await startUp(t, root);
  const port = await freePort();
  // prettier-ignore
  const run = startCli(t, ['run', '--state', root, '--name', 'family', '--port', String(port), '--', ...familyCommand(port)]);
  await readyRegistration(root, 'family');
  const pids = reportedPids(run.stderr())!;
  const family = await groupMembers(pids.app);
  reap([pids.app, pids.proxy, ...family, ...(await familyOf(pids.app))]);
  assert.equal(family.length, 2);
  const code = await run.stop(); // SIGTERM to trellis run: to the shell and to its child
  assert.deepEqual(
    family.filter((pid) => !isGone(pid)),
    [],
    'the whole group exited',
  );
  assert.match(
    run.stderr().trimEnd().split('\n').at(-1)!,
    new RegExp(
      `^trellis run: exiting with ${code}: stopped by SIGTERM; the app (exited with code|was killed by)`,
    ),
  );

  // prettier-ignore
  const missing = await runCli(['run', '--state', root, '--name', 'ghost', '--port', String(await freePort()), '--', '/nonexistent/ghost-app']);
  assert.equal(missing.code, 127);
  assert.match(
    missing.stderr.trimEnd().split('\n').at(-1)!,
    /^trellis run: exiting with 127: cannot start the app: \/nonexistent\/ghost-app: command not found$/,
  );
  await assert.rejects(readFile(join(root, 'services/default/ghost.yaml')), /ENOENT/, 'no service left');
  assert.deepEqual(await registrations(root), [], 'no registration left');

  // Another process on the app's port would make a workload that never started look ready.
  const squatter = createServer((s) => s.destroy());
  await new Promise<void>((resolve) => squatter.listen(0, '127.0.0.1', resolve));
  t.after(() => squatter.close());
  const taken = (squatter.address() as AddressInfo).port;
  // prettier-ignore
  const busy = await runCli(['run', '--state', root, '--name', 'squat', '--port', String(taken), '--', ...familyCommand(taken)]);
  assert.equal(busy.code, 1, busy.stderr);
  assert.match(
    busy.stderr,
    new RegExp(`port ${taken} \\(--port\\) is already in use on 127\\.0\\.0\\.1 by another process`),
  );
  await assert.rejects(readFile(join(root, 'services/default/squat.yaml')), /ENOENT/, 'no service left');
  assert.deepEqual(await registrations(root), [], 'no registration left');
  assert.equal(await up.stop(), 0);
});

test('--lease-ms out of bounds is an error naming the flag', async () => {
  for (const bad of ['5', '999', '3600001', '1.5']) {
    const r = await runCli(['run', '--name', 'x', '--port', '1', '--lease-ms', bad, '--', 'true']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /--lease-ms: /, bad);
  }
});
