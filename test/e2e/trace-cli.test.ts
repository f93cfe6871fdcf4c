// `trellis trace` end to end on loopback with nothing else installed: `trellis up` (its embedded
// trace collector is the default), a client and a server under `trellis run`, a request from the
// client's app through both proxies (mTLS). The proxies export their spans to the control plane,
// which lists the trace (most recent first, filtered by service) and shows it as a tree: the
// server proxy's SERVER span under the client proxy's CLIENT span.
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
  root_service: string;
  services: string[];
  spans: number;
  error: boolean;
}

test('trellis trace: the embedded collector of trellis up keeps the mesh traces and shows one as a tree', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'trellis-trace-'));
  t.after(() => removeTempDir(root));
  const reap = reaper(t);
  const up = await startUp(t, root);
  const control = JSON.parse(await readFile(join(root, 'control.json'), 'utf8')) as { tracing?: unknown };
  assert.deepEqual(control.tracing, {
    collector: `http://${up.http}`,
    sampleRatio: 1,
    tokenFile: join(root, 'trace-token'),
  });
  // Only holders of the trace token add spans (the proxies of `trellis run` get its file).
  const forged = await fetch(`http://${up.http}/v1/traces`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-protobuf' },
    body: new Uint8Array(0),
  });
  assert.equal(forged.status, 401);
  const { toServer } = await startServerAndClient(t, root, reap);

  let rounds = 0;
  let last = '';
  const traces = await waitFor(
    'a trace of both hops',
    async () => {
      if (++rounds > 60) throw new Error(`too many rounds; last answer: ${last}`);
      // Bounded: a request that finds the mesh not ready yet is tried again.
      const res = await fetch(`http://127.0.0.1:${toServer}/traced`, {
        signal: AbortSignal.timeout(5000),
      }).catch(() => null);
      if (res === null || (await res.text()) !== 'hello /traced\n') return null;
      const out = await runCli(['trace', '--state', root, '-o', 'json']);
      assert.equal(out.code, 0, out.stderr);
      last = out.stdout;
      const all = JSON.parse(out.stdout) as Summary[];
      return all.some((s) => s.spans === 2) ? all : null;
    },
    60_000,
  );
  const trace = traces.find((s) => s.spans === 2)!;
  assert.equal(trace.root_service, 'client');
  assert.deepEqual(trace.services, ['client', 'server']);
  assert.equal(trace.error, false);

  const filtered = await runCli(['trace', '--state', root, '--service', 'nobody', '-o', 'json']);
  assert.deepEqual(JSON.parse(filtered.stdout), []);
  const table = await runCli(['trace', '--state', root, '--service', 'server']);
  assert.equal(table.code, 0, table.stderr);
  assert.match(
    table.stdout.split('\n')[0]!,
    /^TRACE\s+ROOT SERVICE\s+ROOT\s+SPANS\s+DURATION\s+STATUS\s+AGE$/,
  );
  assert.match(table.stdout, new RegExp(`${trace.trace_id}\\s+client\\s+GET\\s+2\\s`));

  const tree = await runCli(['trace', '--state', root, trace.trace_id]);
  assert.equal(tree.code, 0, tree.stderr);
  const lines = tree.stdout.trimEnd().split('\n');
  assert.equal(lines[0], `trace ${trace.trace_id}: 2 spans`);
  assert.match(lines[1]!, /^└─ client CLIENT GET \/traced\s+200\s/);
  assert.match(lines[2]!, /^ {3}└─ server SERVER GET \/traced\s+200\s/);

  const missing = await runCli(['trace', '--state', root, '0'.repeat(31) + '1']);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /is not kept/);
  const bad = await runCli(['trace', '--state', root, 'xyz']);
  assert.equal(bad.code, 2);
});
