// The proxy's warm start, end to end with real processes on loopback: `trellis up`, one backend
// registered as a workload of service web, and `trellis proxy` with a static destination for it.
// Once the proxy says it is ready, the service's endpoints are already known: the control plane
// can go away before the first request, and that request still reaches the backend. With two
// meshed endpoints (in-process proxies with identities), both have accepted the client proxy's
// mTLS connection by then. The warm-up itself sends the apps nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type net from 'node:net';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { writeServiceFile, writeWorkloadFile } from '../../src/control/discovery/local-state.ts';
import { startProxyProcess } from '../helpers/proxy-process.ts';
import { startUp } from '../helpers/cli.ts';
import { removeTempDir } from '../helpers/temp-dir.ts';
import { idOf, identityFor, startMeshWorld } from '../helpers/mesh-pki.ts';
import { metric, portOf } from '../helpers/running-proxy.ts';
import type { RunningProxy } from '../../src/proxy/proxy.ts';

test('a static destination is resolved before the proxy is ready', { timeout: 60_000 }, async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'trellis-warm-up-'));
  t.after(() => removeTempDir(root));
  let served = 0;
  const backend = http.createServer((req, res) => {
    served++;
    req.resume();
    res.end('web');
  });
  backend.listen(0, '127.0.0.1');
  await once(backend, 'listening');
  t.after(() => {
    backend.close();
    backend.closeAllConnections();
  });
  await writeServiceFile(root, 'default', 'web', { ports: [{ port: 8080, targetPort: 'http' }] });
  await writeWorkloadFile(root, 'default', 'web-1', {
    service: 'web',
    address: '127.0.0.1',
    ports: [{ name: 'http', port: (backend.address() as net.AddressInfo).port }],
  });
  const up = await startUp(t, root);
  const grpc = (JSON.parse(up.stdout().split('\n')[0]!) as { grpc: string }).grpc;

  const proxy = await startProxyProcess({
    args: ['--destination-address', grpc, '--destination', '127.0.0.1:0=web.default:8080'],
    // A short wait for the control plane: without the warm start, the first request below would
    // fail after it with control-plane-unreachable.
    configYaml: 'discovery:\n  failFastMs: 500\n',
  });
  t.after(() => proxy.stop());
  await up.stop();
  assert.equal(served, 0, 'the warm-up must not send the app anything');

  const body = await new Promise<{ status: number; text: string; error: string | null }>(
    (resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port: proxy.port('destination-0'), path: '/' }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            text,
            error: (res.headers['trellis-proxy-error'] as string | undefined) ?? null,
          }),
        );
      });
      req.on('error', reject);
    },
  );
  assert.deepEqual(body, { status: 200, text: 'web', error: null });
  assert.equal(served, 1);
});

test(
  'every meshed endpoint of a static destination has its mTLS connection before the proxy is ready',
  { timeout: 60_000 },
  async (t) => {
    // Two server proxies behind service web, each before an app that counts its requests.
    const world = await startMeshWorld();
    t.after(() => world.close());
    const served = [0, 0];
    const servers: RunningProxy[] = [];
    for (const i of [0, 1]) {
      const app = http.createServer((req, res) => {
        served[i]!++;
        req.resume();
        res.end(`web-${i}`);
      });
      app.listen(0, '127.0.0.1');
      await once(app, 'listening');
      t.after(() => {
        app.close();
        app.closeAllConnections();
      });
      const server = await world.proxy({
        identity: await identityFor(world, 'web'),
        app: (app.address() as net.AddressInfo).port,
      });
      await world.register('web', `web-${i}`, portOf(server, 'inbound'), idOf('web'));
      servers.push(server);
    }
    const accepted = () =>
      servers.map((s) => metric(s, 'trellis_mesh_connections_total', { direction: 'inbound' }));
    assert.deepEqual(accepted(), [0, 0]);

    // The client proxy's start resolves where it prints its ready line (after the warm-up).
    await world.proxy({
      identity: await identityFor(world, 'client'),
      config: { destinations: [{ listen: '127.0.0.1:0', target: 'web.default:8080' }] },
    });
    assert.deepEqual(accepted(), [1, 1], 'each endpoint accepted one mesh connection before the ready line');
    assert.deepEqual(served, [0, 0], 'the warm-up must not send the apps anything');
  },
);
