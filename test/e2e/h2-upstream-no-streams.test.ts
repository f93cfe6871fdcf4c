// An HTTP/2 upstream that announces SETTINGS_MAX_CONCURRENT_STREAMS 0 (an app behind the inbound
// listener can, and so can any HTTP/2 server an app calls): node:http2 queued every stream to it
// in its own queue, without a bound or a timeout, and the proxy has no response timeout by
// default, so each request hung and held its memory. The pool of node:http2 sessions
// (src/proxy/http/h2-upstream-pool.ts) now lets a request wait for room itself: at most twice the
// connect timeout (504 connect-timeout). An upstream that allows one stream at a time still
// serves every request: each waits its turn.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import { once } from 'node:events';
import { startMeshWorld } from '../helpers/mesh-pki.ts';
import { portOf } from '../helpers/running-proxy.ts';

/** A prior-knowledge HTTP/2 request to the proxy's inbound listener: its status, or 'no answer' after `ms`. */
async function statusOf(port: number, ms: number): Promise<string> {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on('error', () => {});
  try {
    const req = session.request({ ':path': '/x' });
    req.on('error', () => {});
    req.end();
    const timer = new Promise<string>((resolve) => setTimeout(() => resolve('no answer'), ms).unref());
    const answer = once(req, 'response').then(([h]) => {
      const headers = h as http2.IncomingHttpHeaders;
      return `${headers[':status']} ${headers['trellis-proxy-error'] ?? ''}`.trim();
    });
    return await Promise.race([answer, timer]);
  } finally {
    session.destroy();
  }
}

async function startApp(
  t: { after(fn: () => unknown): void },
  maxConcurrentStreams: number,
): Promise<number> {
  const app = http2.createServer({ settings: { maxConcurrentStreams } });
  app.on('stream', (stream) => {
    stream.on('error', () => {});
    // Slow enough that concurrent requests overlap.
    setTimeout(() => {
      if (!stream.destroyed) stream.respond({ ':status': 200 }, { endStream: true });
    }, 50);
  });
  app.listen(0, '127.0.0.1');
  await once(app, 'listening');
  t.after(() => app.close());
  return (app.address() as net.AddressInfo).port;
}

test('an HTTP/2 upstream that allows no stream: 504 after twice the connect timeout, not a hang', async (t) => {
  const world = await startMeshWorld();
  t.after(() => world.close());
  const proxy = await world.proxy({
    identity: null,
    app: await startApp(t, 0),
    config: { timeouts: { connectMs: 300, drainGraceMs: 200 } },
  });
  const started = Date.now();
  const answers = await Promise.all(
    Array.from({ length: 6 }, () => statusOf(portOf(proxy, 'inbound'), 5000)),
  );
  for (const a of answers) assert.equal(a, '504 connect-timeout');
  assert.ok(Date.now() - started < 4000, `answered after ${Date.now() - started} ms`);
});

test('an HTTP/2 upstream that allows one stream at a time serves every request in turn', async (t) => {
  const world = await startMeshWorld();
  t.after(() => world.close());
  const proxy = await world.proxy({
    identity: null,
    app: await startApp(t, 1),
    config: { timeouts: { connectMs: 2000, drainGraceMs: 200 } },
  });
  const answers = await Promise.all(
    Array.from({ length: 8 }, () => statusOf(portOf(proxy, 'inbound'), 8000)),
  );
  assert.deepEqual(answers, Array(8).fill('200'));
});
