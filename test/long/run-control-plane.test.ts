// A control plane restarted on other ports (`trellis up` with port 0) is found again by the
// proxies of running `trellis run` workloads, end to end: after the restart, a new endpoint of a
// service reaches a client's proxy, a policy change reaches every server instance's proxy (each
// on its own app port), and the server's proxy renews its (3 s) certificate with the new control
// plane.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NODE, REPO } from '../helpers/proxy-process.ts';
import { freePort, runCli, startCli, waitFor } from '../helpers/cli.ts';
import { readyRegistration, reaper, registrations, reportedPids, startUp } from '../helpers/trellis-run.ts';
import { removeTempDir } from '../helpers/temp-dir.ts';

const HELLO = join(REPO, 'test/fixtures/hello-server.ts');

const SERVICE = `apiVersion: v1
kind: Service
metadata: { name: server, namespace: default }
spec: { ports: [{ name: http, port: 80, targetPort: http }] }
`;

const DENY_CLIENT = `apiVersion: policy.trellis.dev/v1alpha1
kind: Server
metadata: { name: server-http, namespace: default }
spec: { workload: server, port: http, protocol: http1 }
---
apiVersion: policy.trellis.dev/v1alpha1
kind: AuthorizationPolicy
metadata: { name: server-from-nobody, namespace: default }
spec:
  server: server-http
  from: { identities: ['spiffe://cluster.local/ns/default/sa/nobody'] }
`;

/** The serial number of the leaf a proxy presents (its admin /identity). */
async function leafSerial(admin: string): Promise<string | null> {
  const pem = await (await fetch(`http://${admin}/identity`)).text();
  const block = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(pem)?.[0];
  return block === undefined ? null : new X509Certificate(block).serialNumber;
}

test('the proxies of trellis run find a control plane restarted on other ports', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'trellis-cp-restart-'));
  t.after(() => removeTempDir(root));
  const reap = reaper(t);
  const first = await startUp(t, root, ['--leaf-lifetime', '3s']);
  await writeFile(join(root, 'service.yaml'), SERVICE);
  assert.equal((await runCli(['apply', '-f', join(root, 'service.yaml'), '--state', root])).code, 0);

  const [serverPort, server2Port, clientPort, upstreamPort] = await Promise.all(
    Array.from({ length: 4 }, () => freePort()),
  );
  // prettier-ignore
  const server = startCli(t, ['run', '--state', root, '--name', 'server', '--port', String(serverPort), '--', NODE, HELLO, String(serverPort)]);
  // prettier-ignore
  const client = startCli(t, [
    'run', '--state', root, '--name', 'client', '--port', String(clientPort),
    '--upstream', `server.default:80=${upstreamPort}`, '--', NODE, HELLO, String(clientPort),
  ]);
  const serverRegistration = await readyRegistration(root, 'server');
  await readyRegistration(root, 'client');
  for (const run of [server, client]) {
    const pids = await waitFor('pids', async () => reportedPids(run.stderr()));
    reap([pids.app, pids.proxy]);
  }
  /** Which server instances answer through the client's proxy (their inbound addresses). */
  const instancesSeen = async (rounds: number): Promise<Set<string>> => {
    const seen = new Set<string>();
    for (let i = 0; i < rounds; i++) {
      const res = await fetch(`http://127.0.0.1:${upstreamPort}/env`);
      if (res.status === 200) seen.add(((await res.json()) as Record<string, string>).TRELLIS_PROXY_INBOUND!);
      else await res.text();
    }
    return seen;
  };
  await waitFor('a request across the mesh', async () => ((await instancesSeen(1)).size === 1 ? true : null));

  // The control plane stops and starts again elsewhere.
  assert.equal(await first.stop(), 0);
  const second = await startUp(t, root, ['--leaf-lifetime', '3s']);
  assert.notEqual(second.grpc, first.grpc);

  // Endpoint updates: a second server instance is balanced to.
  // prettier-ignore
  const server2 = startCli(t, ['run', '--state', root, '--name', 'server', '--port', String(server2Port), '--', NODE, HELLO, String(server2Port)]);
  const pids2 = await waitFor('pids', async () => reportedPids(server2.stderr()));
  reap([pids2.app, pids2.proxy]);
  await waitFor('two ready server instances', async () =>
    (await registrations(root)).filter((r) => r.service === 'server' && r.ready).length === 2 ? true : null,
  );
  await waitFor('both instances through the client proxy', async () =>
    (await instancesSeen(20)).size === 2 ? true : null,
  );

  // Certificate renewal: the server's proxy gets new leaves from the new control plane.
  const before = await leafSerial(serverRegistration.admin);
  await waitFor('a renewed certificate', async () => {
    const now = await leafSerial(serverRegistration.admin);
    return now !== null && now !== before ? true : null;
  });

  // Policy changes: the server's proxies refuse the client from now on.
  const policy = join(root, 'deny.yaml');
  await writeFile(policy, DENY_CLIENT);
  assert.equal((await runCli(['apply', '-f', policy, '--state', root])).code, 0);
  await waitFor('the policy to deny the client', async () => {
    const res = await fetch(`http://127.0.0.1:${upstreamPort}/x`);
    await res.text();
    return res.status === 403 ? true : null;
  });
  // Every instance, asked directly on its inbound port (plaintext, no identity): the Server's port
  // name resolves to each instance's own app port. It resolved to one instance's app port for all of
  // them, so the others served anyone under the default policy.
  for (const r of await registrations(root)) {
    if (r.service !== 'server') continue;
    const res = await fetch(`http://127.0.0.1:${r.port}/x`);
    assert.equal(res.status, 403, `${r.file}: ${await res.text()}`);
  }

  for (const run of [server, server2, client]) assert.equal(await run.stop(), 0, run.stderr());
  assert.equal(await second.stop(), 0);
});
