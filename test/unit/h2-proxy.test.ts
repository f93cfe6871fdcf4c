// The HTTP/2 forwarding path in-process: a front listener hands connections to H2Proxy (as the
// real listener does after detecting the preface); node:http2 peers play client and upstream.
import assert from 'node:assert/strict';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { Readable } from 'node:stream';
import { describe, test } from 'node:test';
import { silentLogger } from '../../src/core/log.ts';
import type { Discovery as H2Discovery } from '../../src/proxy/outbound/balance.ts';
import {
  encodeGrpcMessage,
  forwardableHeaders,
  proxyErrorResponse,
} from '../../src/proxy/http/h2-headers.ts';
import { ServiceDiscovery } from '../../src/proxy/outbound/discovery.ts';
import type { Endpoint } from '../../src/core/endpoints.ts';
import { StaticResolver, staticEndpoint } from '../../src/proxy/resolve/static.ts';
import { parseAuthority } from '../../src/core/target.ts';
import { startProxyHarness, type HarnessOptions, type ProxyHarness } from '../fixtures/grpc-proxy-harness.ts';
import {
  collect,
  connectClient,
  delay,
  patternChunk,
  sha256,
  startUpstream,
  type Upstream,
} from '../fixtures/grpc-h2-peers.ts';

const {
  NGHTTP2_CANCEL,
  NGHTTP2_REFUSED_STREAM,
  NGHTTP2_ENHANCE_YOUR_CALM,
  NGHTTP2_INTERNAL_ERROR,
  NGHTTP2_NO_ERROR,
} = http2.constants;

const CHUNK = 64 * 1024;
const LARGE_CHUNKS = 320; // 20 MiB
/** Bytes a stalled exchange may hold end to end: two 1 MiB stream windows, buffers, slack. */
const BOUNDED = 6 * 1024 * 1024;

interface Setup {
  upstream: Upstream;
  harness: ProxyHarness;
  client: http2.ClientHttp2Session;
}

/** An upstream, a proxy in front of it and a client, all cleaned up after the test. */
async function setup(
  t: { after(fn: () => Promise<void> | void): void },
  onStream: Parameters<typeof startUpstream>[0],
  options: HarnessOptions = {},
): Promise<Setup> {
  const upstream = await startUpstream(onStream);
  const harness = await startProxyHarness({
    connTarget: { host: '127.0.0.1', port: upstream.port },
    ...options,
  });
  const client = connectClient(harness.address);
  t.after(async () => {
    client.destroy();
    await harness.close();
    await upstream.close();
  });
  return { upstream, harness, client };
}

/** `promise`, or a failed assertion naming `what` when it takes longer than `ms`. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new assert.AssertionError({ message: `timed out: ${what}` })), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

async function waitFor(cond: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await delay(10);
  }
}

describe('h2 headers', () => {
  test('drops connection-specific headers, keeps pseudo-headers and te: trailers', () => {
    const out = forwardableHeaders({
      ':method': 'GET',
      ':path': '/a',
      ':authority': 'svc',
      connection: 'close',
      'keep-alive': '5',
      'proxy-connection': 'x',
      'transfer-encoding': 'chunked',
      upgrade: 'h2c',
      te: 'trailers',
      'x-app': 'v',
    });
    assert.deepEqual(out, {
      ':method': 'GET',
      ':path': '/a',
      ':authority': 'svc',
      te: 'trailers',
      'x-app': 'v',
    });
    assert.equal(forwardableHeaders({ te: 'gzip, trailers' }).te, undefined);
  });

  test('gRPC error responses are trailers-only 200s with grpc-status and a percent-encoded message', () => {
    const grpc = proxyErrorResponse('response-timeout', true, 'late: 100%');
    assert.equal(grpc.body, null);
    assert.equal(grpc.headers[':status'], 200);
    assert.equal(grpc.headers['grpc-status'], '4');
    assert.equal(grpc.headers['grpc-message'], 'late: 100%25');
    assert.equal(grpc.headers['trellis-proxy-error'], 'response-timeout');
    assert.equal(proxyErrorResponse('connect-failed', true, '').headers['grpc-status'], '14');
    assert.equal(proxyErrorResponse('unknown-destination', false, 'x').headers[':status'], 400);
    assert.equal(encodeGrpcMessage('é\n'), '%C3%A9%0A');
  });
});

describe('H2Proxy forwarding', () => {
  test('forwards headers, bodies and trailers both ways, and 1xx responses', async (t) => {
    let seen:
      { headers: http2.IncomingHttpHeaders; body: string; trailers?: http2.IncomingHttpHeaders } | undefined;
    const { harness, client } = await setup(t, (stream, headers) => {
      const chunks: Buffer[] = [];
      let trailers: http2.IncomingHttpHeaders | undefined;
      stream.on('trailers', (tr: http2.IncomingHttpHeaders) => (trailers = tr));
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        seen = { headers, body: Buffer.concat(chunks).toString(), trailers };
        stream.additionalHeaders({ ':status': 103, link: '</style.css>; rel=preload' });
        stream.respond({ ':status': 201, 'x-upstream': 'u1' }, { waitForTrailers: true });
        stream.on('wantTrailers', () => stream.sendTrailers({ 'x-checksum': 'abc', 'grpc-status': '0' }));
        stream.end(`echo:${seen.body}`);
      });
    });
    const req = client.request(
      {
        ':method': 'POST',
        ':path': '/items?q=1',
        ':authority': 'svc.example:80',
        'x-request': 'r1',
        te: 'trailers',
      },
      { waitForTrailers: true },
    );
    req.on('wantTrailers', () => req.sendTrailers({ 'x-request-trailer': 't1' }));
    req.end('hello');
    const res = await collect(req);

    assert.equal(seen?.headers[':method'], 'POST');
    assert.equal(seen?.headers[':path'], '/items?q=1');
    assert.equal(seen?.headers[':authority'], 'svc.example:80');
    assert.equal(seen?.headers['x-request'], 'r1');
    assert.equal(seen?.headers.te, 'trailers');
    assert.equal(seen?.body, 'hello');
    assert.equal(seen?.trailers?.['x-request-trailer'], 't1');
    assert.equal(res.headers?.[':status'], 201);
    assert.equal(res.headers?.['x-upstream'], 'u1');
    assert.deepEqual(
      res.informational.map((h) => h[':status']),
      [103],
    );
    assert.equal(res.body.toString(), 'echo:hello');
    assert.equal(res.trailers?.['x-checksum'], 'abc');
    assert.equal(res.rstCode, NGHTTP2_NO_ERROR);

    await waitFor(() => harness.accessLog.entries.length === 1, 'the access log entry');
    assert.equal(harness.metrics.started, 1);
    assert.deepEqual(
      harness.metrics.finished.map((f) => [f.status, f.failed]),
      [[201, false]],
    );
    const entry = harness.accessLog.entries[0]!;
    assert.equal(entry.protocol, 'h2');
    assert.equal(entry.path, '/items?q=1');
    assert.equal(entry.authority, 'svc.example:80');
    assert.equal(entry.bytesIn, 5);
    assert.equal(entry.bytesOut, 10);
    assert.equal(entry.error, undefined);
  });

  test('a headers-only request and a trailers-only response pass through', async (t) => {
    const { client } = await setup(t, (stream) => {
      stream.respond(
        { ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '5' },
        { endStream: true },
      );
    });
    const res = await collect(client.request({ ':path': '/only-headers' }, { endStream: true }));
    assert.equal(res.headers?.['grpc-status'], '5');
    assert.equal(res.body.length, 0);
    assert.equal(res.rstCode, NGHTTP2_NO_ERROR);
  });

  test('a bodiless request whose END_STREAM comes in an empty DATA frame or in trailers is answered', async (t) => {
    // Node ends such a request stream before the upstream stream exists; it must still be ended upstream.
    const { harness, client } = await setup(t, (stream, headers) => {
      let length = 0;
      let trailers: http2.IncomingHttpHeaders | undefined;
      stream.on('data', (c: Buffer) => (length += c.length));
      stream.on('trailers', (tr: http2.IncomingHttpHeaders) => (trailers = tr));
      stream.on('end', () => {
        if (stream.destroyed || stream.closed) return;
        stream.respond({ ':status': 200 });
        stream.end(JSON.stringify({ cl: headers['content-length'], length, trailer: trailers?.['x-t'] }));
      });
    });
    const cases: [string, http2.OutgoingHttpHeaders, boolean, object][] = [
      ['content-length: 0', { 'content-length': '0' }, false, { cl: '0', length: 0 }],
      ['no content-length', {}, false, { length: 0 }],
      ['trailers only', {}, true, { length: 0, trailer: 'v' }],
    ];
    for (const [name, headers, withTrailers, expected] of cases) {
      const req = client.request(
        { ':method': 'POST', ':path': '/empty', ...headers },
        { waitForTrailers: withTrailers },
      );
      if (withTrailers) req.on('wantTrailers', () => req.sendTrailers({ 'x-t': 'v' }));
      req.end(Buffer.alloc(0)); // HEADERS, then END_STREAM in its own (empty DATA or trailers) frame
      const res = await within(collect(req), 2000, `a response to the request with ${name}`);
      assert.equal(res.headers?.[':status'], 200, name);
      assert.deepEqual(JSON.parse(res.body.toString()), expected, name);
      assert.equal(res.rstCode, NGHTTP2_NO_ERROR, name);
    }
    await waitFor(() => harness.accessLog.entries.length === 3, 'an access log entry per request');
    assert.deepEqual(
      harness.accessLog.entries.map((e) => [e.status, e.error]),
      [
        [200, undefined],
        [200, undefined],
        [200, undefined],
      ],
    );
  });

  test('streams a 20 MiB request body with bounded buffering while the upstream stalls', async (t) => {
    let pulled = 0;
    let pulledWhileStalled = -1;
    let received: string | undefined;
    const { client } = await setup(t, (stream) => {
      setTimeout(() => {
        pulledWhileStalled = pulled * CHUNK;
        const chunks: Buffer[] = [];
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('end', () => {
          received = sha256(chunks);
          stream.respond({ ':status': 200 });
          stream.end(String(Buffer.concat(chunks).length));
        });
      }, 500);
    });
    const req = client.request({ ':method': 'POST', ':path': '/upload' });
    const body = Readable.from(
      (function* () {
        for (let i = 0; i < LARGE_CHUNKS; i++) {
          pulled++;
          yield patternChunk(i, CHUNK);
        }
      })(),
    );
    body.pipe(req);
    const res = await collect(req);
    const expected = sha256(Array.from({ length: LARGE_CHUNKS }, (_, i) => patternChunk(i, CHUNK)));
    assert.ok(pulledWhileStalled > 0, 'some body was sent before the upstream read');
    assert.ok(
      pulledWhileStalled < BOUNDED,
      `client wrote ${pulledWhileStalled} bytes into a stalled upstream`,
    );
    assert.equal(res.body.toString(), String(LARGE_CHUNKS * CHUNK));
    assert.equal(received, expected);
  });

  test('streams a 20 MiB response body with bounded buffering while the client stalls', async (t) => {
    let pulled = 0;
    const { client } = await setup(t, (stream) => {
      stream.respond({ ':status': 200 });
      Readable.from(
        (function* () {
          for (let i = 0; i < LARGE_CHUNKS; i++) {
            pulled++;
            yield patternChunk(i, CHUNK);
          }
        })(),
      ).pipe(stream);
    });
    const req = client.request({ ':path': '/download' }, { endStream: true });
    req.on('error', () => {});
    await new Promise((resolve) => req.once('response', resolve));
    await delay(500); // not reading: flow control must stop the upstream
    const pulledWhileStalled = pulled * CHUNK;
    const res = await collect(req);
    assert.ok(pulledWhileStalled > 0);
    assert.ok(
      pulledWhileStalled < BOUNDED,
      `upstream wrote ${pulledWhileStalled} bytes towards a stalled client`,
    );
    assert.equal(res.body.length, LARGE_CHUNKS * CHUNK);
    assert.equal(
      sha256([res.body]),
      sha256(Array.from({ length: LARGE_CHUNKS }, (_, i) => patternChunk(i, CHUNK))),
    );
  });
});

describe('H2Proxy resets', () => {
  test('an upstream reset mid-response reaches the client with the same code', async (t) => {
    const { harness, client } = await setup(t, (stream) => {
      stream.respond({ ':status': 200 });
      stream.write('partial');
      setTimeout(() => {
        // More than the flow-control windows hold, so the reset overtakes the end of the body.
        stream.write(Buffer.alloc(4 << 20));
        stream.close(NGHTTP2_ENHANCE_YOUR_CALM);
      }, 50);
    });
    const res = await collect(client.request({ ':path': '/r' }, { endStream: true }));
    assert.equal(res.headers?.[':status'], 200);
    assert.equal(res.rstCode, NGHTTP2_ENHANCE_YOUR_CALM);
    await waitFor(() => harness.metrics.finished.length === 1, 'metrics');
    assert.equal(harness.metrics.finished[0]!.failed, true);
  });

  test('an upstream REFUSED_STREAM before any response is sent once more, then stays REFUSED_STREAM', async (t) => {
    let seen = 0;
    const { client } = await setup(t, (stream) => {
      seen++;
      stream.close(NGHTTP2_REFUSED_STREAM);
    });
    const res = await collect(client.request({ ':path': '/refused' }, { endStream: true }));
    assert.equal(res.headers, undefined);
    assert.equal(res.rstCode, NGHTTP2_REFUSED_STREAM);
    assert.equal(seen, 2, 'sent once more, not more');
  });

  test('a refused stream without a body is answered by the second try (the peer never processed it)', async (t) => {
    let seen = 0;
    const { client } = await setup(t, (stream) => {
      seen++;
      if (seen === 1) stream.close(NGHTTP2_REFUSED_STREAM);
      else stream.respond({ ':status': 200 }, { endStream: true });
    });
    const res = await collect(client.request({ ':path': '/refused-once' }, { endStream: true }));
    assert.equal(res.headers?.[':status'], 200);
    assert.equal(seen, 2);
  });

  test('a refused stream with a body that was not kept is not sent again', async (t) => {
    let seen = 0;
    const { client } = await setup(t, (stream) => {
      seen++;
      stream.close(NGHTTP2_REFUSED_STREAM);
    });
    const req = client.request({ ':method': 'POST', ':path': '/refused-body' });
    req.end('body');
    const res = await collect(req);
    assert.equal(res.rstCode, NGHTTP2_REFUSED_STREAM);
    assert.equal(seen, 1);
  });

  test('a client cancel closes the upstream stream with CANCEL', async (t) => {
    let upstreamClosed!: (code: number | undefined) => void;
    const upstreamCode = new Promise<number | undefined>((resolve) => (upstreamClosed = resolve));
    const { client } = await setup(t, (stream) => {
      stream.respond({ ':status': 200 });
      stream.write('first');
      stream.once('close', () => upstreamClosed(stream.rstCode));
    });
    const req = client.request({ ':method': 'POST', ':path': '/long' });
    req.on('error', () => {});
    req.write('some');
    await new Promise((resolve) => req.once('data', resolve));
    req.close(NGHTTP2_CANCEL);
    assert.equal(await upstreamCode, NGHTTP2_CANCEL);
  });

  test('a request cut short by a dead client connection is reset upstream, not completed', async (t) => {
    let upstreamSaw!: (outcome: { ended: boolean; code: number | undefined; bytes: number }) => void;
    const outcome = new Promise<{ ended: boolean; code: number | undefined; bytes: number }>(
      (resolve) => (upstreamSaw = resolve),
    );
    const { harness } = await setup(t, (stream) => {
      let ended = false;
      let bytes = 0;
      stream.on('data', (c: Buffer) => (bytes += c.length));
      // Node also emits 'end' when a stream is reset; a real END_STREAM leaves rstCode unset.
      stream.on('end', () => (ended = stream.rstCode === undefined));
      stream.once('close', () => upstreamSaw({ ended, code: stream.rstCode, bytes }));
    });
    const doomed = connectClient(harness.address);
    const req = doomed.request({ ':method': 'POST', ':path': '/upload' });
    req.on('error', () => {});
    req.write(Buffer.alloc(1000));
    await delay(100);
    doomed.socket.destroy(); // the client vanishes mid-request
    const seen = await outcome;
    assert.equal(seen.bytes, 1000);
    assert.equal(seen.ended, false, 'the upstream must not see a complete request');
    assert.notEqual(seen.code, NGHTTP2_NO_ERROR);
  });

  test('an upstream connection dying before the response is a 502 upstream-reset', async (t) => {
    const { harness, client } = await setup(t, (stream) => stream.session?.destroy());
    const res = await collect(client.request({ ':path': '/die' }, { endStream: true }));
    assert.equal(res.headers?.[':status'], 502);
    assert.equal(res.headers?.['trellis-proxy-error'], 'upstream-reset');
    await waitFor(() => harness.metrics.errors.includes('upstream-reset'), 'the proxy error metric');
  });

  test('an upstream connection dying mid-response resets the client stream, or ends a gRPC call with status 14', async (t) => {
    const { client, harness } = await setup(t, (stream, headers) => {
      stream.respond({ ':status': 200, 'content-type': headers['content-type'] ?? 'text/plain' });
      // Close the connection under the stream (nothing says the body is complete).
      stream.write('partial', () => setTimeout(() => stream.session?.socket.destroy(), 20));
    });
    const res = await collect(client.request({ ':path': '/die-late' }, { endStream: true }));
    assert.equal(res.headers?.[':status'], 200);
    assert.equal(res.body.toString(), 'partial');
    assert.equal(res.rstCode, NGHTTP2_INTERNAL_ERROR);

    const grpc = await collect(
      client.request({ ':path': '/pkg.Svc/Stream', 'content-type': 'application/grpc' }, { endStream: true }),
    );
    assert.equal(grpc.headers?.[':status'], 200);
    assert.equal(grpc.trailers?.['grpc-status'], '14');
    assert.equal(grpc.trailers?.['trellis-proxy-error'], 'upstream-reset');
    assert.equal(grpc.rstCode, NGHTTP2_NO_ERROR);
    await waitFor(() => harness.metrics.finished.length === 2, 'metrics');
    assert.deepEqual(harness.metrics.errors, ['upstream-reset', 'upstream-reset']);
    assert.ok(harness.metrics.finished.every((f) => f.failed));
  });
});

async function deadTarget(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port; // nothing listens there now: connections are refused
}

describe('H2Proxy made-up responses', () => {
  test('connection refused: 502 connect-failed, and grpc-status 14 for gRPC', async (t) => {
    const harness = await startProxyHarness({ connTarget: { host: '127.0.0.1', port: await deadTarget() } });
    const client = connectClient(harness.address);
    t.after(async () => {
      client.destroy();
      await harness.close();
    });
    const plain = await collect(client.request({ ':method': 'POST', ':path': '/x' }, { endStream: true }));
    assert.equal(plain.headers?.[':status'], 502);
    assert.equal(plain.headers?.['trellis-proxy-error'], 'connect-failed');
    assert.match(plain.body.toString(), /ECONNREFUSED/);

    const req = client.request({
      ':method': 'POST',
      ':path': '/pkg.Svc/Call',
      'content-type': 'application/grpc',
    });
    req.end(Buffer.from([0, 0, 0, 0, 0]));
    const grpc = await collect(req);
    assert.equal(grpc.headers?.[':status'], 200);
    assert.equal(grpc.headers?.['grpc-status'], '14');
    assert.equal(grpc.headers?.['trellis-proxy-error'], 'connect-failed');
    assert.ok(String(grpc.headers?.['grpc-message']).length > 0);
    assert.equal(grpc.rstCode, NGHTTP2_NO_ERROR);
    await waitFor(() => harness.metrics.finished.length === 2, 'metrics');
    assert.deepEqual(harness.metrics.errors, ['connect-failed', 'connect-failed']);
    assert.ok(harness.metrics.finished.every((f) => f.failed));
  });

  test('no route: 400 unknown-destination', async (t) => {
    const harness = await startProxyHarness({ route: () => null });
    const client = connectClient(harness.address);
    t.after(async () => {
      client.destroy();
      await harness.close();
    });
    const res = await collect(client.request({ ':path': '/', ':authority': 'nowhere' }, { endStream: true }));
    assert.equal(res.headers?.[':status'], 400);
    assert.equal(res.headers?.['trellis-proxy-error'], 'unknown-destination');
  });

  test('no response headers in time: 504 response-timeout, DEADLINE_EXCEEDED for gRPC, upstream cancelled', async (t) => {
    const upstreamCodes: (number | undefined)[] = [];
    const { client, harness } = await setup(
      t,
      (stream) => stream.once('close', () => upstreamCodes.push(stream.rstCode)),
      { responseTimeoutMs: 150 },
    );
    const plain = await collect(client.request({ ':path': '/slow' }, { endStream: true }));
    assert.equal(plain.headers?.[':status'], 504);
    assert.equal(plain.headers?.['trellis-proxy-error'], 'response-timeout');
    const grpc = await collect(
      client.request(
        { ':path': '/pkg.Svc/Slow', 'content-type': 'application/grpc+proto' },
        { endStream: true },
      ),
    );
    assert.equal(grpc.headers?.['grpc-status'], '4');
    await waitFor(() => upstreamCodes.length === 2, 'the upstream streams to close');
    assert.deepEqual(upstreamCodes, [NGHTTP2_CANCEL, NGHTTP2_CANCEL]);
    assert.deepEqual(harness.metrics.errors, ['response-timeout', 'response-timeout']);
  });
});

describe('H2Proxy sessions', () => {
  test('drain sends GOAWAY and lets the in-flight stream finish', async (t) => {
    const { harness, client } = await setup(t, (stream) => {
      setTimeout(() => {
        stream.respond({ ':status': 200 });
        stream.end('done');
      }, 200);
    });
    let goaway = false;
    client.on('goaway', () => (goaway = true));
    const inFlight = collect(client.request({ ':path': '/in-flight' }, { endStream: true }));
    await delay(50);
    const drained = harness.proxy.drain(5000);
    const res = await inFlight;
    assert.equal(res.headers?.[':status'], 200);
    assert.equal(res.body.toString(), 'done');
    await drained;
    assert.ok(goaway, 'the client received GOAWAY');
    assert.equal(harness.proxy.sessionCount, 0);
  });

  test('drain is bounded by its grace period: a stream still open then is reset, logged and cancelled upstream', async (t) => {
    let upstreamCode: number | undefined | 'open';
    const { harness, client } = await setup(t, (stream) => {
      upstreamCode = 'open'; // never answers, never reads
      stream.once('close', () => (upstreamCode = stream.rstCode));
    });
    const req = client.request({ ':method': 'POST', ':path': '/stuck' });
    req.write('x'); // and no END_STREAM: the stream cannot finish by itself
    const res = collect(req);
    await waitFor(() => upstreamCode === 'open', 'the stream to reach the upstream');
    const started = performance.now();
    await within(harness.proxy.drain(200), 3000, 'the drain');
    const tookMs = performance.now() - started;
    assert.ok(tookMs >= 150 && tookMs < 1500, `drain took ${tookMs} ms with a 200 ms grace`);
    await waitFor(() => harness.proxy.sessionCount === 0, 'the session to close', 500);
    assert.notEqual((await within(res, 2000, 'the client stream to close')).rstCode, NGHTTP2_NO_ERROR);
    await waitFor(() => upstreamCode !== 'open', 'the upstream stream to close');
    assert.equal(upstreamCode, NGHTTP2_CANCEL);
    await waitFor(() => harness.accessLog.entries.length === 1, 'the access log entry');
    assert.equal(harness.accessLog.entries[0]!.error, `downstream-rst:${NGHTTP2_CANCEL}`);
    assert.deepEqual(
      harness.metrics.finished.map((f) => f.failed),
      [true],
    );
  });

  test('a client that closes its half-open connection mid-request loses its session at once', async (t) => {
    // The real listener allows half-open TCP; the harness does not, so this test has its own.
    let upstreamCode: number | undefined | 'open';
    const upstream = await startUpstream((stream) => {
      upstreamCode = 'open';
      stream.once('close', () => (upstreamCode = stream.rstCode));
    });
    const harness = await startProxyHarness({ connTarget: null });
    const sockets = new Set<net.Socket>();
    const front = net.createServer({ allowHalfOpen: true }, (socket) => {
      sockets.add(socket);
      socket.on('error', () => {});
      harness.proxy.accept(socket, Buffer.alloc(0), { host: '127.0.0.1', port: upstream.port });
    });
    await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
    const client = connectClient(`127.0.0.1:${(front.address() as net.AddressInfo).port}`);
    t.after(async () => {
      client.destroy();
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => front.close(() => resolve()));
      await harness.close();
      await upstream.close();
    });
    const req = client.request({ ':method': 'POST', ':path': '/gone' });
    req.on('error', () => {});
    req.write('partial');
    await waitFor(() => upstreamCode === 'open', 'the stream to reach the upstream');
    assert.equal(harness.proxy.sessionCount, 1);
    client.destroy(); // FIN: the client is gone, no END_STREAM will ever come
    await waitFor(() => harness.proxy.sessionCount === 0, 'the downstream session to close', 2000);
    await waitFor(() => upstreamCode !== 'open', 'the upstream stream to close', 2000);
    assert.notEqual(upstreamCode, NGHTTP2_NO_ERROR);
    await waitFor(() => harness.accessLog.entries.length === 1, 'the access log entry');
    assert.match(String(harness.accessLog.entries[0]!.error), /^downstream-rst:/);
  });

  test('after an upstream GOAWAY new streams use a fresh session and in-flight ones finish', async (t) => {
    let first = true;
    const { client, upstream } = await setup(t, (stream) => {
      if (first) {
        first = false;
        stream.session?.close(); // graceful GOAWAY: this stream may still finish
        setTimeout(() => {
          stream.respond({ ':status': 200 });
          stream.end('old');
        }, 150);
        return;
      }
      stream.respond({ ':status': 200 });
      stream.end('new');
    });
    const inFlight = collect(client.request({ ':path': '/1' }, { endStream: true }));
    await delay(50);
    const next = await collect(client.request({ ':path': '/2' }, { endStream: true }));
    assert.equal(next.body.toString(), 'new');
    assert.equal((await inFlight).body.toString(), 'old');
    assert.equal(upstream.sessionsAccepted, 2);
  });

  test('many concurrent streams share one upstream session', async (t) => {
    const { client, upstream } = await setup(t, (stream, headers) => {
      stream.respond({ ':status': 200 });
      stream.end(String(headers[':path']));
    });
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        collect(client.request({ ':path': `/${i}` }, { endStream: true })),
      ),
    );
    assert.deepEqual(
      results.map((r) => r.body.toString()),
      Array.from({ length: 50 }, (_, i) => `/${i}`),
    );
    assert.equal(upstream.sessionsAccepted, 1);
  });

  test("a burst beyond the upstream's MAX_CONCURRENT_STREAMS is queued, not refused", async (t) => {
    const { client, upstream } = await setup(t, (stream, headers) => {
      setTimeout(() => {
        stream.respond({ ':status': 200 });
        stream.end(String(headers[':path']));
      }, 5);
    });
    upstream.server.updateSettings({ maxConcurrentStreams: 10 });
    const results = await Promise.all(
      Array.from({ length: 100 }, (_, i) =>
        collect(client.request({ ':path': `/${i}` }, { endStream: true })),
      ),
    );
    assert.deepEqual(
      results.map((r) => [r.rstCode, r.body.toString()]),
      Array.from({ length: 100 }, (_, i) => [NGHTTP2_NO_ERROR, `/${i}`]),
    );
  });

  test('idle sessions are closed on both sides', async (t) => {
    let upstreamSessionClosed = false;
    const { harness, client, upstream } = await setup(
      t,
      (stream) => {
        stream.session?.once('close', () => (upstreamSessionClosed = true));
        stream.respond({ ':status': 204 });
      },
      { idleTimeoutMs: 150 },
    );
    let clientClosed = false;
    client.once('close', () => (clientClosed = true));
    const res = await collect(client.request({ ':path': '/' }, { endStream: true }));
    assert.equal(res.headers?.[':status'], 204);
    // The proxy's own session closes a moment after the client sees its socket closed (the
    // header guard ends the socket before node's session has finished closing).
    await waitFor(
      () => clientClosed && upstreamSessionClosed && harness.proxy.sessionCount === 0,
      'idle sessions to close',
    );
    assert.equal(upstream.sessionsAccepted, 1);
  });

  test('a peer that breaks the protocol loses its connection, and the proxy keeps serving', async (t) => {
    const { harness } = await setup(t, (stream) => {
      stream.respond({ ':status': 200 });
      stream.end('ok');
    });
    let gotGoaway = false;
    const bad = net.connect(harness.port, '127.0.0.1');
    bad.on('error', () => {});
    // GOAWAY is frame type 7 at byte 3 of a frame header; the proxy's SETTINGS frame comes first.
    bad.on(
      'data',
      (d: Buffer) => (gotGoaway ||= d.includes(Buffer.from([0x07, 0x00, 0x00, 0x00, 0x00, 0x00]))),
    );
    const closed = new Promise((resolve) => bad.once('close', resolve));
    bad.write('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
    bad.write(Buffer.from([0, 0, 4, 0xff, 0, 0, 0, 0, 1, 1, 2, 3, 4])); // DATA-sized junk, wrong framing
    bad.write(Buffer.alloc(64, 0xee));
    await closed;
    assert.ok(gotGoaway, 'the proxy answered with GOAWAY before closing');
    // The session's error can be reported a moment after the socket closed.
    await waitFor(() => harness.metrics.errors.length > 0, 'the protocol error to be counted');
    assert.deepEqual(harness.metrics.errors, ['h2-protocol-error']);
    const client = connectClient(harness.address);
    t.after(() => client.destroy());
    const res = await collect(client.request({ ':path': '/' }, { endStream: true }));
    assert.equal(res.body.toString(), 'ok');
  });
});

describe('H2Proxy per-stream balancing over discovered endpoints', () => {
  const SERVICE = 'web.svc:80';

  /** A proxy that routes by :authority and resolves names through a static table. */
  async function discoveringProxy(
    t: { after(fn: () => Promise<void> | void): void },
    table: Record<string, readonly Endpoint[]>,
  ): Promise<{ harness: ProxyHarness; client: http2.ClientHttp2Session }> {
    const discovery = new ServiceDiscovery({
      resolver: new StaticResolver(table),
      failFastMs: 200,
      idleMs: 0,
      log: silentLogger,
    });
    const harness = await startProxyHarness({
      connTarget: null,
      discovery,
      route: (authority) => (authority === undefined ? null : parseAuthority(authority, 80)),
    });
    const client = connectClient(harness.address);
    t.after(async () => {
      client.destroy();
      await harness.close();
      discovery.close();
    });
    return { harness, client };
  }

  /** An upstream that answers every stream with `name` (after `delayMs`) and counts them. */
  async function namedUpstream(
    t: { after(fn: () => Promise<void> | void): void },
    name: string,
    delayMs = 0,
  ): Promise<{ upstream: Upstream; authorities: string[] }> {
    const authorities: string[] = [];
    const upstream = await startUpstream((stream, headers) => {
      authorities.push(String(headers[':authority']));
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () =>
        setTimeout(() => {
          if (stream.closed || stream.destroyed) return;
          stream.respond({ ':status': 200 });
          stream.end(`${name}:${Buffer.concat(chunks).toString()}`);
        }, delayMs),
      );
    });
    t.after(() => upstream.close());
    return { upstream, authorities };
  }

  function request(client: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders = {}, body = '') {
    const req = client.request({ ':method': 'POST', ':path': '/', ':authority': SERVICE, ...headers });
    req.end(body);
    return within(collect(req), 5000, 'a response');
  }

  test('streams on one client connection spread over both endpoints; :authority is kept', async (t) => {
    const a = await namedUpstream(t, 'a');
    const b = await namedUpstream(t, 'b');
    const { client, harness } = await discoveringProxy(t, {
      [SERVICE]: [
        staticEndpoint(`127.0.0.1:${a.upstream.port}`),
        staticEndpoint(`127.0.0.1:${b.upstream.port}`),
      ],
    });
    const results = await Promise.all(Array.from({ length: 20 }, () => request(client)));
    assert.ok(results.every((r) => Number(r.headers?.[':status']) === 200));
    const bodies = results.map((r) => r.body.toString());
    const onA = bodies.filter((x) => x === 'a:').length;
    assert.equal(onA + bodies.filter((x) => x === 'b:').length, 20);
    assert.ok(onA >= 4 && onA <= 16, `${onA} of 20 streams went to a`);
    assert.deepEqual(new Set([...a.authorities, ...b.authorities]), new Set([SERVICE]));
    assert.equal(a.upstream.sessionsAccepted, 1, 'one pooled session per endpoint');
    assert.equal(b.upstream.sessionsAccepted, 1, 'one pooled session per endpoint');
    assert.deepEqual(harness.metrics.errors, []);
  });

  test('a slow endpoint gets fewer streams', async (t) => {
    const fast = await namedUpstream(t, 'fast');
    const slow = await namedUpstream(t, 'slow', 250);
    const { client } = await discoveringProxy(t, {
      [SERVICE]: [
        staticEndpoint(`127.0.0.1:${fast.upstream.port}`),
        staticEndpoint(`127.0.0.1:${slow.upstream.port}`),
      ],
    });
    for (let wave = 0; wave < 8; wave++) {
      const results = await Promise.all(Array.from({ length: 4 }, () => request(client)));
      assert.ok(results.every((r) => Number(r.headers?.[':status']) === 200));
    }
    const onSlow = slow.authorities.length;
    assert.equal(fast.authorities.length + onSlow, 32);
    assert.ok(onSlow <= 8, `the slow endpoint got ${onSlow} of 32 streams`);
  });

  test('a service without endpoints: 503 no-endpoints, grpc-status 14 for gRPC', async (t) => {
    const { client, harness } = await discoveringProxy(t, { [SERVICE]: [] });
    const plain = await request(client);
    assert.equal(plain.headers?.[':status'], 503);
    assert.equal(plain.headers?.['trellis-proxy-error'], 'no-endpoints');
    assert.match(plain.body.toString(), /no endpoints for web\.svc:80/);
    const grpc = await request(client, { ':path': '/pkg.Svc/Call', 'content-type': 'application/grpc' });
    assert.equal(grpc.headers?.[':status'], 200);
    assert.equal(grpc.headers?.['grpc-status'], '14');
    assert.equal(grpc.headers?.['trellis-proxy-error'], 'no-endpoints');
    assert.equal(grpc.rstCode, NGHTTP2_NO_ERROR);
    await waitFor(() => harness.metrics.finished.length === 2, 'metrics');
    assert.deepEqual(harness.metrics.errors, ['no-endpoints', 'no-endpoints']);
  });

  test('a stream whose endpoint refuses the connection is retried on the other, body intact', async (t) => {
    const alive = await namedUpstream(t, 'alive');
    const { client, harness } = await discoveringProxy(t, {
      [SERVICE]: [
        staticEndpoint(`127.0.0.1:${await deadTarget()}`),
        staticEndpoint(`127.0.0.1:${alive.upstream.port}`),
      ],
    });
    for (let i = 0; i < 10; i++) {
      const res = await request(client, {}, `body-${i}`);
      assert.equal(res.headers?.[':status'], 200, `request ${i}`);
      assert.equal(res.body.toString(), `alive:body-${i}`);
    }
    assert.deepEqual(harness.metrics.errors, []);
  });

  test('a retry that finds no other live endpoint answers 502 connect-failed', async (t) => {
    const { client, harness } = await discoveringProxy(t, {
      [SERVICE]: [staticEndpoint(`127.0.0.1:${await deadTarget()}`)],
      'two.svc:80': [
        staticEndpoint(`127.0.0.1:${await deadTarget()}`),
        staticEndpoint(`127.0.0.1:${await deadTarget()}`),
      ],
    });
    const one = await request(client);
    assert.equal(one.headers?.[':status'], 502);
    assert.equal(one.headers?.['trellis-proxy-error'], 'connect-failed');
    assert.match(one.body.toString(), /ECONNREFUSED/);
    const two = await request(client, { ':authority': 'two.svc:80' });
    assert.equal(two.headers?.[':status'], 502);
    assert.deepEqual(harness.metrics.errors, ['connect-failed', 'connect-failed']);
  });

  test('each stream reports the endpoint RTT to the response headers, or its failure, exactly once', async (t) => {
    const up = await namedUpstream(t, 'u', 30);
    const dead = await deadTarget();
    const reports: { key: string; rttMs: number | undefined }[] = [];
    const logicalChecked: string[] = [];
    const discovery: H2Discovery = {
      isLogical: (target) => {
        logicalChecked.push(target.host);
        return target.host !== '127.0.0.1';
      },
      pick: (target, avoid) => {
        const port = target.host === 'up.svc' ? up.upstream.port : dead;
        const key = avoid === null ? `first:${target.host}` : `second:${target.host}`;
        return {
          address: { host: '127.0.0.1', port },
          endpoint: null,
          key,
          done: (rttMs?: number) => reports.push({ key, rttMs }),
        };
      },
    };
    const harness = await startProxyHarness({
      connTarget: null,
      discovery,
      route: (authority) => (authority === undefined ? null : parseAuthority(authority, 80)),
    });
    const client = connectClient(harness.address);
    t.after(async () => {
      client.destroy();
      await harness.close();
    });
    const ok = await request(client, { ':authority': 'up.svc' });
    assert.equal(ok.body.toString(), 'u:');
    const failed = await request(client, { ':authority': 'down.svc' });
    assert.equal(failed.headers?.[':status'], 502);
    const direct = await request(client, { ':authority': `127.0.0.1:${up.upstream.port}` });
    assert.equal(direct.body.toString(), 'u:');
    await waitFor(() => harness.metrics.finished.length === 3, 'metrics');
    assert.deepEqual(logicalChecked, ['up.svc', 'down.svc', 'down.svc', '127.0.0.1']); // the retry asks again
    assert.equal(reports.length, 3);
    const answered = reports[0]!;
    assert.equal(answered.key, 'first:up.svc');
    assert.ok(answered.rttMs !== undefined && answered.rttMs >= 25, `rtt ${answered.rttMs}`);
    assert.deepEqual(reports.slice(1), [
      { key: 'first:down.svc', rttMs: undefined },
      { key: 'second:down.svc', rttMs: undefined },
    ]);
  });
});
