// One set of HTTP/1 head limits on every path (issue 9, 1.5): a request that arrives as HTTP/2
// (the mesh's trellis-h2h1/1, and node:http2's plaintext HTTP/2 and trellis-h2/1 paths, inbound
// and outbound) is held to http1.maxHeaders, maxHeaderBytes and maxRequestLineBytes as the HTTP/1
// parser holds a plaintext request: over them, 431 (414 for the request target) with
// trellis-proxy-error: request-header-too-large, and nothing reaches the app. The accounting is
// checked against the parser itself on random heads. Also node:http2's own limits, set explicitly
// (h2-node-settings.ts): heads far over the limits, PING and SETTINGS floods.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as http2 from 'node:http2';
import net from 'node:net';
import { once } from 'node:events';
import fc from 'fast-check';
import { FrameType, Setting } from '../../src/proxy/h2/frames.ts';
import { parseRequestHead, type H1Limits } from '../../src/proxy/http/h1-parser.ts';
import { requestHeadLimitStatus } from '../../src/proxy/http/h2-head-limits.ts';
import { clientSessionOptions, serverSessionOptions } from '../../src/proxy/http/h2-node-settings.ts';
import type { Direction } from '../../src/proxy/telemetry/metrics.ts';
import { startProxyHarness } from '../fixtures/grpc-proxy-harness.ts';
import { collect, connectClient, delay } from '../fixtures/grpc-h2-peers.ts';
import { RawPeer, rawClient, rawFrames } from '../helpers/h2-raw.ts';
import { exchange, field, h2Client, startInboundWorld } from '../helpers/h2h1-inbound.ts';

const LIMITS: H1Limits = { maxRequestLineBytes: 8192, maxHeaderBytes: 65536, maxHeaders: 128 };

/** The fields of a GET with `n` extra fields x-f<i>: v<i>. */
function withFields(n: number, path = '/p'): string[] {
  const f = [':method', 'GET', ':scheme', 'http', ':authority', 'app', ':path', path];
  for (let i = 0; i < n; i++) f.push(`x-f${i}`, `v${i}`);
  return f;
}

test('the accounting is the HTTP/1 parser’s: the same answer for the head HTTP/1 would carry', () => {
  const token = fc
    .stringMatching(/^[a-z0-9-]{1,12}$/)
    .filter(
      (n) =>
        ![
          'host',
          'content-length',
          'transfer-encoding',
          'connection',
          'upgrade',
          'expect',
          'cookie',
          'te',
          'keep-alive',
        ].includes(n),
    );
  const value = fc.stringMatching(/^[!-~]([ -~]{0,40}[!-~])?$/);
  fc.assert(
    fc.property(
      fc.constantFrom('GET', 'POST', 'DELETE', 'OPTIONS'),
      // A target the request-target grammar accepts (pchar, "/" and "?"): the accounting is
      // compared, not the grammar (the parser answers 400 for a bad target first).
      fc.stringMatching(/^\/[A-Za-z0-9._~!$&'()*+,;=:@/?-]{0,60}$/),
      fc.stringMatching(/^[a-z0-9.-]{1,20}(:\d{1,5})?$/),
      fc.array(fc.tuple(token, value), { maxLength: 20 }),
      fc.array(value, { maxLength: 4 }),
      fc.record({
        maxRequestLineBytes: fc.integer({ min: 14, max: 90 }),
        maxHeaderBytes: fc.integer({ min: 2, max: 600 }),
        maxHeaders: fc.integer({ min: 1, max: 24 }),
      }),
      (method, path, authority, pairs, cookies, limits) => {
        const fields = [':method', method, ':scheme', 'http', ':authority', authority, ':path', path];
        for (const [n, v] of pairs) fields.push(n, v);
        for (const c of cookies) fields.push('cookie', c); // crumbs, as HTTP/2 may split them
        let h1 = `${method} ${path} HTTP/1.1\r\nhost: ${authority}\r\n`;
        for (const [n, v] of pairs) h1 += `${n}: ${v}\r\n`;
        if (cookies.length > 0) h1 += `cookie: ${cookies.join('; ')}\r\n`;
        const buf = Buffer.from(h1 + '\r\n', 'latin1');
        const parsed = parseRequestHead(buf, 0, buf.length, limits);
        const expected = parsed.kind === 'ok' ? 0 : parsed.kind === 'error' ? parsed.status : -1;
        assert.equal(requestHeadLimitStatus(fields, limits), expected, h1);
      },
    ),
    { numRuns: 2000 },
  );
});

test('trellis-h2h1/1 inbound: heads over the HTTP/1 limits get 431/414 and never reach the app', async () => {
  const world = await startInboundWorld({ limits: LIMITS });
  const conn = await h2Client(world.port);
  try {
    // 127 fields and Host: the 128 lines HTTP/1 allows.
    const atLimit = await exchange(conn, withFields(127));
    assert.equal(atLimit.status, 200);
    assert.equal(world.seen.length, 1);

    const cases: Array<[string, string[], number]> = [
      ['200 fields', withFields(200), 431],
      ['128 fields and Host', withFields(128), 431],
      ['a 900 KB head', [...withFields(0), 'x-big', 'b'.repeat(900_000)], 431],
      ['a head of 65 KiB', [...withFields(0), 'x-big', 'b'.repeat(65 * 1024)], 431],
      ['a 9 KB request target', withFields(0, '/' + 't'.repeat(9000)), 414],
    ];
    for (const [what, fields, status] of cases) {
      const r = await exchange(conn, fields);
      assert.equal(r.status, status, what);
      assert.equal(field(r.fields, 'trellis-proxy-error'), 'request-header-too-large', what);
    }
    assert.equal(world.seen.length, 1, 'nothing over the limits reached the app');
    assert.equal(world.metrics.errors.filter((e) => e === 'request-header-too-large').length, cases.length);
    assert.equal((await exchange(conn, withFields(3))).status, 200, 'the connection goes on');
  } finally {
    conn.destroy(null);
    await world.close();
  }
});

/** A node:http2 upstream that accepts big heads and answers 200; what it saw. */
async function bigHeadUpstream(): Promise<{ port: number; seen: number; close(): void }> {
  const server = http2.createServer({ maxHeaderListPairs: 4096, settings: { maxHeaderListSize: 4 << 20 } });
  const sessions = new Set<http2.ServerHttp2Session>();
  const state = {
    port: 0,
    seen: 0,
    close(): void {
      for (const s of sessions) s.destroy();
      server.close();
    },
  };
  server.on('session', (s) => {
    sessions.add(s);
    s.on('error', () => {});
  });
  server.on('stream', (stream) => {
    state.seen++;
    stream.on('error', () => {});
    stream.respond({ ':status': 200 });
    stream.end('ok');
  });
  await once(server.listen(0, '127.0.0.1'), 'listening');
  state.port = (server.address() as net.AddressInfo).port;
  return state;
}

/** node:http2 headers of a GET with `n` extra fields. */
function nodeHeaders(n: number, path = '/p'): http2.OutgoingHttpHeaders {
  const h: http2.OutgoingHttpHeaders = { ':path': path };
  for (let i = 0; i < n; i++) h[`x-f${i}`] = `v${i}`;
  return h;
}

/** node:http2 headers of a GET with `n` fields of `size` bytes each (little for HPACK to squeeze). */
function bigHead(n: number, size: number): http2.OutgoingHttpHeaders {
  const h: http2.OutgoingHttpHeaders = { ':path': '/big' };
  let x = 1;
  for (let i = 0; i < n; i++) {
    let v = '';
    for (let k = 0; k < size; k++) {
      x = (x * 1103515245 + 12345) & 0x7fffffff;
      v += String.fromCharCode(0x41 + (x % 26));
    }
    h[`x-big${i}`] = v;
  }
  return h;
}

for (const direction of ['inbound', 'outbound'] as Direction[]) {
  test(`node:http2 ${direction} path: heads over the HTTP/1 limits get 431/414, far over them a reset`, async () => {
    const upstream = await bigHeadUpstream();
    const harness = await startProxyHarness({
      direction,
      connTarget: { host: '127.0.0.1', port: upstream.port },
      headLimits: LIMITS,
    });
    const client = http2.connect(`http://${harness.address}`, { maxSendHeaderBlockLength: 8 << 20 });
    client.on('error', () => {});
    try {
      const ok = await collect(client.request(nodeHeaders(127)));
      assert.equal(ok.headers?.[':status'], 200);
      assert.equal(upstream.seen, 1);
      const cases: Array<[string, http2.OutgoingHttpHeaders, number]> = [
        ['200 fields', nodeHeaders(200), 431],
        ['a 150 KB head', bigHead(6, 25_000), 431],
        ['one 70 KB field', { ...nodeHeaders(0), 'x-big': 'b'.repeat(70_000) }, 431],
        ['a 9 KB request target', nodeHeaders(0, '/' + 't'.repeat(9000)), 414],
      ];
      for (const [what, headers, status] of cases) {
        const r = await collect(client.request(headers));
        assert.equal(r.headers?.[':status'], status, what);
        assert.equal(r.headers?.['trellis-proxy-error'], 'request-header-too-large', what);
      }
      // gRPC learns it in its own terms, with the same reason.
      const grpc = await collect(
        client.request({ ...nodeHeaders(200), ':method': 'POST', 'content-type': 'application/grpc' }),
      );
      assert.equal(grpc.headers?.[':status'], 200);
      assert.equal(grpc.headers?.['trellis-proxy-error'], 'request-header-too-large');
      assert.notEqual(grpc.headers?.['grpc-status'], '0');
      // A 900 KB head needs more than the 8 CONTINUATION frames nghttp2 allows a block: node ends
      // the whole session (a connection error) before the proxy sees the request.
      const huge = await collect(client.request(bigHead(30, 30_000)));
      assert.equal(huge.headers, undefined);
      assert.equal(upstream.seen, 1, 'nothing over the limits was forwarded');
      const again = http2.connect(`http://${harness.address}`);
      again.on('error', () => {});
      assert.equal((await collect(again.request(nodeHeaders(3)))).headers?.[':status'], 200);
      again.destroy();
      assert.equal(
        harness.metrics.errors.filter((e) => e === 'request-header-too-large').length,
        cases.length + 1,
      );
    } finally {
      client.destroy();
      await harness.close();
      upstream.close();
    }
  });
}

test('node:http2 limits are set explicitly, from the HTTP/1 limits', () => {
  const server = serverSessionOptions(LIMITS);
  for (const k of [
    'maxSessionMemory',
    'maxSettings',
    'maxOutstandingPings',
    'maxOutstandingSettings',
    'maxSessionInvalidFrames',
    'maxSessionRejectedStreams',
    'streamResetBurst',
    'streamResetRate',
    'maxHeaderListPairs',
  ] as const)
    assert.equal(typeof (server as Record<string, unknown>)[k], 'number', k);
  assert.equal(server.settings?.maxHeaderListSize, 1 << 20);
  assert.ok(server.maxHeaderListPairs! > LIMITS.maxHeaders + 4, 'room to answer 431');
  const client = clientSessionOptions(LIMITS);
  assert.equal(client.maxHeaderListPairs, LIMITS.maxHeaders + 8);
  assert.ok(client.settings!.maxHeaderListSize! >= LIMITS.maxHeaderBytes + LIMITS.maxRequestLineBytes);
});

test('node:http2 path: a peer that floods PINGs or SETTINGS and never reads loses its session', async () => {
  const upstream = await bigHeadUpstream();
  const harness = await startProxyHarness({ connTarget: { host: '127.0.0.1', port: upstream.port } });
  const good = connectClient(harness.address);
  try {
    for (const type of [FrameType.PING, FrameType.SETTINGS]) {
      const peer = await RawPeer.connect(harness.port);
      peer.socket.pause(); // never reads the answers
      await peer.write(rawClient(() => {}, [[Setting.INITIAL_WINDOW_SIZE, 65_535]]));
      const burst = rawFrames((w) => {
        for (let i = 0; i < 2000; i++)
          w.frame(type, 0, 0, type === FrameType.PING ? Buffer.alloc(8, i) : null);
      });
      const deadline = Date.now() + 15_000;
      for (let i = 0; i < 2000 && !peer.closed && Date.now() < deadline; i++) await peer.write(burst, 50);
      const until = Date.now() + 3000;
      while (!peer.closed && Date.now() < until) await delay(10);
      assert.ok(peer.closed, `the ${type === FrameType.PING ? 'PING' : 'SETTINGS'} flooder was cut off`);
      peer.close();
      const r = await collect(good.request({ ':path': '/still' }));
      assert.equal(r.headers?.[':status'], 200, 'a well-behaved client is served');
    }
  } finally {
    good.destroy();
    await harness.close();
    upstream.close();
  }
});
