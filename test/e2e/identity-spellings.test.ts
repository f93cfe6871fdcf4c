// The client-identity header under another spelling an app may read it by: `trellis_client_id`
// (and any case of it). A server that gives the app its fields as environment variables (CGI,
// PHP, WSGI: Python's wsgiref, CGIHTTPRequestHandler) turns '-' into '_', so such a field is
// HTTP_TRELLIS_CLIENT_ID, the identity the app trusts: alone from a plaintext client, merged with
// the verified one over mTLS. Every inbound path must drop it as it drops `trellis-client-id`:
// HTTP/1 in plaintext and over mTLS (head and chunked trailers), HTTP/1 through the mesh (the own
// HTTP/2 of trellis-h2h1/1), and HTTP/2 in plaintext and over mTLS (trellis-h2/1).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { once } from 'node:events';
import { startMeshWorld, identityFor, idOf, issueLeaf } from '../helpers/mesh-pki.ts';
import { mtlsTo, rawExchange } from '../helpers/attack.ts';
import { portOf } from '../helpers/running-proxy.ts';

const FORGED = 'spiffe://mesh.test/ns/default/sa/forged';
const SPELLINGS = ['trellis_client_id', 'Trellis_Client_Id', 'TRELLIS-CLIENT_ID'];

/** What a CGI-style server would put in HTTP_TRELLIS_CLIENT_ID, from every spelling of the field. */
function cgiValues(rawHeaders: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.toUpperCase().replaceAll('-', '_') === 'TRELLIS_CLIENT_ID')
      out.push(rawHeaders[i + 1]!);
  }
  return out;
}

test('trellis_client_id never reaches the app, on any inbound path', { timeout: 60_000 }, async (t) => {
  const world = await startMeshWorld();
  t.after(() => world.close());
  const seen: string[][] = [];
  const h1 = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      seen.push([...cgiValues(req.rawHeaders), ...cgiValues(req.rawTrailers)]);
      res.end('ok');
    });
  });
  h1.listen(0, '127.0.0.1');
  await once(h1, 'listening');
  t.after(() => h1.close());
  const h2 = http2.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      seen.push([...cgiValues(req.rawHeaders), ...cgiValues(req.rawTrailers)]);
      res.end('ok');
    });
  });
  h2.listen(0, '127.0.0.1');
  await once(h2, 'listening');
  t.after(() => h2.close());

  const serverId = await identityFor(world, 'web-server');
  const h1Server = await world.proxy({ identity: serverId, app: (h1.address() as net.AddressInfo).port });
  await world.register('web', 'web-1', portOf(h1Server, 'inbound'), idOf('web-server'));
  const h2Server = await world.proxy({
    identity: await identityFor(world, 'grpc-server'),
    app: (h2.address() as net.AddressInfo).port,
  });
  const client = await world.proxy({
    identity: await identityFor(world, 'caller'),
    config: { destinations: [{ listen: '127.0.0.1:0', target: 'web.default:8080' }] },
  });
  const leaf = await issueLeaf(world.ca, idOf('caller'));
  const mtls = (port: number, alpn: string) => mtlsTo(port, alpn, leaf, world.ca.certPem);

  const expect = (what: string, verified: string | null) => {
    const values = seen.shift();
    assert.ok(values !== undefined, `${what}: the app got no request`);
    assert.deepEqual(values, verified === null ? [] : [verified], what);
  };

  for (const name of SPELLINGS) {
    const head = `GET / HTTP/1.1\r\nHost: web\r\n${name}: ${FORGED}\r\nConnection: close\r\n\r\n`;
    const chunked =
      `POST / HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n` +
      `2\r\nhi\r\n0\r\n${name}: ${FORGED}\r\n\r\n`;
    const inbound = portOf(h1Server, 'inbound');
    assert.match((await rawExchange(inbound, [head])).text, /^HTTP\/1\.1 200 /);
    expect(`${name}, HTTP/1 plaintext`, null);
    assert.match((await rawExchange(inbound, [chunked])).text, /^HTTP\/1\.1 200 /);
    expect(`${name}, HTTP/1 plaintext trailers`, null);
    assert.match((await rawExchange(mtls(inbound, 'trellis-http1/1'), [head])).text, /^HTTP\/1\.1 200 /);
    expect(`${name}, HTTP/1 over mTLS`, idOf('caller'));
    assert.match((await rawExchange(portOf(client, 'destination-0'), [head])).text, /^HTTP\/1\.1 200 /);
    expect(`${name}, HTTP/1 through the mesh (trellis-h2h1/1)`, idOf('caller'));

    const h2Inbound = portOf(h2Server, 'inbound');
    for (const [what, connection, verified] of [
      ['HTTP/2 plaintext', () => net.connect(h2Inbound, '127.0.0.1'), null],
      ['HTTP/2 over mTLS', mtls(h2Inbound, 'trellis-h2/1'), idOf('caller')],
    ] as const) {
      const session = http2.connect('http://web', { createConnection: connection });
      session.on('error', () => {});
      const req = session.request(
        { ':method': 'POST', ':path': '/', [name.toLowerCase()]: FORGED },
        { waitForTrailers: true },
      );
      req.on('wantTrailers', () => req.sendTrailers({ [name.toLowerCase()]: FORGED }));
      req.end('hi');
      const [headers] = (await once(req, 'response')) as [http2.IncomingHttpHeaders];
      req.resume();
      await once(req, 'close');
      session.destroy();
      assert.equal(headers[':status'], 200, what);
      expect(`${name}, ${what}`, verified);
    }
  }
});
