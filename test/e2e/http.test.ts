// End-to-end HTTP forwarding through the real proxy process, each test body run over every
// transport of test/helpers/http-matrix.ts (HTTP/1.1 and HTTP/2 on the inbound listener, HTTP/1.1
// through the outbound listener in absolute-form and in a CONNECT tunnel, HTTP/2 in a CONNECT
// tunnel): methods, paths, bodies of many sizes, streamed bodies with trailers, 100-continue,
// bodiless responses, 1xx, large headers and upstream connection reuse.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ALL_TRANSPORTS,
  type EchoedRequest,
  forEachTransport,
  readBody,
  sha256,
} from '../helpers/http-matrix.ts';

const T = { timeout: 15_000 };

function pattern(n: number, seed = 0): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

function json(body: Buffer): EchoedRequest {
  return JSON.parse(body.toString('utf8')) as EchoedRequest;
}

forEachTransport(ALL_TRANSPORTS, (fx) => {
  test('methods GET, POST, PUT, DELETE, PATCH, OPTIONS reach the upstream with their bodies', T, async () => {
    const c = await fx().client();
    for (const method of ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']) {
      const withBody = method !== 'GET' && method !== 'OPTIONS';
      const r = await c.request({
        method,
        path: `/m/${method}`,
        body: withBody ? `body of ${method}` : undefined,
      });
      assert.equal(r.status, 200, method);
      const e = json(r.body);
      assert.equal(e.method, method);
      assert.equal(e.url, `/m/${method}`);
      assert.equal(e.body, withBody ? `body of ${method}` : '');
    }
    c.close();
  });

  test('query strings and percent-encoded paths arrive byte for byte', T, async () => {
    const c = await fx().client();
    const paths = [
      '/a%20b/%2F..%2e/c?x=1&y=%26z&empty=&flag',
      '/%E2%82%AC/caf%C3%A9;param=1?q=a+b%2Bc&q=2',
      "/~user/it's(ok)!*,$@:=/?redirect=http://example.test/x?y",
      '/?',
      '/x//y/./z/../w',
    ];
    for (const path of paths) {
      const r = await c.request({ path });
      // A fragment is never sent on the wire.
      assert.equal(json(r.body).url, path);
    }
    c.close();
  });

  test('request and response bodies of many sizes, with Content-Length', T, async () => {
    const c = await fx().client();
    for (const n of [1, 1023, 16_384, 65_535, 65_536, 65_537, 1_000_003]) {
      const body = pattern(n, n);
      const r = await c.request({ method: 'POST', path: `/upload/${n}`, body });
      const e = json(r.body);
      assert.equal(e.bodyLength, n);
      assert.equal(e.bodySha256, sha256(body));
      assert.equal(e.headers['content-length'], String(n));
    }
    fx().upstream.handler = (req, res) => {
      const n = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('n'));
      res.setHeader('content-length', n);
      res.end(pattern(n, 7));
    };
    for (const n of [0, 1, 4096, 65_536, 2_000_001]) {
      const r = await c.request({ path: `/download?n=${n}` });
      assert.equal(r.status, 200);
      assert.equal(r.headers['content-length'], String(n));
      assert.equal(r.body.length, n);
      assert.ok(r.body.equals(pattern(n, 7)), `download of ${n} bytes differs`);
    }
    c.close();
  });

  test(
    'empty request bodies with Content-Length: 0',
    {
      timeout: 3000, // answered in milliseconds when it works
    },
    async () => {
      const c = await fx().client();
      for (const method of ['POST', 'PUT', 'PATCH']) {
        const r = await c.request({ method, path: '/empty', body: Buffer.alloc(0) });
        const e = json(r.body);
        assert.equal(e.method, method);
        assert.equal(e.bodyLength, 0);
        assert.equal(e.headers['content-length'], '0');
      }
      c.close();
    },
  );

  test('streamed (chunked) request and response bodies with trailers both ways', T, async () => {
    const chunks = [pattern(10, 1), pattern(70_000, 2), Buffer.from('x'), pattern(300_000, 3)];
    let upstreamSaw: { trailers: Record<string, string>; length: number; sha: string; te: unknown } | null =
      null;
    fx().upstream.handler = (req, res) => {
      readBody(req).then(
        (body) => {
          upstreamSaw = {
            trailers: { ...req.trailers } as Record<string, string>,
            length: body.length,
            sha: sha256(body),
            te: req.headers['transfer-encoding'],
          };
          res.setHeader('trailer', 'x-res-checksum');
          res.writeHead(200, { 'content-type': 'application/octet-stream' });
          for (const chunk of chunks) res.write(chunk);
          res.addTrailers({ 'x-res-checksum': sha256(body) });
          res.end();
        },
        () => {},
      );
    };
    const c = await fx().client();
    const all = Buffer.concat(chunks);
    for (let round = 0; round < 2; round++) {
      const r = await c.request({
        method: 'POST',
        path: '/stream',
        body: chunks,
        trailers: { 'x-req-checksum': sha256(all), 'x-round': String(round) },
      });
      assert.equal(r.status, 200);
      assert.ok(r.body.equals(all), 'response body differs');
      assert.equal(r.trailers['x-res-checksum'], sha256(all));
      assert.ok(upstreamSaw !== null);
      const saw = upstreamSaw as {
        trailers: Record<string, string>;
        length: number;
        sha: string;
        te: unknown;
      };
      assert.equal(saw.length, all.length);
      assert.equal(saw.sha, sha256(all));
      assert.equal(saw.trailers['x-req-checksum'], sha256(all));
      assert.equal(saw.trailers['x-round'], String(round));
      if (fx().protocol === 'http1') {
        assert.equal(saw.te, 'chunked');
        assert.equal(r.headers['transfer-encoding'], 'chunked');
      }
    }
    c.close();
  });

  test('Expect: 100-continue: the body is sent only after the upstream says 100', T, async () => {
    const events: string[] = [];
    fx().upstream.onCheckContinue = (req, res) => {
      events.push('check');
      setTimeout(() => {
        events.push('continue');
        (res as unknown as { writeContinue(): void }).writeContinue();
        readBody(req).then(
          (body) => {
            events.push(`body ${body.length}`);
            res.setHeader('content-length', body.length);
            res.end(body);
          },
          () => {},
        );
      }, 150);
    };
    const c = await fx().client();
    const body = pattern(100_000, 9);
    const r = await c.request({ method: 'PUT', path: '/continue', body, expectContinue: true });
    assert.equal(r.status, 200);
    assert.ok(r.continued, 'the client saw no 100 Continue');
    assert.ok(r.body.equals(body));
    assert.deepEqual(events, ['check', 'continue', `body ${body.length}`]);
    c.close();
  });

  test('HEAD, 204 and 304 have no body and the connection stays usable', T, async () => {
    fx().upstream.handler = (req, res) => {
      if (req.url === '/head') {
        res.writeHead(200, { 'content-length': 1234, 'x-kind': 'head' });
        res.end();
      } else if (req.url === '/204') {
        res.writeHead(204, { 'x-kind': 'no-content' });
        res.end();
      } else if (req.url === '/304') {
        res.writeHead(304, { etag: '"v1"', 'x-kind': 'not-modified' });
        res.end();
      } else {
        res.setHeader('content-length', 2);
        res.end('ok');
      }
    };
    const c = await fx().client();
    const before = fx().upstream.connections;
    for (let i = 0; i < 2; i++) {
      const head = await c.request({ method: 'HEAD', path: '/head' });
      assert.equal(head.status, 200);
      assert.equal(head.headers['content-length'], '1234');
      assert.equal(head.body.length, 0);
      const nc = await c.request({ path: '/204' });
      assert.equal(nc.status, 204);
      assert.equal(nc.headers['x-kind'], 'no-content');
      assert.equal(nc.body.length, 0);
      const nm = await c.request({ path: '/304', headers: { 'if-none-match': '"v1"' } });
      assert.equal(nm.status, 304);
      assert.equal(nm.headers.etag, '"v1"');
      assert.equal(nm.body.length, 0);
      const ok = await c.request({ path: '/after' });
      assert.equal(ok.body.toString(), 'ok');
    }
    assert.ok(fx().upstream.connections - before <= 1, 'bodiless responses broke upstream reuse');
    c.close();
  });

  test('a 103 Early Hints response is forwarded before the final response', T, async () => {
    fx().upstream.handler = (_req, res) => {
      res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' });
      setTimeout(() => {
        res.setHeader('content-length', 5);
        res.end('final');
      }, 50);
    };
    const c = await fx().client();
    const r = await c.request({ path: '/hints' });
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), 'final');
    const hints = r.informational.filter((i) => i.status === 103);
    assert.equal(hints.length, 1, `informational: ${JSON.stringify(r.informational)}`);
    assert.equal(hints[0]!.headers.link, '</style.css>; rel=preload; as=style');
    c.close();
  });

  test('large request and response headers within the limits pass unchanged', T, async () => {
    const headers: Record<string, string> = { 'x-big': 'b'.repeat(8000) };
    for (let i = 0; i < 60; i++) headers[`x-h-${i}`] = `${i}-${'v'.repeat(150)}`;
    fx().upstream.handler = (req, res) => {
      res.setHeader('x-big-back', String(req.headers['x-big']).toUpperCase());
      for (let i = 0; i < 40; i++) res.setHeader(`x-r-${i}`, 'r'.repeat(200));
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(req.headers));
    };
    const c = await fx().client();
    const r = await c.request({ path: '/big-headers', headers });
    assert.equal(r.status, 200);
    const seen = JSON.parse(r.body.toString()) as Record<string, string>;
    for (const [k, v] of Object.entries(headers)) assert.equal(seen[k], v, k);
    assert.equal(r.headers['x-big-back'], 'B'.repeat(8000));
    for (let i = 0; i < 40; i++) assert.equal(r.headers[`x-r-${i}`], 'r'.repeat(200));
    c.close();
  });

  test('keep-alive: sequential requests reuse few upstream connections', T, async () => {
    const before = fx().upstream.connections;
    const c = await fx().client();
    for (let i = 0; i < 40; i++) {
      const r = await c.request({
        method: i % 2 === 0 ? 'GET' : 'POST',
        path: `/seq/${i}`,
        body: i % 2 ? `#${i}` : undefined,
      });
      assert.equal(json(r.body).url, `/seq/${i}`);
    }
    c.close();
    // One client connection after another: the proxy's upstream pool is shared between them.
    for (let i = 0; i < 15; i++) {
      const c2 = await fx().client();
      const r = await c2.request({ path: `/fresh/${i}` });
      assert.equal(json(r.body).url, `/fresh/${i}`);
      c2.close();
    }
    const used = fx().upstream.connections - before;
    // Each CONNECT opens its own connection to the target before answering 200 (that is what a
    // tunnel is); the requests inside reuse pooled connections.
    const tunnels = fx().transport.endsWith('-connect') ? 16 : 0;
    assert.ok(used <= 2 + tunnels, `55 requests used ${used} upstream connections`);
  });
});
