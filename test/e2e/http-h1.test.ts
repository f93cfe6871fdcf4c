// End-to-end HTTP/1-only behaviour of the real proxy, written as raw bytes (node:http's client
// will not send some of it, and hides the framing), over the inbound listener and the outbound
// listener (absolute-form and CONNECT): hop-by-hop headers removed both ways, HTTP/1.0 clients
// (no chunked coding back; the connection closes unless keep-alive was asked for), pipelining,
// and request heads over the limit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  type EchoedRequest,
  type Fixture,
  HTTP1_TRANSPORTS,
  abortUpstreamConnection,
  forEachTransport,
  plainHeaders,
  rawConnection,
  type UpRequest,
  type UpResponse,
} from '../helpers/http-matrix.ts';

const T = { timeout: 15_000 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Upstream answering /chunked with a streamed (chunked) body and anything else with Content-Length. */
function framingHandler(req: UpRequest, res: UpResponse): void {
  if (req.url?.startsWith('/chunked') === true) {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.write('part one;');
    setTimeout(() => res.end('part two'), 20);
    return;
  }
  const body = JSON.stringify({ url: req.url, headers: plainHeaders(req) });
  res.setHeader('content-length', Buffer.byteLength(body));
  res.end(body);
}

/** The absolute-form prefix of the fixture's transport ('' for origin-form). */
function target0(f: Fixture): string {
  return f.transport === 'http1-absolute' ? `http://127.0.0.1:${f.upstream.port}` : '';
}

forEachTransport(HTTP1_TRANSPORTS, (fx) => {
  test('hop-by-hop headers are removed in both directions', T, async (t) => {
    fx().upstream.handler = (req, res) => {
      const body = JSON.stringify({ url: req.url, headers: plainHeaders(req) });
      res.setHeader('Connection', 'keep-alive, X-Resp-Hop');
      res.setHeader('X-Resp-Hop', 'secret');
      res.setHeader('Keep-Alive', 'timeout=9');
      res.setHeader('Proxy-Connection', 'keep-alive');
      res.setHeader('X-Resp-Keep', 'yes');
      res.setHeader('content-length', Buffer.byteLength(body));
      res.end(body);
    };
    const { conn, target } = await rawConnection(fx());
    t.after(() => conn.close());
    conn.write(
      `GET ${target('/hop')} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive, X-Hop, x-other-hop\r\n` +
        'X-Hop: 1\r\nX-Other-Hop: 2\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n' +
        'Proxy-Authenticate: Basic\r\nX-Keep: yes\r\n\r\n',
    );
    const r = await conn.response();
    assert.equal(r.status, 200);
    const seen = (JSON.parse(r.body) as EchoedRequest).headers;
    for (const h of ['x-hop', 'x-other-hop', 'keep-alive', 'proxy-connection', 'te', 'proxy-authenticate'])
      assert.equal(seen[h], undefined, `${h} reached the upstream`);
    assert.ok(
      seen.connection === undefined || !/hop/i.test(String(seen.connection)),
      String(seen.connection),
    );
    assert.equal(seen['x-keep'], 'yes');
    for (const h of ['x-resp-hop', 'keep-alive', 'proxy-connection'])
      assert.equal(r.headers[h], undefined, `${h} reached the client`);
    assert.ok(r.headers.connection === undefined || !/hop/i.test(r.headers.connection));
    assert.equal(r.headers['x-resp-keep'], 'yes');
  });

  test('HTTP/1.0 client without keep-alive: no chunked coding back, the connection closes', T, async (t) => {
    fx().upstream.handler = framingHandler;
    for (const path of ['/chunked', '/length']) {
      const { conn, target } = await rawConnection(fx());
      t.after(() => conn.close());
      conn.write(`GET ${target(path)} HTTP/1.0\r\n\r\n`);
      await conn.waitFor((c) => c.closed);
      const r = await conn.response();
      assert.equal(r.status, 200);
      assert.equal(r.headers['transfer-encoding'], undefined, r.head);
      if (path === '/chunked') {
        assert.equal(r.framing, 'close');
        assert.equal(r.body, 'part one;part two');
      } else assert.equal((JSON.parse(r.body) as { url: string }).url, path);
    }
  });

  test(
    'HTTP/1.0 client with keep-alive: the connection stays open while the length is known',
    T,
    async (t) => {
      fx().upstream.handler = framingHandler;
      const { conn, target } = await rawConnection(fx());
      t.after(() => conn.close());
      for (let i = 0; i < 3; i++) {
        conn.write(
          `GET ${target(`/length/${i}`)} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n`,
        );
        const r = await conn.response();
        assert.equal(r.status, 200);
        assert.equal(r.framing, 'length');
        assert.match(r.headers.connection ?? '', /keep-alive/i);
        assert.equal((JSON.parse(r.body) as { url: string }).url, `/length/${i}`);
        assert.equal(conn.closed, false);
      }
      // A body of unknown length can only be ended by closing, even though keep-alive was asked for.
      conn.write(`GET ${target('/chunked')} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n`);
      await conn.waitFor((c) => c.closed);
      const r = await conn.response();
      assert.equal(r.framing, 'close');
      assert.equal(r.body, 'part one;part two');
    },
  );

  test('pipelined requests are answered in order', T, async (t) => {
    fx().upstream.handler = framingHandler;
    const { conn, target } = await rawConnection(fx());
    t.after(() => conn.close());
    let batch = '';
    for (let i = 0; i < 5; i++)
      batch += `GET ${target(i % 2 === 0 ? `/p/${i}` : `/chunked/${i}`)} HTTP/1.1\r\nHost: x\r\n\r\n`;
    conn.write(batch);
    for (let i = 0; i < 5; i++) {
      const r = await conn.response();
      assert.equal(r.status, 200);
      if (i % 2 === 0) assert.equal((JSON.parse(r.body) as { url: string }).url, `/p/${i}`);
      else assert.equal(r.body, 'part one;part two');
    }
  });

  test('after an early response the rest of the request body is never read as a request', T, async (t) => {
    const urls: string[] = [];
    fx().upstream.handler = (req, res) => {
      urls.push(req.url ?? '');
      if (req.url === '/early') {
        res.writeHead(413, { 'content-length': 8, connection: 'close' });
        res.end('too long');
        return;
      }
      framingHandler(req, res);
    };
    const smuggled = `GET ${target0(fx())}/smuggled HTTP/1.1\r\nHost: x\r\n\r\n`;
    const { conn, target } = await rawConnection(fx());
    t.after(() => conn.close());
    conn.write(
      `POST ${target('/early')} HTTP/1.1\r\nHost: x\r\nContent-Length: ${10 + smuggled.length}\r\n\r\n0123456789`,
    );
    const r = await conn.response();
    assert.equal(r.status, 413);
    assert.match(r.headers.connection ?? '', /close/);
    conn.write(smuggled); // the rest of the body: it looks like a request, and must not become one
    await sleep(300); // time for a forwarded request to reach the upstream (and its answer to come back)
    assert.equal(conn.data, '', 'the proxy answered bytes of a request body as a new request');
    assert.deepEqual(urls, ['/early']);
  });

  test('after a malformed chunked body, the bytes that follow are never read as a request', T, async (t) => {
    const urls: string[] = [];
    fx().upstream.handler = (req) => {
      urls.push(req.url ?? '');
      req.resume();
      req.on('error', () => {});
    };
    const { conn, target } = await rawConnection(fx());
    t.after(() => conn.close());
    conn.write(
      `POST ${target('/bad-chunks')} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZ\r\n`,
    );
    const r = await conn.response();
    assert.equal(r.status, 400);
    assert.equal(r.headers['trellis-proxy-error'], 'bad-request');
    conn.write(`GET ${target('/smuggled')} HTTP/1.1\r\nHost: x\r\n\r\n`);
    await sleep(300); // time for a forwarded request to reach the upstream (and its answer to come back)
    assert.equal(conn.data, '', 'the proxy answered bytes after a bad body as a new request');
    assert.ok(!urls.includes('/smuggled'), `upstream saw ${urls.join(', ')}`);
  });

  test(
    'a reused upstream connection closed before answering: idempotent requests are retried once, others not',
    T,
    async () => {
      const attempts = new Map<string, number>();
      fx().upstream.handler = (req, res) => {
        const n = (attempts.get(req.url!) ?? 0) + 1;
        attempts.set(req.url!, n);
        if (req.url!.startsWith('/drop') && n === 1) {
          abortUpstreamConnection(req); // as if the idle connection had timed out just then
          return;
        }
        res.setHeader('content-length', 2);
        res.end('ok');
      };
      const c = await fx().client();
      for (const [method, path] of [
        ['GET', '/drop-get'],
        ['DELETE', '/drop-delete'],
        ['POST', '/drop-post'],
      ] as const) {
        assert.equal((await c.request({ path: '/warm' })).status, 200); // leaves an idle pooled connection
        const r = await c.request({ method, path });
        if (method === 'POST') {
          assert.equal(r.status, 502);
          assert.equal(r.headers['trellis-proxy-error'], 'upstream-reset');
          assert.equal(attempts.get(path), 1, 'a POST was sent twice');
        } else {
          assert.equal(r.status, 200, `${method} was not retried`);
          assert.equal(attempts.get(path), 2);
        }
      }
      c.close();
    },
  );

  test('a request head over the limit gives 431 request-header-too-large', T, async (t) => {
    const { conn, target } = await rawConnection(fx());
    t.after(() => conn.close());
    conn.write(`GET ${target('/huge')} HTTP/1.1\r\nHost: x\r\nX-Huge: ${'h'.repeat(70 * 1024)}\r\n\r\n`);
    const r = await conn.response();
    assert.equal(r.status, 431);
    assert.equal(r.headers['trellis-proxy-error'], 'request-header-too-large');
    await conn.waitFor((c) => c.closed);
  });
});
