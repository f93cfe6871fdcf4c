// The client-side proxy's direct HTTP/1 -> HTTP/2 path (the mesh's H1Upstream,
// src/proxy/mesh/h1-over-h2.ts): the HTTP/1 session hands its parsed request head to the HTTP/2
// stream and gets the response head back parsed, instead of writing and re-parsing HTTP/1 bytes.
// These check what that path must keep: the HTTP/2 request fields are exactly those the old
// serialize-then-parse round trip gave (property test), and end to end through two proxies over
// mTLS the session's own framing rules still apply: 304 without a body on a kept-alive
// connection, an HTTP/1.0 client getting a close-delimited body, 100 Continue, and a large body
// read slowly by the client (backpressure through the upstream's pause/resume).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { once } from 'node:events';
import fc from 'fast-check';
import { parseRequestHead, type H1Limits } from '../../src/proxy/http/h1-parser.ts';
import { serializeRequestHead, type RequestLine } from '../../src/proxy/http/h1-serialize.ts';
import type { MessageHead } from '../../src/proxy/http/h1-parser.ts';
import { requestFieldsFor, trailerFields } from '../../src/proxy/mesh/h1-fields.ts';
import { idOf, identityFor, startMeshWorld, type MeshWorld } from '../helpers/mesh-pki.ts';
import type { RunningProxy } from '../../src/proxy/proxy.ts';
import { portOf } from '../helpers/running-proxy.ts';

const LIMITS: H1Limits = { maxRequestLineBytes: 8192, maxHeaderBytes: 65536, maxHeaders: 200 };

const token = fc.stringMatching(/^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}$/);
const value = fc.stringMatching(/^[\x21-\x7e]([\x20-\x7e]{0,20}[\x21-\x7e])?$/);
const fieldName = fc.oneof(
  token,
  fc.constantFrom(
    'Host',
    'host',
    'Connection',
    'Keep-Alive',
    'TE',
    'Upgrade',
    'Proxy-Connection',
    'Proxy-Authenticate',
    'x-drop',
    'X-Drop',
    'Content-Length',
    'Cookie',
    'http2-settings',
  ),
);

/**
 * The oracle: the HTTP/2 request fields of a parsed HTTP/1.1 request head, as the mesh built them
 * before the direct path (from the bytes the session wrote): connection-specific fields dropped,
 * Host as :authority, the others in order, names in lower case.
 */
function roundTripFields(head: MessageHead): string[] {
  const skip = new Set([
    'host',
    'connection',
    'keep-alive',
    'proxy-connection',
    'transfer-encoding',
    'upgrade',
    'te',
    'http2-settings',
  ]);
  const out = [
    ':method',
    head.method,
    ':scheme',
    'http',
    ':authority',
    head.host ?? '',
    ':path',
    head.target,
  ];
  for (let i = 0; i < head.headers.length; i += 2) {
    const name = head.headers[i]!.toLowerCase();
    if (!skip.has(name)) out.push(name, head.headers[i + 1]!);
  }
  return out;
}

test('requestFieldsFor gives the fields of the serialize-then-parse round trip', () => {
  fc.assert(
    fc.property(
      fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'HEAD', 'OPTIONS', 'PATCH'),
      fc.stringMatching(/^\/[\x21-\x7e]{0,20}$/),
      fc.array(fc.tuple(fieldName, value), { maxLength: 12 }),
      fc.option(fc.stringMatching(/^[a-z0-9.-]{1,20}(:[0-9]{1,5})?$/), { nil: null }),
      fc.option(fc.constantFrom('x-drop', 'connection'), { nil: null }),
      fc.constantFrom('', 'x-extra: 1\r\n', 'a: b\r\nc: d e\r\n'),
      fc.boolean(),
      (method, path, fields, host, drop, extra, chunked) => {
        let raw = `${method} ${path} HTTP/1.1\r\n`;
        for (const [n, v] of fields) {
          // Framing fields the session would have rejected or handled before forwarding.
          if (/^(content-length|transfer-encoding)$/i.test(n)) continue;
          raw += `${n}: ${v}\r\n`;
        }
        const parsed = parseRequestHead(Buffer.from(raw + '\r\n', 'latin1'), 0, raw.length + 2, LIMITS);
        fc.pre(parsed.kind === 'ok');
        if (parsed.kind !== 'ok') return;
        const line: RequestLine = { method, path, host, drop, extra };
        const text = serializeRequestHead(parsed.head, line, chunked);
        const again = parseRequestHead(Buffer.from(text, 'latin1'), 0, text.length, LIMITS);
        fc.pre(again.kind === 'ok');
        if (again.kind !== 'ok') return;
        assert.deepEqual(requestFieldsFor(parsed.head, line), roundTripFields(again.head));
      },
    ),
    { numRuns: 500 },
  );
});

test('trailerFields reads a trailer section: names in lower case, values trimmed, framing fields out', () => {
  const framing = new Set([
    'content-length',
    'transfer-encoding',
    'host',
    'trailer',
    'connection',
    'te',
    'upgrade',
    'keep-alive',
    'proxy-connection',
  ]);
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fieldName, value, fc.constantFrom('', ' ', '  ')), { maxLength: 8 }),
      (pairs) => {
        const section = pairs.map(([n, v, pad]) => `${n}:${pad}${v}${pad}\r\n`).join('');
        const expected = pairs
          .filter(([n]) => !framing.has(n.toLowerCase()))
          .flatMap(([n, v]) => [n.toLowerCase(), v]);
        assert.deepEqual(trailerFields(section), expected);
      },
    ),
    { numRuns: 300 },
  );
});

/**
 * An app: /304 (Not Modified), /big (2 MiB with Content-Length), /chunked (no length), /trailers
 * (chunked with trailers), else echo.
 */
async function startApp(): Promise<{ port: number; close(): void }> {
  const big = Buffer.alloc(2 << 20, 'abcdefghij');
  const server = http.createServer({ maxHeaderSize: 128 * 1024 }, (req, res) => {
    let body = '';
    req.setEncoding('latin1');
    req.on('data', (d: string) => (body += d));
    req.on('end', () => {
      if (req.url === '/304') {
        res.statusCode = 304;
        res.setHeader('etag', '"v1"');
        return void res.end();
      }
      if (req.url === '/big') {
        res.setHeader('content-length', big.length);
        return void res.end(big);
      }
      if (req.url === '/hdr') return void res.end(`fields ${Object.keys(req.headers).length}`);
      if (req.url === '/trailers') {
        res.setHeader('trailer', 'x-checksum');
        res.write('body');
        res.addTrailers({ 'x-checksum': 'abc123' });
        return void res.end();
      }
      if (req.url === '/chunked') {
        res.write('one,');
        return void setTimeout(() => res.end('two'), 5);
      }
      res.setHeader('content-type', 'text/plain');
      res.end(`${req.method} ${req.url} ${body}`);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    close() {
      server.close();
      server.closeAllConnections();
    },
  };
}

/** A meshed server proxy for the app and a client proxy (`clientConfig` added to its config). */
async function meshedPair(
  world: MeshWorld,
  appPort: number,
  clientConfig: Record<string, unknown> = {},
): Promise<{ port: number; client: RunningProxy }> {
  const server = await world.proxy({ identity: await identityFor(world, 'direct-server'), app: appPort });
  await world.register('direct', 'direct-1', portOf(server, 'inbound'), idOf('direct-server'));
  const client = await world.proxy({
    identity: await identityFor(world, 'direct-client'),
    config: {
      destinations: [{ listen: '127.0.0.1:0', target: 'direct.default:8080', protocol: 'auto' }],
      ...clientConfig,
    },
  });
  return { port: portOf(client, 'destination-0'), client };
}

/** Writes `raw` on one connection and reads until `done(bytes so far)` or the peer closes. */
async function exchange(
  port: number,
  raw: string,
  done: (got: string) => boolean,
): Promise<{ got: string; closed: boolean }> {
  const socket = net.connect(port, '127.0.0.1');
  await once(socket, 'connect');
  let got = '';
  let closed = false;
  socket.setEncoding('latin1');
  const timer = setTimeout(() => socket.destroy(), 10_000);
  await new Promise<void>((resolve) => {
    socket.on('data', (d: string) => {
      got += d;
      if (done(got)) resolve();
    });
    socket.on('close', () => {
      closed = true;
      resolve();
    });
    socket.on('error', () => {});
    socket.write(raw);
  });
  clearTimeout(timer);
  socket.destroy();
  return { got, closed };
}

test('the direct mesh path keeps the HTTP/1 framing rules', { timeout: 60_000 }, async (t) => {
  const world = await startMeshWorld();
  t.after(() => world.close());
  const app = await startApp();
  t.after(() => app.close());
  const { port } = await meshedPair(world, app.port);

  await t.test('304 has no body and the connection stays usable', async () => {
    const ask = 'GET /304 HTTP/1.1\r\nHost: direct\r\n\r\nGET /after HTTP/1.1\r\nHost: direct\r\n\r\n';
    const { got } = await exchange(port, ask, (s) => s.includes('GET /after '));
    assert.match(got, /^HTTP\/1\.1 304 Not Modified\r\n/);
    assert.match(got, /\r\netag: "v1"\r\n/i);
    const second = got.indexOf('HTTP/1.1 200');
    assert.ok(second > 0, got);
    assert.equal(got.slice(0, second).split('\r\n\r\n')[1], '', 'nothing after the 304 head');
    assert.ok(got.endsWith('GET /after '), got);
  });

  await t.test('an HTTP/1.0 client gets a close-delimited body for a response without length', async () => {
    const { got, closed } = await exchange(
      port,
      'GET /chunked HTTP/1.0\r\nHost: direct\r\n\r\n',
      () => false,
    );
    assert.ok(closed);
    const [head, body] = got.split('\r\n\r\n');
    assert.match(head!, /^HTTP\/1\.1 200 /);
    assert.doesNotMatch(head!, /transfer-encoding/i);
    assert.equal(body, 'one,two');
  });

  await t.test('an HTTP/1.1 client gets the same body chunked, and keeps its connection', async () => {
    const ask = 'GET /chunked HTTP/1.1\r\nHost: direct\r\n\r\n';
    const { got, closed } = await exchange(port, ask, (s) => s.endsWith('0\r\n\r\n'));
    assert.equal(closed, false);
    assert.match(got, /\r\ntransfer-encoding: chunked\r\n/i);
    assert.equal(got.split('\r\n\r\n').slice(1).join('\r\n\r\n'), '4\r\none,\r\n3\r\ntwo\r\n0\r\n\r\n');
  });

  await t.test(
    'a head near the HTTP/1 limit crosses (CONTINUATION) and the connection carries on',
    async () => {
      // 125 fields of 500 bytes: under the 64 KiB HTTP/1 head limit, but over 64 KiB in HTTP/2's
      // header list accounting (32 bytes more per field), which must not end the shared connection.
      let fields = '';
      for (let i = 0; i < 125; i++) fields += `x-f${String(i).padStart(3, '0')}: ${'v'.repeat(500)}\r\n`;
      const ask = `GET /hdr HTTP/1.1\r\nHost: direct\r\nx-big: 1\r\n${fields}\r\nGET /after-big HTTP/1.1\r\nHost: direct\r\n\r\n`;
      assert.ok(ask.indexOf('\r\n\r\n') < 64 * 1024);
      const { got } = await exchange(port, ask, (s) => s.includes('GET /after-big '));
      assert.match(got, /^HTTP\/1\.1 200 /);
      assert.match(got, /GET \/after-big $/);
    },
  );

  await t.test("the app's response trailers reach the client", async () => {
    const ask = 'GET /trailers HTTP/1.1\r\nHost: direct\r\n\r\n';
    const { got } = await exchange(port, ask, (s) => s.includes('\r\n0\r\n') && s.endsWith('\r\n\r\n'));
    const body = got.split('\r\n\r\n').slice(1).join('\r\n\r\n');
    assert.equal(body, '4\r\nbody\r\n0\r\nx-checksum: abc123\r\n\r\n');
  });

  await t.test('Expect: 100-continue gets 100 Continue, then the answer', async () => {
    const reply = await new Promise<{ continued: boolean; status: number; body: string }>(
      (resolve, reject) => {
        let continued = false;
        const req = http.request(
          { host: '127.0.0.1', port, method: 'POST', path: '/post', headers: { expect: '100-continue' } },
          (res) => {
            let body = '';
            res.setEncoding('latin1');
            res.on('data', (d: string) => (body += d));
            res.on('end', () => resolve({ continued, status: res.statusCode ?? 0, body }));
          },
        );
        req.on('continue', () => {
          continued = true;
          req.end('payload');
        });
        req.on('error', reject);
        req.setTimeout(10_000, () => req.destroy(new Error('timed out')));
      },
    );
    assert.deepEqual(reply, { continued: true, status: 200, body: 'POST /post payload' });
  });

  await t.test('a 2 MiB body read slowly arrives whole (backpressure)', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    t.after(() => agent.destroy());
    const get = (path: string): Promise<{ status: number; body: Buffer }> =>
      new Promise((resolve, reject) => {
        const req = http.get({ host: '127.0.0.1', port, path, agent }, (res) => {
          const parts: Buffer[] = [];
          let paused = 0;
          res.on('data', (d: Buffer) => {
            parts.push(d);
            // Stop reading now and then, so the proxies' buffers fill and they must pause.
            if (paused < 20 && parts.length % 4 === 0) {
              paused++;
              res.pause();
              setTimeout(() => res.resume(), 20);
            }
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts) }));
        });
        req.on('error', reject);
        req.setTimeout(20_000, () => req.destroy(new Error('timed out')));
      });
    const r = await get('/big');
    assert.equal(r.status, 200);
    assert.ok(r.body.equals(Buffer.alloc(2 << 20, 'abcdefghij')), `got ${r.body.length} bytes`);
    const after = await get('/next');
    assert.equal(after.body.toString(), 'GET /next ');
  });
});

test(
  'an idle mesh connection is closed after timeouts.idleMs, and the next request opens another',
  { timeout: 60_000 },
  async (t) => {
    const world = await startMeshWorld();
    t.after(() => world.close());
    const app = await startApp();
    t.after(() => app.close());
    const { port, client } = await meshedPair(world, app.port, { timeouts: { idleMs: 200 } });
    const opened = (): number => {
      let n = 0;
      for (const line of client.runtime.metrics.render().split('\n')) {
        if (line.startsWith('trellis_mesh_connections_total{') && line.includes('direction="outbound"'))
          n += Number(line.slice(line.lastIndexOf(' ') + 1));
      }
      return n;
    };
    const get = async (path: string): Promise<string> => {
      const { got } = await exchange(
        port,
        `GET ${path} HTTP/1.1\r\nHost: direct\r\nConnection: close\r\n\r\n`,
        () => false,
      );
      return got;
    };
    assert.match(await get('/one'), /GET \/one $/);
    assert.match(await get('/two'), /GET \/two $/);
    assert.equal(opened(), 1, 'back-to-back requests share the connection');
    await new Promise((r) => setTimeout(r, 1000)); // > 2 idle periods
    assert.match(await get('/three'), /GET \/three $/);
    assert.equal(opened(), 2, 'the idle connection was closed and a new one made');
  },
);
