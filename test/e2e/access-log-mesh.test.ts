// The access log has one line for every HTTP exchange whatever path it took through the proxy
// (src/proxy/telemetry/exchange-record.ts): here the receiving side of the mesh, where HTTP/1
// arrives as streams of the proxies' own HTTP/2 (trellis-h2h1/1) and goes to the app as HTTP/1.1,
// both forwarded and refused by the proxy itself. Before the one recorder, those exchanges were
// counted in the metrics but never written to the access log.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { idOf, identityFor, startMeshWorld } from '../helpers/mesh-pki.ts';
import { portOf } from '../helpers/running-proxy.ts';
import { removeTempDir } from '../helpers/temp-dir.ts';

function get(port: number, url: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, path: url, headers, agent: false, timeout: 10_000 },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end();
  });
}

test(
  'the receiving proxy logs mesh HTTP/1 exchanges it forwards and those it refuses',
  { timeout: 60_000 },
  async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'trellis-access-'));
    t.after(() => removeTempDir(dir));
    const world = await startMeshWorld();
    t.after(() => world.close());
    const app = http.createServer((_req, res) => res.end('hello'));
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    t.after(() => app.close());
    const appPort = (app.address() as { port: number }).port;

    const accessLog = join(dir, 'server-access.log');
    const server = await world.proxy({
      identity: await identityFor(world, 'web-server'),
      app: appPort,
      // Smaller than the client's limit: the server refuses what the client let through.
      config: { log: { level: 'off', access: accessLog }, http1: { maxHeaderBytes: 2048 } },
    });
    await world.register('web', 'web-1', portOf(server, 'inbound'), idOf('web-server'));
    const client = await world.proxy({ identity: await identityFor(world, 'caller') });
    const out = portOf(client, 'outbound');

    assert.equal(await get(out, 'http://web.default:8080/hello?x=1'), 200);
    assert.equal(await get(out, 'http://web.default:8080/big', { 'x-big': 'b'.repeat(4000) }), 431);
    await server.shutdown(200); // flushes the access log

    const lines = (await readFile(accessLog, 'utf8'))
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const inbound = lines.filter((l) => l.direction === 'inbound');
    const hello = inbound.find((l) => l.path === '/hello?x=1');
    assert.ok(hello, `a line for the forwarded request in ${JSON.stringify(lines)}`);
    assert.equal(hello.status, 200);
    assert.equal(hello.method, 'GET');
    assert.equal(hello.protocol, 'http1');
    assert.equal(hello.peer, idOf('caller'), 'the peer is the verified client identity');
    assert.equal(hello.bytesOut, 5);
    assert.equal(hello.error, undefined);
    const big = inbound.find((l) => l.path === '/big');
    assert.ok(big, `a line for the refused request in ${JSON.stringify(lines)}`);
    assert.equal(big.status, 431);
    assert.equal(big.error, 'request-header-too-large');
    assert.equal(big.peer, idOf('caller'));
  },
);
