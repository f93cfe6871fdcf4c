// The proxies of `trellis run` export their spans to the control plane's embedded collector, and
// keep doing so after `trellis up` restarts on other ports (port 0): the exporter follows the
// control file as the gRPC clients do. Before, it kept posting to the stopped control plane's
// address and every span after the restart was lost.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli, waitFor } from '../helpers/cli.ts';
import { reaper, startServerAndClient, startUp } from '../helpers/trellis-run.ts';
import { removeTempDir } from '../helpers/temp-dir.ts';

interface Summary {
  trace_id: string;
  services: string[];
  spans: number;
}

test('the proxies of trellis run export spans to a control plane restarted on other ports', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'trellis-trace-restart-'));
  t.after(() => removeTempDir(root));
  const reap = reaper(t);
  const first = await startUp(t, root);
  const { runs, toServer } = await startServerAndClient(t, root, reap);

  /** Sends a request across the mesh, then a trace of both hops the control plane keeps and `seen` has not. */
  const newTrace = async (seen: ReadonlySet<string>): Promise<Summary> => {
    let rounds = 0;
    let last = '';
    return waitFor(
      'a new trace of both hops',
      async () => {
        if (++rounds > 100) throw new Error(`too many rounds; last answer: ${last}`);
        const res = await fetch(`http://127.0.0.1:${toServer}/traced`, {
          signal: AbortSignal.timeout(5000),
        }).catch(() => null);
        if (res === null || (await res.text()) !== 'hello /traced\n') return null;
        const out = await runCli(['trace', '--state', root, '-o', 'json']);
        if (out.code !== 0) return null; // the control plane is not up yet
        last = out.stdout;
        const found = (JSON.parse(out.stdout) as Summary[]).find(
          (s) => s.spans === 2 && !seen.has(s.trace_id),
        );
        return found ?? null;
      },
      60_000,
    );
  };
  const before = await newTrace(new Set());
  assert.deepEqual(before.services, ['client', 'server']);

  // The control plane stops and starts again elsewhere; its collector moves with its HTTP API.
  assert.equal(await first.stop(), 0);
  const second = await startUp(t, root);
  assert.notEqual(second.http, first.http);
  const control = JSON.parse(await readFile(join(root, 'control.json'), 'utf8')) as {
    tracing?: { collector?: string };
  };
  assert.equal(control.tracing?.collector, `http://${second.http}`);

  // Spans of requests made now reach the new control plane, from both proxies.
  const after = await newTrace(new Set([before.trace_id]));
  assert.deepEqual(after.services, ['client', 'server']);

  for (const run of runs) assert.equal(await run.stop(), 0, run.stderr());
  assert.equal(await second.stop(), 0);
});
