// `trellis tap` and `trellis top` end to end on loopback: `trellis up`, a meshed server and a
// client under `trellis run` calling it through its proxy. The client's proxy sees each request
// outbound and the server's inbound, both over mTLS with both verified identities; filters narrow
// the stream; the rate cap holds and the proxy counts what it left out; a resource without a proxy
// is an error at once; top shows the busiest path first.
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
const CLIENT_ID = 'spiffe://cluster.local/ns/default/sa/client';
const SERVER_ID = 'spiffe://cluster.local/ns/default/sa/secure';

interface Event {
  type: string;
  direction: string;
  method: string;
  path: string;
  status: number;
  tls: boolean;
  source_identity: string | null;
  destination_identity: string | null;
  workload: string;
  latency_ms: number;
  source: string;
}

const events = (stdout: string): Event[] =>
  stdout
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Event);

/** Sends `count` GETs of `path` through the client's upstream listener, `parallel` at a time. */
async function send(port: number, path: string, count: number, parallel = 1): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      next++;
      const res = await fetch(`http://127.0.0.1:${port}${path}`);
      await res.text();
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
}

test('trellis tap and top through two meshed proxies', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'trellis-tap-'));
  t.after(() => removeTempDir(root));
  const reap = reaper(t);
  await startUp(t, root);
  const [securePort, clientPort, toSecure] = await Promise.all([freePort(), freePort(), freePort()]);
  const runs = [
    // prettier-ignore
    startCli(t, ['run', '--state', root, '--name', 'secure', '--port', String(securePort), '--', NODE, HELLO, String(securePort)]),
    // prettier-ignore
    startCli(t, [
      'run', '--state', root, '--name', 'client', '--port', String(clientPort),
      '--upstream', `secure.default:80=${toSecure}`, '--', NODE, HELLO, String(clientPort),
    ]),
  ];
  for (const name of ['secure', 'client']) await readyRegistration(root, name);
  for (const run of runs) {
    const pids = await waitFor('pids', async () => reportedPids(run.stderr()));
    reap([pids.app, pids.proxy]);
  }
  // The mesh is up when a request gets through.
  await waitFor('a request through the mesh', async () => {
    const res = await fetch(`http://127.0.0.1:${toSecure}/warm`).catch(() => null);
    return res !== null && (await res.text()) === 'hello /warm\n' ? true : null;
  });

  /**
   * Runs `trellis tap ARGS` while `traffic` runs (after the tap is attached); with `enough`, the tap
   * is stopped once its output holds what the traffic makes (events stream in after the answers).
   */
  const tapWhile = async (
    args: string[],
    traffic: () => Promise<void>,
    enough: (stdout: string) => boolean = () => true,
  ) => {
    const tap = startCli(t, ['tap', '--state', root, ...args]);
    // Attached once the control plane has the proxies' "started" lines: traffic until the first event.
    await waitFor('the tap to see traffic', async () => {
      await traffic();
      return tap.stdout().length > 0 || tap.proc.exitCode !== null ? true : null;
    });
    await traffic();
    await waitFor(
      'the events of the traffic',
      async () => (enough(tap.stdout()) || tap.proc.exitCode !== null ? true : null),
      10_000,
    ).catch(() => undefined); // what did arrive is asserted below
    const code = await tap.stop();
    return { code, stdout: tap.stdout(), stderr: tap.stderr() };
  };

  await t.test('events of both proxies, with identities and mTLS', async () => {
    const atLeast = (n: number) => (stdout: string) => events(stdout).length >= n;
    const out = await tapWhile(['client', '-o', 'json'], () => send(toSecure, '/a', 3), atLeast(3));
    const seen = events(out.stdout);
    assert.ok(seen.length >= 3, out.stderr);
    for (const e of seen) {
      assert.equal(e.type, 'exchange');
      assert.equal(e.workload, 'client');
      assert.equal(e.direction, 'outbound');
      assert.equal(e.path, '/a');
      assert.equal(e.method, 'GET');
      assert.equal(e.status, 200);
      assert.equal(e.tls, true);
      assert.equal(e.source_identity, CLIENT_ID);
      assert.equal(e.destination_identity, SERVER_ID);
    }
    const inbound = await tapWhile(
      ['deploy/secure', '-o', 'json'],
      () => send(toSecure, '/b', 3),
      atLeast(3),
    );
    const served = events(inbound.stdout);
    assert.ok(served.length >= 3, inbound.stderr);
    for (const e of served) {
      assert.equal(e.direction, 'inbound');
      assert.equal(e.path, '/b');
      // The client proxy's address and port, as an outbound or plain HTTP/1 tap shows it.
      assert.match(e.source, /^127\.0\.0\.1:\d+$/);
      assert.equal(e.tls, true);
      assert.equal(e.source_identity, CLIENT_ID);
      assert.equal(e.destination_identity, SERVER_ID);
    }
    const text = await tapWhile(['client'], () => send(toSecure, '/c', 2));
    assert.match(
      text.stdout,
      /^out src=\S+ dst=\S+ tls=true :method=GET :authority=\S+ :path=\/c :status=200 /m,
    );
  });

  await t.test('filters: path prefix, method and --to', async () => {
    const byPath = await tapWhile(['client', '--path', '/keep', '-o', 'json'], async () => {
      await send(toSecure, '/drop', 2);
      await send(toSecure, '/keep/1', 2);
    });
    const kept = events(byPath.stdout);
    assert.ok(kept.length >= 2);
    assert.ok(
      kept.every((e) => e.path.startsWith('/keep')),
      byPath.stdout,
    );
    const tap = startCli(t, ['tap', '--state', root, 'client', '--method', 'POST', '-o', 'json']);
    const toOther = startCli(t, ['tap', '--state', root, 'client', '--to', 'client', '-o', 'json']);
    const toSecureTap = startCli(t, ['tap', '--state', root, 'client', '--to', 'secure', '-o', 'json']);
    await waitFor('the --to tap', async () => {
      await send(toSecure, '/to', 2);
      return toSecureTap.stdout().length > 0 ? true : null;
    });
    await tap.stop();
    await toOther.stop();
    await toSecureTap.stop();
    assert.equal(tap.stdout(), '', 'no POST was sent');
    assert.equal(toOther.stdout(), '', 'the client sent nothing to itself');
    assert.ok(events(toSecureTap.stdout()).every((e) => e.direction === 'outbound'));
  });

  await t.test('the rate cap holds and what it leaves out is counted', async () => {
    const cap = 5;
    const tap = startCli(t, ['tap', '--state', root, 'client', '--max-rps', String(cap), '-o', 'json']);
    await waitFor('the capped tap', async () => {
      await send(toSecure, '/warm-cap', 1);
      return tap.stdout().length > 0 ? true : null;
    });
    const before = events(tap.stdout()).length;
    const started = performance.now();
    await send(toSecure, '/cap', 300, 8);
    // The drops report comes about once a second.
    await waitFor('the drops report', async () =>
      /left out [1-9]\d* requests over the rate cap/.test(tap.stderr()) ? true : null,
    );
    const seconds = (performance.now() - started) / 1000;
    await tap.stop();
    const got = events(tap.stdout()).length - before;
    // A window of one second may start anywhere: at most cap per started second, plus one window.
    assert.ok(got <= cap * (Math.ceil(seconds) + 1), `${got} events in ${seconds.toFixed(1)} s`);
    assert.ok(got >= 1);
  });

  await t.test('a resource without a proxy is an error at once', async () => {
    const started = performance.now();
    const out = await runCli(['tap', '--state', root, 'nosuch']);
    assert.equal(out.code, 1);
    assert.match(out.stderr, /cannot tap: HTTP 404: no proxy matches workload nosuch/);
    assert.ok(performance.now() - started < 10_000);
  });

  await t.test('top shows the busiest path first', async () => {
    const top = startCli(t, ['top', '--state', root, 'client', '--duration', '4s']);
    await waitFor('top attached', async () => {
      await send(toSecure, '/busy', 6);
      await send(toSecure, '/quiet', 1);
      return top.proc.exitCode !== null ? true : null;
    });
    const lines = top.stdout().trim().split('\n');
    assert.match(
      lines[0]!,
      /^SOURCE\s+DESTINATION\s+METHOD\s+PATH\s+COUNT\s+BEST\s+WORST\s+LAST\s+SUCCESS_RATE$/,
    );
    assert.match(lines[1]!, /^client\s+secure\s+GET\s+\/busy\s+\d+\s+\S+\s+\S+\s+\S+\s+100\.00%$/);
  });
});
