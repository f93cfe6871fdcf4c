// `trellis edges` end to end on loopback: `trellis up`, a client under `trellis run` calling a
// meshed server and a server run with --no-mesh through its proxy's upstream listeners. The edge to
// the meshed one is secured by mTLS, with both verified identities, seen by both proxies; the edge
// to the other is not, and says why (not-meshed: the client's proxy counts what it sends in plain
// text, trellis_plain_outbound_total). -n filters, -o wide adds the identities.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, runCli, startCli, waitFor } from '../helpers/cli.ts';
import { NODE, REPO } from '../helpers/proxy-process.ts';
import { readyRegistration, reaper, reportedPids, startUp } from '../helpers/trellis-run.ts';
import { removeTempDir } from '../helpers/temp-dir.ts';

const HELLO = join(REPO, 'test/fixtures/hello-server.ts');

interface Edge {
  src: string;
  dst: string;
  src_namespace: string;
  dst_namespace: string;
  secured: boolean;
  no_tls_reason: string | null;
  client_identity: string | null;
  server_identity: string | null;
  seen_by: string;
}

test('trellis edges: a secured edge with identities, and a plain one with its reason', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'trellis-edges-'));
  t.after(() => removeTempDir(root));
  const reap = reaper(t);
  await startUp(t, root);
  const [securePort, legacyPort, clientPort, toSecure, toLegacy] = await Promise.all(
    Array.from({ length: 5 }, () => freePort()),
  );
  const runs = [
    // prettier-ignore
    startCli(t, ['run', '--state', root, '--name', 'secure', '--port', String(securePort), '--', NODE, HELLO, String(securePort)]),
    // prettier-ignore
    startCli(t, ['run', '--state', root, '--name', 'legacy', '--no-mesh', '--port', String(legacyPort), '--', NODE, HELLO, String(legacyPort)]),
    // prettier-ignore
    startCli(t, [
      'run', '--state', root, '--name', 'client', '--port', String(clientPort),
      '--upstream', `secure.default:80=${toSecure}`, '--upstream', `legacy.default:80=${toLegacy}`,
      '--', NODE, HELLO, String(clientPort),
    ]),
  ];
  for (const name of ['secure', 'legacy', 'client']) await readyRegistration(root, name);
  for (const run of runs) {
    const pids = await waitFor('pids', async () => reportedPids(run.stderr()));
    reap([pids.app, pids.proxy]);
  }

  let rounds = 0;
  const edges = await waitFor('both edges', async () => {
    if (++rounds > 60) throw new Error('too many rounds');
    for (const port of [toSecure, toLegacy]) {
      const res = await fetch(`http://127.0.0.1:${port}/x`);
      assert.equal(await res.text(), 'hello /x\n');
    }
    const out = await runCli(['edges', '--state', root, '-o', 'json']);
    assert.equal(out.code, 0, out.stderr);
    const all = JSON.parse(out.stdout) as Edge[];
    const secured = all.find((e) => e.dst === 'secure');
    return secured?.seen_by === 'both' && all.some((e) => e.dst === 'legacy') ? all : null;
  });
  assert.deepEqual(
    edges.map((e) => [e.src, e.dst, e.src_namespace, e.dst_namespace, e.secured, e.no_tls_reason]),
    [
      ['client', 'legacy', 'default', 'default', false, 'not-meshed'],
      ['client', 'secure', 'default', 'default', true, null],
    ],
  );
  const secured = edges[1]!;
  assert.equal(secured.client_identity, 'spiffe://cluster.local/ns/default/sa/client');
  assert.equal(secured.server_identity, 'spiffe://cluster.local/ns/default/sa/secure');

  const table = await runCli(['edges', '--state', root, '-n', 'default']);
  assert.equal(table.code, 0, table.stderr);
  assert.deepEqual(table.stdout.trimEnd().split('\n'), [
    'SRC     DST     SRC_NS   DST_NS   SECURED',
    'client  legacy  default  default  × (not-meshed)',
    'client  secure  default  default  √',
  ]);
  const wide = await runCli(['edges', '--state', root, '-o', 'wide']);
  assert.match(
    wide.stdout,
    /client\s+secure\s+default\s+default\s+√\s+spiffe:\/\/cluster\.local\/ns\/default\/sa\/client\s+spiffe:\/\/cluster\.local\/ns\/default\/sa\/secure\s+\d+\s+both/,
  );
  const elsewhere = await runCli(['edges', '--state', root, '-n', 'elsewhere']);
  assert.equal(elsewhere.code, 0);
  assert.equal(elsewhere.stdout, '');
  assert.match(elsewhere.stderr, /No edges found in namespace elsewhere/);
  const both = await runCli(['edges', '--state', root, '-n', 'default', '-A']);
  assert.equal(both.code, 2);
});
