// A live tap of HTTP/2 (gRPC) exchanges across two meshed proxies (app -> client proxy -> mTLS ->
// server proxy -> app), read from each proxy's admin GET /tap as the control plane reads it: the
// client proxy's outbound event and the server proxy's inbound one, both with the gRPC status and
// both verified identities, tls true. (The HTTP/1 paths are in tap.test.ts.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { idOf, identityFor, startMeshWorld } from '../helpers/mesh-pki.ts';
import { portOf } from '../helpers/running-proxy.ts';
import { openTap } from '../helpers/admin-tap.ts';

test(
  'tap: gRPC across the mesh, outbound and inbound, with grpc-status and identities',
  { timeout: 60_000 },
  async (t) => {
    const world = await startMeshWorld();
    t.after(() => world.close());
    const app = http2.createServer();
    app.on('stream', (stream) => {
      stream.respond(
        { ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '5', 'grpc-message': 'nope' },
        { endStream: true },
      );
    });
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    t.after(() => app.close());
    const appPort = (app.address() as { port: number }).port;
    const server = await world.proxy({ identity: await identityFor(world, 'grpc-server'), app: appPort });
    await world.register('grpc', 'grpc-1', portOf(server, 'inbound'), idOf('grpc-server'));
    const client = await world.proxy({
      identity: await identityFor(world, 'grpc-client'),
      config: { destinations: [{ listen: '127.0.0.1:0', target: 'grpc.default:8080' }] },
    });
    const outbound = await openTap(t, client.addresses.admin!);
    const inbound = await openTap(t, server.addresses.admin!);

    const session = http2.connect(`http://127.0.0.1:${portOf(client, 'destination-0')}`);
    t.after(() => session.close());
    const headers = await new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
      const req = session.request({
        ':method': 'POST',
        ':path': '/echo.Echo/Unary',
        'content-type': 'application/grpc',
        te: 'trailers',
      });
      req.on('response', resolve);
      req.on('error', reject);
      req.end();
    });
    assert.equal(headers['grpc-status'], '5');
    const deadline = Date.now() + 10_000;
    const exchange = (lines: Record<string, unknown>[]) => lines.find((l) => l.type === 'exchange');
    while ((exchange(outbound) === undefined || exchange(inbound) === undefined) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
    const out = exchange(outbound)!;
    const inn = exchange(inbound)!;
    assert.ok(out && inn, 'both proxies sent an event');
    for (const e of [out, inn]) {
      assert.equal(e.protocol, 'h2');
      assert.equal(e.method, 'POST');
      assert.equal(e.path, '/echo.Echo/Unary');
      assert.equal(e.status, 200);
      assert.equal(e.grpc_status, '5');
      assert.equal(e.tls, true);
      assert.equal(e.source_identity, idOf('grpc-client'));
      assert.equal(e.destination_identity, idOf('grpc-server'));
    }
    assert.equal(out.direction, 'outbound');
    assert.equal(inn.direction, 'inbound');
    assert.match(String(out.destination), /^127\.0\.0\.1:\d+$/);
  },
);
