// A proxy that `trellis run` starts again after the control plane moved (`trellis up` restarted on
// other ports, told other tracing) is started with what the control file says now: its
// Destination, Identity and Policy addresses and its trace collector and ratio. Before, `trellis
// run` kept the control file it read when it started, so the new proxy got the stopped control
// plane's addresses and its collector (the proxy follows the file for its gRPC clients and for the
// control plane's own collector, but an external collector set by the new `trellis up` was never
// exported to).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NODE, REPO } from '../helpers/proxy-process.ts';
import { freePort, startCli, waitFor } from '../helpers/cli.ts';
import { readyRegistration, reaper, reportedPids, startUp } from '../helpers/trellis-run.ts';
import { removeTempDir } from '../helpers/temp-dir.ts';

const HELLO = join(REPO, 'test/fixtures/hello-server.ts');

interface ProxyConfigView {
  discovery?: { address?: string };
  identity?: { address?: string };
  policy?: { address?: string };
  tracing?: { collector?: string; sampleRatio?: number };
}

test('a proxy trellis run restarts after the control plane moved gets its new addresses and collector', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'trellis-run-proxy-restart-'));
  t.after(() => removeTempDir(root));
  const reap = reaper(t);
  const first = await startUp(t, root);
  const port = await freePort();
  // prettier-ignore
  const run = startCli(t, ['run', '--state', root, '--name', 'server', '--port', String(port), '--', NODE, HELLO, String(port)]);
  const registration = await readyRegistration(root, 'server');
  const pids = await waitFor('pids', async () => reportedPids(run.stderr()));
  reap([pids.app, pids.proxy]);
  const config = async (): Promise<ProxyConfigView | null> => {
    try {
      const res = await fetch(`http://${registration.admin}/config`, { signal: AbortSignal.timeout(2000) });
      return res.status === 200 ? ((await res.json()) as ProxyConfigView) : null;
    } catch {
      return null; // the proxy is not (yet) listening
    }
  };
  const before = (await config())!;
  assert.equal(before.discovery?.address, first.grpc);
  assert.equal(before.tracing?.collector, `http://${first.http}`);

  // The control plane restarts on other ports, now with an external collector (nothing listens
  // there: no span is expected) and another sample ratio.
  assert.equal(await first.stop(), 0);
  const collector = `http://127.0.0.1:${await freePort()}`;
  // prettier-ignore
  const second = await startUp(t, root, ['--trace-collector', collector, '--trace-sample-ratio', '0.25']);
  assert.notEqual(second.grpc, first.grpc);

  // The proxy dies; `trellis run` starts another on the same addresses.
  process.kill(pids.proxy, 'SIGKILL');
  await waitFor('the proxy to be started again', async () =>
    /the proxy was killed by SIGKILL; starting it again/.test(run.stderr()) ? true : null,
  );
  const after = await waitFor('the new proxy to answer', config, 30_000);
  assert.equal(after.discovery?.address, second.grpc);
  assert.equal(after.identity?.address, second.grpc);
  assert.equal(after.policy?.address, second.grpc);
  assert.equal(after.tracing?.collector, `${collector}/`); // as `trellis up` writes a URL
  assert.equal(after.tracing?.sampleRatio, 0.25);

  assert.equal(await run.stop(), 0, run.stderr());
  assert.equal(await second.stop(), 0);
});
