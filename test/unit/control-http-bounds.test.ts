// What an outsider can do to the control plane's HTTP API (src/control/server.ts,
// src/control/http-bounds.ts) with real sockets on loopback: a client that goes away in the middle
// of a body (to the open trace intake, or an operator's POST) never takes the process down; an
// export without the trace token is refused before its body is read; connections beyond the bound
// are closed at once and counted; a client that never finishes its head or its body is cut off.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { traceCollectorComponent } from '../../src/control/traces/component.ts';
import { loadOrCreateTraceToken } from '../../src/control/traces/token.ts';
import { DEFAULT_CONTROL_HTTP_LIMITS, type ControlHttpLimits } from '../../src/control/http-bounds.ts';
import { silentLogger } from '../../src/core/log.ts';
import { startStateControlPlane } from '../helpers/state-control-plane.ts';

const OPERATOR_TOKEN = 'k3Z0m1qO2xQv9Rr8Tt7Uu6Vv5Ww4Xx3Yy2Zz1Aa0Bb';

async function startPlane(t: { after(fn: () => unknown): void }, httpLimits?: Partial<ControlHttpLimits>) {
  let token = '';
  const { plane, httpPort } = await startStateControlPlane(t, async (root) => {
    token = await loadOrCreateTraceToken(root, () => undefined);
    return {
      components: [traceCollectorComponent({ log: silentLogger, token })],
      operatorToken: OPERATOR_TOKEN,
      ...(httpLimits === undefined ? {} : { httpLimits }),
    };
  });
  return { plane, port: httpPort, token };
}

function open(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => resolve(socket));
    socket.once('error', reject);
  });
}

/** What the server sends until it closes the connection, and how long that took (ms). */
function untilClosed(socket: Socket): Promise<{ text: string; ms: number }> {
  const start = Date.now();
  let text = '';
  socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
  socket.on('error', () => {});
  return new Promise((resolve) => socket.once('close', () => resolve({ text, ms: Date.now() - start })));
}

async function metric(port: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(name + ' ') || l.startsWith(name + '{'));
  return line === undefined ? NaN : Number(line.slice(line.lastIndexOf(' ') + 1));
}

test('a client that goes away in the middle of a body does not take the control plane down', async (t) => {
  const rejections: unknown[] = [];
  const onRejection = (reason: unknown): void => void rejections.push(reason);
  process.on('unhandledRejection', onRejection);
  t.after(() => process.off('unhandledRejection', onRejection));
  const { port, token } = await startPlane(t);
  const heads = [
    // the open trace intake, with its token (read after the head) and without
    `POST /v1/traces HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/x-protobuf\r\nContent-Length: 100000\r\n\r\n`,
    `POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: 100000\r\n\r\n`,
    // an operator's change
    `POST /api/identity/rotate HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${OPERATOR_TOKEN}\r\nContent-Length: 100000\r\n\r\n`,
  ];
  for (const head of heads) {
    const socket = await open(port);
    socket.on('error', () => {});
    socket.write(head + 'x'.repeat(5000));
    await new Promise((resolve) => setTimeout(resolve, 100));
    socket.destroy();
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const health = await fetch(`http://127.0.0.1:${port}/healthz`);
  assert.equal(health.status, 200);
  assert.deepEqual(rejections, []);
});

test('an export without the trace token is refused before its body is read', async (t) => {
  const { port } = await startPlane(t);
  const socket = await open(port);
  const closed = untilClosed(socket);
  // Announces 1 MiB and sends none of it: the answer must not wait for the body.
  socket.write(
    'POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: 1048576\r\n\r\n',
  );
  const timer = setTimeout(() => socket.destroy(), 3000);
  const { text } = await closed;
  clearTimeout(timer);
  assert.match(text, /^HTTP\/1\.1 401 /);
  assert.equal(await metric(port, 'trellis_control_trace_unauthenticated_total{reason="missing"}'), 1);
});

test('connections beyond the bound are closed at once and counted', async (t) => {
  assert.ok(
    DEFAULT_CONTROL_HTTP_LIMITS.maxConnections >= 64 && DEFAULT_CONTROL_HTTP_LIMITS.maxConnections <= 4096,
  );
  const { port } = await startPlane(t, { maxConnections: 8 });
  const held: Socket[] = [];
  for (let i = 0; i < 8; i++) held.push(await open(port));
  for (const s of held) s.on('error', () => {});
  const extra = await open(port);
  const { text, ms } = await untilClosed(extra);
  assert.equal(text, '');
  assert.ok(ms < 2000, `closed after ${ms} ms`);
  for (const s of held) s.destroy();
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(await metric(port, 'trellis_control_http_connections_dropped_total'), 1);
});

test('a client that never finishes its head, or its body, or sends nothing, is cut off', async (t) => {
  assert.ok(DEFAULT_CONTROL_HTTP_LIMITS.headersTimeoutMs <= 15_000);
  assert.ok(DEFAULT_CONTROL_HTTP_LIMITS.requestTimeoutMs <= 60_000);
  const { port, token } = await startPlane(t, {
    headersTimeoutMs: 600,
    requestTimeoutMs: 1200,
    checkIntervalMs: 200,
  });
  const silent = await open(port);
  const head = await open(port);
  const body = await open(port);
  const silence = untilClosed(silent);
  const heads = untilClosed(head);
  const bodies = untilClosed(body);
  head.write('GET /healthz HTTP/1.1\r\nHost: x\r\n');
  body.write(
    `POST /v1/traces HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/x-protobuf\r\nContent-Length: 1000\r\n\r\n`,
  );
  // A byte now and then, as slowloris does, for at most 10 s.
  let ticks = 0;
  const drip = setInterval(() => {
    if (++ticks > 100) return clearInterval(drip);
    if (!head.destroyed) head.write('X-Slow: y\r\n');
    if (!body.destroyed) body.write('x');
  }, 100);
  t.after(() => clearInterval(drip));
  const [s, h, b] = await Promise.all([silence, heads, bodies]);
  clearInterval(drip);
  assert.ok(s.ms < 3000, `a silent connection closed after ${s.ms} ms`);
  assert.ok(h.ms < 3000, `head cut off after ${h.ms} ms`);
  assert.ok(b.ms < 4000, `body cut off after ${b.ms} ms`);
  assert.equal((await fetch(`http://127.0.0.1:${port}/healthz`)).status, 200);
});

test('a body over the bound is answered 413 and the connection closed', async (t) => {
  const { port } = await startPlane(t, { maxBodyBytes: 64 * 1024 });
  const socket = await open(port);
  const closed = untilClosed(socket);
  socket.write(
    `POST /api/identity/rotate HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${OPERATOR_TOKEN}\r\nContent-Length: 1048576\r\n\r\n`,
  );
  socket.write('x'.repeat(128 * 1024));
  const timer = setTimeout(() => socket.destroy(), 5000);
  const { text } = await closed;
  clearTimeout(timer);
  assert.match(text, /^HTTP\/1\.1 413 /);
  assert.match(text, /request body over 65536 bytes/);
});
