// Service names as the apps of `trellis run` use them, end to end:
// - Node's own fetch reaches a service by name through the sidecar (NODE_USE_ENV_PROXY=1);
// - a short name means the service in the caller's namespace (the longer forms work too), the
//   service port does not depend on which instance started first (each says which it joined),
//   and a known name on a port it lacks is answered with the ports it has;
// - while the control plane is down, a known service keeps its endpoints and a mesh name never
//   goes to DNS (503 control-plane-unreachable); after it restarted on other ports, a name the
//   proxy never resolved before works at once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NODE, REPO } from '../helpers/proxy-process.ts';
import { freePort, runCli, type Running, startCli, waitFor } from '../helpers/cli.ts';
import { reaper, registrations, reportedPids, startUp } from '../helpers/trellis-run.ts';
import { removeTempDir } from '../helpers/temp-dir.ts';

const APP = join(REPO, 'test/fixtures/lifecycle-app.ts');
const WEB_SERVICE = `apiVersion: v1
kind: Service
metadata: { name: web, namespace: default }
spec: { ports: [{ name: http, port: 80, targetPort: http }] }
`;

interface Answer {
  readonly status: number;
  readonly error: string | null;
  readonly body: string;
}

/** GET `url` as an HTTP proxy request to a proxy's outbound listener (what HTTP_PROXY does). */
function viaProxy(outbound: string, url: string): Promise<Answer> {
  const colon = outbound.lastIndexOf(':');
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: outbound.slice(0, colon),
        port: Number(outbound.slice(colon + 1)),
        path: url,
        headers: { host: new URL(url).host },
        agent: false,
        timeout: 15_000,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => {
          const error = res.headers['trellis-proxy-error'];
          resolve({ status: res.statusCode!, error: typeof error === 'string' ? error : null, body });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end();
  });
}

/** `trellis run --name NAME` of the lifecycle app; resolves once ready, with its sidecar's outbound. */
async function runApp(
  t: Parameters<typeof startCli>[0],
  reap: (pids: number[]) => void,
  root: string,
  name: string,
): Promise<{ run: Running; port: number; outbound: string }> {
  const port = await freePort();
  const run = startCli(t, [
    'run',
    '--state',
    root,
    '--name',
    name,
    '--port',
    String(port),
    '--',
    NODE,
    APP,
    String(port),
  ]);
  const pids = await waitFor(`${name} pids`, async () => reportedPids(run.stderr()));
  reap([pids.app, pids.proxy]);
  await waitFor(`${name} ready`, async () =>
    (await registrations(root)).some(
      (r) => r.service === name && r.ready && r.file.includes(`-${run.proc.pid}.`),
    )
      ? true
      : null,
  );
  return { run, port, outbound: /outbound (\S+),/.exec(run.stderr())![1]! };
}

test('names: fetch by name, short names, one service port whoever starts first, unknown ports', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'trellis-names-'));
  t.after(() => removeTempDir(root));
  const reap = reaper(t);
  const up = await startUp(t, root);
  const web1 = await runApp(t, reap, root, 'web');
  const client = await runApp(t, reap, root, 'client');

  // Node's fetch in the app goes through its sidecar, by service name.
  const fetched = await waitFor(
    'fetch by name',
    async () => {
      const res = await fetch(
        `http://127.0.0.1:${client.port}/fetch?url=${encodeURIComponent('http://web.default/pid')}`,
      );
      const answer = (await res.json()) as Answer;
      return answer.status === 200 ? answer : null;
    },
    10_000,
  ).catch(async () => {
    const res = await fetch(
      `http://127.0.0.1:${client.port}/fetch?url=${encodeURIComponent('http://web.default/pid')}`,
    );
    assert.fail(`fetch by name failed: ${await res.text()}`);
  });
  assert.equal(fetched.body, String(reportedPids(web1.run.stderr())!.app));

  // A second instance with another app port joins the same service port, and says so.
  const web2 = await runApp(t, reap, root, 'web');
  assert.match(web1.run.stderr(), /created service web\.default with port 80/);
  assert.match(web2.run.stderr(), /joined service web\.default on port 80 \(target port http\)/);
  const pids = new Set([web1, web2].map((w) => String(reportedPids(w.run.stderr())!.app)));
  // A short name is the service in the caller's namespace; the longer forms name it too.
  const seen = await waitFor('both instances by the short name', async () => {
    const got = new Set<string>();
    for (let i = 0; i < 20; i++) got.add((await viaProxy(client.outbound, 'http://web/pid')).body);
    return got.size === 2 ? got : null;
  });
  assert.deepEqual(seen, pids);
  for (const url of [
    'http://web.default/pid',
    'http://web.default.svc/pid',
    'http://web.default.svc.cluster.local/pid',
  ]) {
    const answer = await viaProxy(client.outbound, url);
    assert.equal(answer.status, 200, `${url}: ${JSON.stringify(answer)}`);
    assert.ok(pids.has(answer.body), url);
  }

  // A known name on a port it does not have: an answer that says which ports there are.
  const wrong = await viaProxy(client.outbound, 'http://web:81/pid');
  assert.equal(wrong.status, 400, JSON.stringify(wrong));
  assert.equal(wrong.error, 'unknown-port');
  assert.match(wrong.body, /web\.default has no port 81; its ports: 80/);

  for (const w of [web1, web2, client]) assert.equal(await w.run.stop(), 0, w.run.stderr());
  assert.equal(await up.stop(), 0);
});

test('names while the control plane is down, and right after it restarted elsewhere', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'trellis-names-down-'));
  t.after(() => removeTempDir(root));
  const reap = reaper(t);
  const first = await startUp(t, root);
  const service = join(root, 'web.yaml');
  await writeFile(service, WEB_SERVICE);
  assert.equal((await runCli(['apply', '-f', service, '--state', root])).code, 0);
  const web = await runApp(t, reap, root, 'web');
  const client = await runApp(t, reap, root, 'client');
  const webPid = String(reportedPids(web.run.stderr())!.app);
  await waitFor('web through the mesh', async () =>
    (await viaProxy(client.outbound, 'http://web.default/pid')).body === webPid ? true : null,
  );

  assert.equal(await first.stop(), 0);
  // Down: the known service keeps its endpoints; a mesh name never resolved waits, then 503.
  assert.equal((await viaProxy(client.outbound, 'http://web.default/pid')).body, webPid);
  const started = Date.now();
  const unreachable = await viaProxy(client.outbound, 'http://api.default/');
  assert.equal(unreachable.status, 503, JSON.stringify(unreachable));
  assert.equal(unreachable.error, 'control-plane-unreachable');
  assert.ok(Date.now() - started >= 2500, 'it waited the fail-fast time (3 s) for the control plane');

  // Back on other ports: a name this proxy never resolved works at once (no DNS, no backoff).
  const second = await startUp(t, root);
  const fresh = await viaProxy(client.outbound, 'http://web.default.svc.cluster.local/pid');
  assert.equal(fresh.status, 200, JSON.stringify(fresh));
  assert.equal(fresh.body, webPid);

  for (const w of [web, client]) assert.equal(await w.run.stop(), 0, w.run.stderr());
  assert.equal(await second.stop(), 0);
  assert.deepEqual(await registrations(root), []);
});
