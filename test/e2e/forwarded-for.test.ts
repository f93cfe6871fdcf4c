// X-Forwarded-For on every inbound path (mesh.appendForwardedFor, src/proxy/inbound/forwarded-for.ts):
// the app's connection comes from its proxy, so the proxy appends the address each request came
// from, and folds every spelling of the field the client sent (any case, '_' for '-': what a CGI
// server reads as HTTP_X_FORWARDED_FOR) into that one list, so that its last entry is always the
// address the proxy saw. Clients connect from their own loopback addresses (127.0.0.2-5) so each
// path's entry is told apart: HTTP/1 in plaintext and over mTLS, HTTP/1 through the mesh (the peer
// is the client's proxy), HTTP/2 in plaintext and over mTLS.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { once } from 'node:events';
import { startMeshWorld, identityFor, idOf, issueLeaf } from '../helpers/mesh-pki.ts';
import { mtlsTo, rawExchange } from '../helpers/attack.ts';
import { portOf } from '../helpers/running-proxy.ts';

/** Every field a CGI-style server would read as HTTP_X_FORWARDED_FOR, as [name, value]. */
function forwardedFields(rawHeaders: readonly string[]): string[][] {
  const out: string[][] = [];
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.toUpperCase().replaceAll('-', '_') === 'X_FORWARDED_FOR')
      out.push([rawHeaders[i]!.toLowerCase(), rawHeaders[i + 1]!]);
  }
  return out;
}

async function listen(server: http.Server | http2.Http2Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as net.AddressInfo).port;
}

const from = (port: number, localAddress: string) => () =>
  net.connect({ host: '127.0.0.1', port, localAddress });

test(
  'every inbound path appends the address the request came from to X-Forwarded-For',
  { timeout: 60_000 },
  async (t) => {
    const world = await startMeshWorld();
    t.after(() => world.close());
    const seen: string[][][] = [];
    const record = (
      req: http.IncomingMessage | http2.Http2ServerRequest,
      res: http.ServerResponse | http2.Http2ServerResponse,
    ) => {
      req.resume();
      req.on('end', () => {
        seen.push(forwardedFields(req.rawHeaders));
        res.end('ok');
      });
    };
    const h1 = http.createServer(record);
    const h1Port = await listen(h1);
    t.after(() => h1.close());
    const h2 = http2.createServer(record);
    const h2Port = await listen(h2);
    t.after(() => h2.close());

    const h1Server = await world.proxy({ identity: await identityFor(world, 'web-server'), app: h1Port });
    await world.register('web', 'web-1', portOf(h1Server, 'inbound'), idOf('web-server'));
    const h2Server = await world.proxy({ identity: await identityFor(world, 'grpc-server'), app: h2Port });
    const plainServer = await world.proxy({
      identity: null,
      app: h1Port,
      config: { mesh: { appendForwardedFor: false } },
    });
    const client = await world.proxy({
      identity: await identityFor(world, 'caller'),
      config: { destinations: [{ listen: '127.0.0.1:0', target: 'web.default:8080' }] },
    });
    const leaf = await issueLeaf(world.ca, idOf('caller'));
    const mtls = (port: number, alpn: string, localAddress: string) =>
      mtlsTo(port, alpn, leaf, world.ca.certPem, localAddress);
    const expect = (what: string, fields: string[][]) => {
      const got = seen.shift();
      assert.ok(got !== undefined, `${what}: the app got no request`);
      assert.deepEqual(got, fields, what);
    };
    const claimed = 'X-Forwarded-For: 10.9.9.9\r\nx_forwarded_for: 10.8.8.8\r\n';
    const head = `GET / HTTP/1.1\r\nHost: web\r\n${claimed}Connection: close\r\n\r\n`;
    const inbound = portOf(h1Server, 'inbound');

    assert.match((await rawExchange(from(inbound, '127.0.0.2'), [head])).text, /^HTTP\/1\.1 200 /);
    expect('HTTP/1 plaintext', [['x-forwarded-for', '10.9.9.9, 10.8.8.8, 127.0.0.2']]);
    const bare = 'GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n';
    assert.match((await rawExchange(from(inbound, '127.0.0.2'), [bare])).text, /^HTTP\/1\.1 200 /);
    expect('HTTP/1 plaintext, nothing claimed', [['x-forwarded-for', '127.0.0.2']]);
    assert.match(
      (await rawExchange(mtls(inbound, 'trellis-http1/1', '127.0.0.3'), [head])).text,
      /^HTTP\/1\.1 200 /,
    );
    expect('HTTP/1 over mTLS', [['x-forwarded-for', '10.9.9.9, 10.8.8.8, 127.0.0.3']]);
    // The client's proxy forwards what its app claimed; the server's proxy appends the peer it saw.
    assert.match((await rawExchange(portOf(client, 'destination-0'), [head])).text, /^HTTP\/1\.1 200 /);
    expect('HTTP/1 through the mesh (trellis-h2h1/1)', [
      ['x-forwarded-for', '10.9.9.9, 10.8.8.8, 127.0.0.1'],
    ]);

    const h2Inbound = portOf(h2Server, 'inbound');
    for (const [what, connection, peer] of [
      ['HTTP/2 plaintext', from(h2Inbound, '127.0.0.4'), '127.0.0.4'],
      ['HTTP/2 over mTLS', mtls(h2Inbound, 'trellis-h2/1', '127.0.0.5'), '127.0.0.5'],
    ] as const) {
      const session = http2.connect('http://web', { createConnection: connection });
      session.on('error', () => {});
      const req = session.request({
        ':method': 'GET',
        ':path': '/',
        'x-forwarded-for': '10.9.9.9',
        x_forwarded_for: '10.8.8.8',
      });
      req.end();
      const [headers] = (await once(req, 'response')) as [http2.IncomingHttpHeaders];
      req.resume();
      await once(req, 'close');
      session.destroy();
      assert.equal(headers[':status'], 200, what);
      expect(what, [['x-forwarded-for', `10.9.9.9, 10.8.8.8, ${peer}`]]);
    }

    // Turned off, the list passes as the client sent it.
    assert.match(
      (await rawExchange(from(portOf(plainServer, 'inbound'), '127.0.0.2'), [head])).text,
      /^HTTP\/1\.1 200 /,
    );
    expect('appendForwardedFor: false', [
      ['x-forwarded-for', '10.9.9.9'],
      ['x_forwarded_for', '10.8.8.8'],
    ]);
  },
);
