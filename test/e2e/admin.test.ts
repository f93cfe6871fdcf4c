// End-to-end tests of the admin listener (src/proxy/admin/server.ts) on 127.0.0.1:0 and [::1]:0:
// every endpoint, wrong methods, unknown paths, bad input, failing handlers, and /shutdown from
// loopback; plus isLoopbackAddress, example-based and property-based.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { connect } from 'node:net';
import fc from 'fast-check';
import { TrellisError } from '../../src/core/errors.ts';
import { createLogger } from '../../src/core/log.ts';
import {
  ADMIN_MAX_PER_PEER,
  isLoopbackAddress,
  startAdmin,
  type AdminOptions,
} from '../../src/proxy/admin/server.ts';
import { ProxyMetrics } from '../../src/proxy/telemetry/metrics.ts';
import { TapHub } from '../../src/proxy/telemetry/tap-hub.ts';

const log = createLogger({ level: 'off' });
const TOKEN = 'admin-test-token';
const AUTH = { authorization: `Bearer ${TOKEN}` };

async function start(t: { after(fn: () => Promise<void>): void }, overrides: Partial<AdminOptions> = {}) {
  const state = { ready: false, shutdowns: 0 };
  const admin = await startAdmin({
    listen: { host: '127.0.0.1', port: 0 },
    metrics: new ProxyMetrics(),
    config: () => ({ adminListen: '127.0.0.1:0', opaquePorts: [25] }),
    isReady: () => state.ready,
    onShutdown: () => state.shutdowns++,
    shutdownToken: TOKEN,
    log,
    ...overrides,
  });
  t.after(() => admin.close());
  const host = admin.address.host.includes(':') ? `[${admin.address.host}]` : admin.address.host;
  const base = `http://${host}:${admin.address.port}`;
  return { admin, state, base };
}

/** Sends raw bytes and returns everything the server answers before it closes (bounded in time). */
function rawExchange(port: number, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let answer = '';
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(answer);
    }, 3000);
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => (answer += d));
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(answer);
    });
    socket.write(bytes);
  });
}

test('GET endpoints: /metrics, /live, /ready, /config', async (t) => {
  const { state, base } = await start(t);

  const metrics = await fetch(`${base}/metrics`);
  assert.equal(metrics.status, 200);
  assert.equal(metrics.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
  assert.match(await metrics.text(), /^# TYPE trellis_request_total counter$/m);

  const live = await fetch(`${base}/live`);
  assert.equal(live.status, 200);
  assert.equal(await live.text(), 'live\n');

  const notReady = await fetch(`${base}/ready`);
  assert.equal(notReady.status, 503);
  await notReady.text();
  state.ready = true;
  const ready = await fetch(`${base}/ready?verbose=1`);
  assert.equal(ready.status, 200);
  assert.equal(await ready.text(), 'ready\n');

  const config = await fetch(`${base}/config`);
  assert.equal(config.status, 200);
  assert.equal(config.headers.get('content-type'), 'application/json');
  assert.deepEqual(await config.json(), { adminListen: '127.0.0.1:0', opaquePorts: [25] });

  const head = await fetch(`${base}/live`, { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(await head.text(), '');
});

test('unknown paths are 404; wrong methods are 405 with Allow', async (t) => {
  const { state, base } = await start(t);
  const missing = await fetch(`${base}/nope`);
  assert.equal(missing.status, 404);
  await missing.text();

  const post = await fetch(`${base}/metrics`, { method: 'POST', body: 'x' });
  assert.equal(post.status, 405);
  assert.equal(post.headers.get('allow'), 'GET, HEAD');
  await post.text();

  const get = await fetch(`${base}/shutdown`);
  assert.equal(get.status, 405);
  assert.equal(get.headers.get('allow'), 'POST');
  await get.text();
  assert.equal(state.shutdowns, 0);
});

test('POST /shutdown from loopback with the token answers 202 and calls onShutdown once', async (t) => {
  const { state, base } = await start(t);
  const first = await fetch(`${base}/shutdown`, { method: 'POST', headers: AUTH });
  assert.equal(first.status, 202);
  await first.text();
  const second = await fetch(`${base}/shutdown`, { method: 'POST', body: 'ignored body', headers: AUTH });
  assert.equal(second.status, 202);
  await second.text();
  // onShutdown runs once the response has been sent; give the event loop a bounded moment.
  for (let i = 0; i < 50 && state.shutdowns === 0; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(state.shutdowns, 1);
});

test('POST /shutdown over IPv6 loopback is allowed too', async (t) => {
  let started;
  try {
    started = await start(t, { listen: { host: '::1', port: 0 } });
  } catch (err) {
    t.skip(`no IPv6 loopback: ${(err as Error).message}`);
    return;
  }
  const res = await fetch(`${started.base}/shutdown`, { method: 'POST', headers: AUTH });
  assert.equal(res.status, 202);
  await res.text();
  for (let i = 0; i < 50 && started.state.shutdowns === 0; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(started.state.shutdowns, 1);
});

// Regression (issue 9): any local proxy that relays requests is a loopback peer, so loopback alone
// let a request relayed through a workload's inbound listener shut another proxy down.
test('POST /shutdown from loopback without the right token is refused; with no token configured it is disabled', async (t) => {
  const { state, base } = await start(t);
  for (const headers of [
    {},
    { authorization: 'Bearer wrong' },
    { authorization: TOKEN },
    { authorization: 'Basic x' },
  ]) {
    const res = await fetch(`${base}/shutdown`, { method: 'POST', headers });
    assert.equal(res.status, 401, JSON.stringify(headers));
    assert.equal(res.headers.get('www-authenticate'), 'Bearer');
    await res.text();
  }
  const disabled = await start(t, { shutdownToken: null });
  const res = await fetch(`${disabled.base}/shutdown`, { method: 'POST', headers: AUTH });
  assert.equal(res.status, 403);
  assert.match(await res.text(), /--admin-token-file/);
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(state.shutdowns, 0);
  assert.equal(disabled.state.shutdowns, 0);
});

test('failing handlers answer 500 and bad input 400; the server keeps serving', async (t) => {
  const { admin, base } = await start(t, {
    metrics: {
      render() {
        throw new Error('render failed');
      },
    },
    config: () => ({ big: 1n }), // JSON.stringify throws on BigInt
    isReady: () => {
      throw new Error('probe failed');
    },
  });
  for (const path of ['/metrics', '/config', '/ready']) {
    const res = await fetch(`${base}${path}`);
    assert.equal(res.status, 500, path);
    await res.text();
  }
  const garbage = await rawExchange(admin.address.port, 'NOT HTTP AT ALL\r\n\r\n');
  assert.match(garbage, /^HTTP\/1\.1 400 /);
  const live = await fetch(`${base}/live`);
  assert.equal(live.status, 200);
  await live.text();
});

// A peer outside loopback: a child process in its own network namespace (unshare -n, root only)
// puts 198.18.0.1 and 198.18.0.5 on its lo, serves admin on the first and posts from the second.
const NON_LOOPBACK_SCRIPT = `
import { request } from 'node:http';
import { startAdmin } from ${JSON.stringify(new URL('../../src/proxy/admin/server.ts', import.meta.url).href)};
import { createLogger } from ${JSON.stringify(new URL('../../src/core/log.ts', import.meta.url).href)};
let shutdowns = 0;
const admin = await startAdmin({ listen: { host: '198.18.0.1', port: 0 }, metrics: { render: () => '' },
  config: () => ({}), isReady: () => true, onShutdown: () => shutdowns++, shutdownToken: 't',
  log: createLogger({ level: 'off' }) });
const status = await new Promise((resolve, reject) => {
  const req = request({ host: '198.18.0.1', port: admin.address.port, localAddress: '198.18.0.5',
    method: 'POST', path: '/shutdown', headers: { authorization: 'Bearer t' } }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode)); });
  req.on('error', reject);
  req.end();
});
await new Promise((r) => setTimeout(r, 50));
await admin.close();
console.log(JSON.stringify({ status, shutdowns }));
`;

test('POST /shutdown from a non-loopback peer is refused with 403', (t) => {
  const r = spawnSync(
    'unshare',
    [
      '-n',
      'sh',
      '-c',
      'ip link set lo up && ip addr add 198.18.0.1/32 dev lo && ip addr add 198.18.0.5/32 dev lo && ' +
        'exec "$NODE" --input-type=module -e "$SCRIPT"',
    ],
    {
      env: { ...process.env, NODE: process.execPath, SCRIPT: NON_LOOPBACK_SCRIPT },
      encoding: 'utf8',
      timeout: 20_000,
    },
  );
  if (r.error !== undefined || (r.status !== 0 && /unshare|Operation not permitted/.test(r.stderr))) {
    t.skip(`cannot create a network namespace: ${r.error?.message ?? r.stderr.trim()}`);
    return;
  }
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout.trim()), { status: 403, shutdowns: 0 });
});

test('a port already in use is a TrellisError', async (t) => {
  const { admin } = await start(t);
  await assert.rejects(
    startAdmin({
      listen: { host: '127.0.0.1', port: admin.address.port },
      metrics: { render: () => '' },
      config: () => ({}),
      isReady: () => true,
      onShutdown: () => {},
      log,
    }),
    (err: unknown) => err instanceof TrellisError && err.code === 'TRELLIS_ERR_ADMIN_LISTEN',
  );
});

test('isLoopbackAddress: examples', () => {
  for (const a of [
    '127.0.0.1',
    '127.255.255.254',
    '::1',
    '0:0:0:0:0:0:0:1',
    '::ffff:127.0.0.1',
    '::ffff:7f00:1',
  ]) {
    assert.equal(isLoopbackAddress(a), true, a);
  }
  for (const a of [
    '198.18.0.5',
    '::ffff:198.18.0.5',
    '0.0.0.0',
    '::',
    '128.0.0.1',
    '126.255.255.255',
    '::2',
    'fe80::1',
    'localhost',
    '127.1',
    '',
    undefined,
  ]) {
    assert.equal(isLoopbackAddress(a), false, String(a));
  }
});

/** Reference oracle: the eight 16-bit groups of an IPv6 address (with an optional dotted tail). */
function expandIPv6(addr: string): number[] {
  let text = addr.toLowerCase();
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (dotted) {
    const [a, b, c, d] = dotted.slice(1).map(Number) as [number, number, number, number];
    text = text.slice(0, dotted.index) + ((a << 8) | b).toString(16) + ':' + ((c << 8) | d).toString(16);
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const parse = (s: string | undefined) => (s ? s.split(':').map((x) => parseInt(x, 16)) : []);
  const left = parse(head);
  const right = parse(tail);
  return [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right];
}

test('isLoopbackAddress: properties', () => {
  const octet = fc.integer({ min: 0, max: 255 });
  fc.assert(
    fc.property(octet, octet, octet, (b, c, d) => {
      assert.equal(isLoopbackAddress(`127.${b}.${c}.${d}`), true);
      assert.equal(isLoopbackAddress(`::ffff:127.${b}.${c}.${d}`), true);
    }),
  );
  fc.assert(
    fc.property(
      octet.filter((a) => a !== 127),
      octet,
      octet,
      octet,
      (a, b, c, d) => {
        assert.equal(isLoopbackAddress(`${a}.${b}.${c}.${d}`), false);
        assert.equal(isLoopbackAddress(`::ffff:${a}.${b}.${c}.${d}`), false);
      },
    ),
  );
  fc.assert(
    fc.property(fc.ipV6(), (a) => {
      const g = expandIPv6(a);
      const loop = g.slice(0, 7).every((x) => x === 0)
        ? g[7] === 1
        : g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff && g[6]! >> 8 === 127;
      assert.equal(isLoopbackAddress(a), loop, a);
    }),
    { numRuns: 500 },
  );
  const word = fc.integer({ min: 0, max: 0xffff });
  fc.assert(
    fc.property(word, word, (hi, lo) => {
      const mapped = `::ffff:${hi.toString(16)}:${lo.toString(16)}`;
      assert.equal(isLoopbackAddress(mapped), hi >> 8 === 127, mapped);
    }),
  );
  fc.assert(
    fc.property(fc.string(), (s) => {
      assert.equal(typeof isLoopbackAddress(s), 'boolean');
    }),
  );
});

/** Opens a connection and resolves once it is established. */
function open(port: number): Promise<import('node:net').Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => resolve(s));
    s.on('error', reject);
  });
}

test('admin connections are bounded: beyond 64 per peer the oldest is shed and counted; probes still answer', async (t) => {
  const counted: string[] = [];
  const { admin, base } = await start(t, {
    onConnectionLimit: (limit, action) => counted.push(`${limit}:${action}`),
  });
  const sockets: import('node:net').Socket[] = [];
  t.after(() => sockets.forEach((s) => s.destroy()));
  const closed: number[] = [];
  for (let i = 0; i < ADMIN_MAX_PER_PEER + 10; i++) {
    const s = await open(admin.address.port);
    s.on('error', () => {});
    s.once('close', () => closed.push(i));
    sockets.push(s);
  }
  const res = await fetch(`${base}/live`);
  assert.equal(res.status, 200);
  await new Promise((r) => setTimeout(r, 100));
  // 74 idle + 1 probe from one address: the 11 oldest idle ones made room, in order.
  assert.deepEqual(
    closed.sort((a, b) => a - b),
    Array.from({ length: 11 }, (_, i) => i),
  );
  assert.equal(counted.length, 11);
  assert.ok(
    counted.every((c) => c === 'peer:shed'),
    counted.join(','),
  );
});

test('an admin request must arrive within the request timeout however slowly it trickles', async (t) => {
  const { admin } = await start(t, { requestTimeoutMs: 400 });
  const s = await open(admin.address.port);
  s.on('error', () => {});
  const started = Date.now();
  const closedAt = new Promise<number>((resolve) => s.once('close', () => resolve(Date.now() - started)));
  // One byte of the head every 100 ms: each byte would reset an idle timer, never the deadline.
  const head = 'GET /live HTTP/1.1\r\nHost: x\r\nX-Pad: ' + 'a'.repeat(100);
  let i = 0;
  const drip = setInterval(() => {
    if (i < head.length && !s.destroyed) s.write(head[i++]!);
  }, 100);
  t.after(() => clearInterval(drip));
  const ms = await closedAt;
  clearInterval(drip);
  assert.ok(ms >= 350 && ms < 2000, `closed after ${ms} ms`);
});

test('admin request bodies over 64 KiB are refused with 413 before they are read', async (t) => {
  const { admin } = await start(t);
  const answer = await rawExchange(
    admin.address.port,
    'POST /shutdown HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n',
  );
  assert.match(answer, /^HTTP\/1\.1 413 /);
});

test('GET /tap from loopback needs a Host that names this host: a DNS-rebound web page is refused', async (t) => {
  const tap = new TapHub({
    maxTaps: 8,
    maxBufferedBytes: 64 * 1024,
    ownIdentity: () => null,
    attach: () => {},
    log,
  });
  t.after(() => tap.close());
  const { admin } = await start(t, { tap });
  const port = admin.address.port;
  // A page at attacker.example whose name now resolves to 127.0.0.1: the peer is loopback (the browser).
  for (const host of [`attacker.example:${port}`, 'attacker.example', `localhost.attacker.example:${port}`]) {
    const refused = await rawExchange(
      port,
      `GET /tap HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`,
    );
    assert.match(refused, /^HTTP\/1\.1 403 /, host);
    assert.doesNotMatch(refused, /"started"/, host);
  }
  assert.match(tap.metrics(), /trellis_tap_refused_total\{reason="foreign-host"\} 3/);
  assert.doesNotMatch(tap.metrics(), /trellis_tap_refused_total\{reason="not-loopback"\} [1-9]/);
  for (const host of [`127.0.0.1:${port}`, `localhost:${port}`]) {
    const served = await rawExchange(port, `GET /tap HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
    assert.match(served, /^HTTP\/1\.1 200 [\s\S]*"started"/, host);
  }
});
