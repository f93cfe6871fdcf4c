// End-to-end failure handling through the real proxy process, over every transport of
// test/helpers/http-matrix.ts: an upstream that refuses connections (502 connect-failed), one that
// dies mid-response (the client sees an error, the proxy keeps serving), one that never answers
// (504 response-timeout), and idle keep-alive connections closed after --idle-timeout-ms.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import {
  ALL_TRANSPORTS,
  abortUpstreamConnection,
  forEachTransport,
  startFixture,
  type UpRequest,
} from '../helpers/http-matrix.ts';

const T = { timeout: 15_000 };
const RESPONSE_TIMEOUT_MS = 500;
const IDLE_TIMEOUT_MS = 700;

async function closedPort(): Promise<number> {
  const s = net.createServer().listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

forEachTransport(
  ALL_TRANSPORTS,
  (fx, transport) => {
    test('an upstream that refuses connections gives 502 connect-failed', T, async (t) => {
      const port = await closedPort();
      const broken = await startFixture(transport, { appPort: port, targetPort: port });
      t.after(() => broken.close());
      if (transport.endsWith('-connect')) {
        // CONNECT connects before it answers: the refusal is the CONNECT's own answer.
        await assert.rejects(
          (async () => (await broken.client()).request({ path: '/refused' }))(),
          /CONNECT refused: HTTP\/1\.1 502 [^]*trellis-proxy-error: connect-failed/,
        );
        assert.ok(
          (await broken.proxy.metric('trellis_proxy_errors_total', { reason: 'connect-failed' })) >= 1,
        );
        return;
      }
      const c = await broken.client();
      for (let i = 0; i < 2; i++) {
        const r = await c.request({ path: `/refused/${i}` });
        assert.equal(r.status, 502);
        assert.equal(r.headers['trellis-proxy-error'], 'connect-failed');
      }
      assert.ok((await broken.proxy.metric('trellis_proxy_errors_total', { reason: 'connect-failed' })) >= 2);
    });

    test(
      'an upstream closing mid-response: the client sees an error, the proxy keeps serving',
      T,
      async () => {
        const seen: UpRequest[] = [];
        fx().upstream.handler = (req, res) => {
          seen.push(req);
          if (req.url === '/ok') {
            res.setHeader('content-length', 2);
            res.end('ok');
            return;
          }
          if (req.url === '/cut-length') res.writeHead(200, { 'content-length': 100_000 });
          else res.writeHead(200, { 'content-type': 'text/plain' }); // streamed (chunked on HTTP/1)
          res.write(Buffer.alloc(30_000, 0x61));
          setTimeout(() => abortUpstreamConnection(req), 50);
        };
        for (const path of ['/cut-length', '/cut-stream']) {
          const c = await fx().client();
          await assert.rejects(c.request({ path }), `${path}: the client did not see the upstream failure`);
          c.close();
          const c2 = await fx().client();
          const r = await c2.request({ path: '/ok' });
          assert.equal(r.status, 200);
          assert.equal(r.body.toString(), 'ok');
          c2.close();
        }
        assert.equal(fx().proxy.proc.exitCode, null);
      },
    );

    test('an upstream that does not answer in time gives 504 response-timeout', T, async () => {
      const pending: (() => void)[] = [];
      fx().upstream.handler = (req, res) => {
        if (req.url === '/slow') {
          pending.push(() => res.end('late'));
          return;
        }
        res.setHeader('content-length', 2);
        res.end('ok');
      };
      const c = await fx().client();
      const started = Date.now();
      const r = await c.request({ path: '/slow' });
      const elapsed = Date.now() - started;
      assert.equal(r.status, 504);
      assert.equal(r.headers['trellis-proxy-error'], 'response-timeout');
      assert.ok(
        elapsed >= RESPONSE_TIMEOUT_MS - 50 && elapsed < RESPONSE_TIMEOUT_MS + 2000,
        `answered after ${elapsed} ms`,
      );
      for (const p of pending) p();
      // The next request (on the same connection where it was kept) is served normally.
      const c2 = await fx().client();
      const ok = await c2.request({ path: '/fast' });
      assert.equal(ok.status, 200);
      c.close();
      c2.close();
    });

    test('an idle keep-alive connection is closed after --idle-timeout-ms', T, async () => {
      const c = await fx().client();
      const r = await c.request({ path: '/before-idle' });
      assert.equal(r.status, 200);
      const idleSince = Date.now();
      const closed = await Promise.race([
        c.connectionClosed().then(() => true),
        new Promise<boolean>((resolve) => setTimeout(() => resolve(false), IDLE_TIMEOUT_MS + 4000)),
      ]);
      const elapsed = Date.now() - idleSince;
      assert.ok(closed, 'the idle connection was not closed');
      assert.ok(elapsed >= IDLE_TIMEOUT_MS - 100, `closed after only ${elapsed} ms`);
      c.close();
    });
  },
  {
    proxyArgs: [
      '--response-timeout-ms',
      String(RESPONSE_TIMEOUT_MS),
      '--idle-timeout-ms',
      String(IDLE_TIMEOUT_MS),
    ],
  },
);
