// Mesh connections resume TLS sessions: the second and later opaque connections between two
// proxies skip the certificate exchange, the server proxy still knows the client's identity on
// them, and a session is never offered where another identity is expected (node:tls skips the
// identity check on a resumed session, so that would accept the wrong peer).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { once } from 'node:events';
import { idOf, identityFor, startMeshWorld } from '../helpers/mesh-pki.ts';
import { metric, portOf } from '../helpers/running-proxy.ts';

/** One GET on a connection of its own; the status, or null when the connection closed without one. */
function getOnNewConnection(port: number): Promise<number | null> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let got = '';
    s.setTimeout(5000, () => s.destroy());
    s.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      const m = /^HTTP\/1\.1 (\d{3})/.exec(got);
      if (m) {
        s.destroy();
        resolve(Number(m[1]));
      }
    });
    s.on('error', () => {});
    s.on('close', () => resolve(null));
    s.end('GET / HTTP/1.1\r\nhost: res\r\nconnection: close\r\n\r\n');
  });
}

test('opaque mesh connections resume TLS sessions, for the identity they were made with only', async (t) => {
  const world = await startMeshWorld();
  t.after(() => world.close());
  const seen: (string | undefined)[] = [];
  const app = http.createServer((req, res) => {
    seen.push(req.headers['trellis-client-id'] as string | undefined);
    res.end('ok');
  });
  app.listen(0, '127.0.0.1');
  await once(app, 'listening');
  t.after(() => app.close());
  const server = await world.proxy({
    identity: await identityFor(world, 'res-server'),
    app: (app.address() as net.AddressInfo).port,
  });
  await world.register('res', 'res-1', portOf(server, 'inbound'), idOf('res-server'));
  const client = await world.proxy({
    identity: await identityFor(world, 'res-client'),
    config: { destinations: [{ listen: '127.0.0.1:0', target: 'res.default:8080', protocol: 'opaque' }] },
  });
  const port = portOf(client, 'destination-0');

  // Opaque TCP: every connection is a mesh connection of its own.
  for (let i = 0; i < 3; i++) assert.equal(await getOnNewConnection(port), 200);
  assert.deepEqual(seen, [idOf('res-client'), idOf('res-client'), idOf('res-client')]);
  assert.equal(
    metric(server, 'trellis_mesh_connections_total', {
      direction: 'inbound',
      peer_identity: idOf('res-client'),
    }),
    3,
  );
  assert.ok(metric(client, 'trellis_tls_sessions_resumed_total', { direction: 'outbound' }) >= 2);
  assert.ok(metric(server, 'trellis_tls_sessions_resumed_total', { direction: 'inbound' }) >= 2);

  // Discovery now expects someone else at the same address: the session made with res-server
  // must not be offered (a resumed handshake skips the identity check), so the connection is
  // refused as an identity mismatch and nothing reaches the app.
  await world.register('res', 'res-1', portOf(server, 'inbound'), idOf('someone-else'));
  const deadline = Date.now() + 10_000;
  let refused = false;
  while (!refused && Date.now() < deadline) {
    const before: number = seen.length;
    const status = await getOnNewConnection(port);
    if (status === null || status >= 500) {
      refused = true;
      assert.equal(seen.length, before, 'a refused connection reached the app');
    } else await new Promise((r) => setTimeout(r, 50)); // the client proxy has not seen the change yet
  }
  assert.ok(refused, 'a connection expecting another identity was accepted (a resumed session?)');
  assert.ok(metric(client, 'trellis_tls_handshake_errors_total', { direction: 'outbound' }) >= 1);
});
