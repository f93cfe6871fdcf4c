// Opaque TCP through the real proxy process: half-close carried both ways (the client's FIN
// reaches the upstream, which still answers, and the answer reaches the client whole), exact byte
// counts in the payload and in /metrics, for a destination listener declared opaque and for an
// app port listed in opaquePorts; and a refused upstream closes the client and counts
// connect-failed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import http from 'node:http';
import { once } from 'node:events';
import { startProxyProcess, type ProxyProcess } from '../helpers/proxy-process.ts';

const TEST_TIMEOUT = 30_000;

/** A TCP server that reads until the client's FIN, then writes `reply(received)` and closes. */
async function halfCloseServer(t: { after(fn: () => unknown): void }, reply: (received: Buffer) => Buffer) {
  const seen: { received: Buffer | null; sawEnd: boolean } = { received: null, sawEnd: false };
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    const chunks: Buffer[] = [];
    s.on('error', () => {});
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('end', () => {
      seen.sawEnd = true;
      seen.received = Buffer.concat(chunks);
      // Written after the peer's FIN: only a proxy that keeps the other direction open passes it on.
      s.end(reply(seen.received));
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => server.close());
  return { port: (server.address() as net.AddressInfo).port, seen };
}

interface ClientResult {
  received: Buffer;
  /** The client saw an orderly FIN (not only a reset). */
  sawEnd: boolean;
}

/** Connects, sends `payload`, shuts its write side, and reads until the connection closes. */
function halfCloseClient(
  port: number,
  payload: Buffer,
  timeoutMs = 10_000,
  readDelayMs = 0,
): Promise<ClientResult> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    const chunks: Buffer[] = [];
    let sawEnd = false;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no close within ${timeoutMs} ms; got ${Buffer.concat(chunks).length} bytes`));
    }, timeoutMs);
    socket.on('connect', () => {
      socket.end(payload);
      // A slow reader: the reply backs up in the proxy, which must still deliver all of it.
      if (readDelayMs > 0) {
        socket.pause();
        setTimeout(() => socket.resume(), readDelayMs);
      }
    });
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('end', () => (sawEnd = true));
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ received: Buffer.concat(chunks), sawEnd });
    });
  });
}

/** Waits (bounded) until a metric reaches a value; returns the last value read. */
async function waitForMetric(
  proxy: ProxyProcess,
  name: string,
  labels: Record<string, string>,
  want: number,
): Promise<number> {
  let value = await proxy.metric(name, labels);
  for (let i = 0; i < 50 && value !== want; i++) {
    await new Promise((r) => setTimeout(r, 50));
    value = await proxy.metric(name, labels);
  }
  return value;
}

function binaryPayload(size: number): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = (i * 31 + 7) & 0xff;
  b[0] = 0x00; // not HTTP, not TLS: nothing to detect even if detection ran
  return b;
}

async function checkHalfClose(
  proxy: ProxyProcess,
  port: number,
  direction: string,
  seen: { received: Buffer | null },
) {
  const payload = binaryPayload(100_000);
  const result = await halfCloseClient(port, payload, 10_000, 300);
  assert.ok(seen.received !== null, 'the upstream saw the FIN');
  assert.equal(seen.received.length, payload.length);
  assert.ok(seen.received.equals(payload), 'the upstream got the payload unchanged');
  const reply = replyFor(payload);
  assert.equal(result.received.length, reply.length, 'the reply, written after the FIN, arrived whole');
  assert.ok(result.received.equals(reply));
  assert.ok(result.sawEnd, 'the client saw an orderly end, not a reset');
  assert.equal(await waitForMetric(proxy, 'trellis_tcp_close_total', { direction }, 1), 1);
  assert.equal(await proxy.metric('trellis_tcp_open_total', { direction }), 1);
  assert.equal(await proxy.metric('trellis_tcp_open_connections', { direction }), 0);
  assert.equal(await proxy.metric('trellis_tcp_read_bytes_total', { direction }), payload.length);
  assert.equal(await proxy.metric('trellis_tcp_write_bytes_total', { direction }), reply.length);
}

/** A reply larger than socket buffers, so it cannot all be written before the upstream's FIN. */
function replyFor(received: Buffer): Buffer {
  const header = Buffer.from(`got ${received.length} bytes\n`);
  return Buffer.concat([header, Buffer.alloc(2 * 1024 * 1024, 0x5a), header]);
}

test(
  'opaque destination listener: half-close both ways, exact bytes and metrics',
  { timeout: TEST_TIMEOUT },
  async (t) => {
    const upstream = await halfCloseServer(t, replyFor);
    const proxy = await startProxyProcess({
      args: ['--destination', `127.0.0.1:0=127.0.0.1:${upstream.port}/opaque`],
    });
    t.after(() => proxy.stop());
    await checkHalfClose(proxy, proxy.port('destination-0'), 'outbound', upstream.seen);
    assert.equal(
      await proxy.metric('trellis_detect_total', {
        direction: 'outbound',
        protocol: 'opaque',
        outcome: 'configured',
      }),
      1,
    );
  },
);

test(
  'opaquePorts from the config file: inbound to the app skips detection',
  { timeout: TEST_TIMEOUT },
  async (t) => {
    const upstream = await halfCloseServer(t, replyFor);
    const proxy = await startProxyProcess({
      configYaml: `appPort: ${upstream.port}\nopaquePorts: [${upstream.port}]\n`,
    });
    t.after(() => proxy.stop());
    await checkHalfClose(proxy, proxy.port('inbound'), 'inbound', upstream.seen);
    assert.equal(
      await proxy.metric('trellis_detect_total', {
        direction: 'inbound',
        protocol: 'opaque',
        outcome: 'opaque-port',
      }),
      1,
    );
  },
);

test(
  'a client that only sends a little text, then FIN, still gets the upstream reply',
  { timeout: TEST_TIMEOUT },
  async (t) => {
    // "hello" could be the start of an HTTP method: detection cannot decide before the FIN.
    const upstream = await halfCloseServer(t, (r) => Buffer.from(`echo:${r.toString()}`));
    const proxy = await startProxyProcess({
      args: ['--destination', `127.0.0.1:0=127.0.0.1:${upstream.port}`],
    });
    t.after(() => proxy.stop());
    const result = await halfCloseClient(proxy.port('destination-0'), Buffer.from('hello'));
    assert.equal(result.received.toString(), 'echo:hello');
    assert.ok(result.sawEnd);
    assert.equal(
      await proxy.metric('trellis_detect_total', {
        direction: 'outbound',
        protocol: 'opaque',
        outcome: 'closed',
      }),
      1,
    );
  },
);

test(
  'connect refused: the client connection is closed and connect-failed counted',
  { timeout: TEST_TIMEOUT },
  async (t) => {
    const probe = net.createServer();
    probe.listen(0, '127.0.0.1');
    await once(probe, 'listening');
    const deadPort = (probe.address() as net.AddressInfo).port;
    await new Promise((r) => probe.close(r));

    const proxy = await startProxyProcess({
      args: ['--destination', `127.0.0.1:0=127.0.0.1:${deadPort}/opaque`],
    });
    t.after(() => proxy.stop());
    const labels = { direction: 'outbound', reason: 'connect-failed' };
    assert.equal(await proxy.metric('trellis_proxy_errors_total', labels), 0);
    for (let i = 1; i <= 2; i++) {
      const result = await halfCloseClient(proxy.port('destination-0'), Buffer.from([1, 2, 3]), 5000);
      assert.equal(result.received.length, 0);
      assert.equal(await waitForMetric(proxy, 'trellis_proxy_errors_total', labels, i), i);
    }
  },
);

// ---- CONNECT tunnels through the outbound (HTTP proxy) listener ----------------------------

interface Tunnel {
  socket: net.Socket;
  /** The proxy's answer to CONNECT: its status line and headers. */
  head: string;
  /** Bytes after the answer's head. */
  rest: Buffer;
}

/** Sends CONNECT and reads the proxy's answer head (or whatever it sent before closing). */
function openTunnel(proxyPort: number, authority: string, timeoutMs = 5000): Promise<Tunnel> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(proxyPort, '127.0.0.1');
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no CONNECT answer in ${timeoutMs} ms`));
    }, timeoutMs);
    const finish = (head: string, rest: Buffer) => {
      clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.removeListener('close', onClose);
      socket.pause();
      resolve({ socket, head, rest });
    };
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf('\r\n\r\n');
      if (end !== -1) finish(buf.subarray(0, end).toString('latin1'), buf.subarray(end + 4));
    };
    const onClose = () => finish(buf.toString('latin1'), Buffer.alloc(0));
    socket.on('data', onData);
    socket.on('close', onClose);
    socket.on('error', () => {});
    socket.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`);
  });
}

/** Reads from a paused socket until `done(received)` or the socket closes; bounded in time. */
function readUntil(socket: net.Socket, first: Buffer, done: (b: Buffer) => boolean, timeoutMs = 5000) {
  return new Promise<{ data: Buffer; closed: boolean }>((resolve, reject) => {
    let data = first;
    if (done(data)) return resolve({ data, closed: false });
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`timed out with ${JSON.stringify(data.toString('latin1'))}`));
    }, timeoutMs);
    const cleanup = () => {
      clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.removeListener('close', onClose);
      socket.pause();
    };
    const onData = (d: Buffer) => {
      data = Buffer.concat([data, d]);
      if (done(data)) {
        cleanup();
        resolve({ data, closed: false });
      }
    };
    const onClose = () => {
      cleanup();
      resolve({ data, closed: true });
    };
    socket.on('data', onData);
    socket.on('close', onClose);
    if (socket.destroyed) onClose();
    else socket.resume();
  });
}

async function deadPort(): Promise<number> {
  const probe = net.createServer();
  probe.listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const port = (probe.address() as net.AddressInfo).port;
  await new Promise((r) => probe.close(r));
  return port;
}

test(
  'CONNECT to an HTTP upstream: requests inside the tunnel are detected and counted',
  { timeout: TEST_TIMEOUT },
  async (t) => {
    const upstream = http.createServer((req, res) => res.end(`inside ${req.url} host=${req.headers.host}`));
    upstream.listen(0, '127.0.0.1');
    await once(upstream, 'listening');
    t.after(() => {
      upstream.closeAllConnections();
      upstream.close();
    });
    const upPort = (upstream.address() as net.AddressInfo).port;
    const proxy = await startProxyProcess();
    t.after(() => proxy.stop());

    const tunnel = await openTunnel(proxy.port('outbound'), `127.0.0.1:${upPort}`);
    t.after(() => tunnel.socket.destroy());
    assert.match(tunnel.head, /^HTTP\/1\.1 200 /);
    let pending = tunnel.rest;
    for (const p of ['/one', '/two']) {
      tunnel.socket.write(`GET ${p} HTTP/1.1\r\nHost: app.local\r\n\r\n`);
      const expected = `inside ${p} host=app.local`;
      const { data } = await readUntil(tunnel.socket, pending, (b) => b.includes(expected));
      assert.match(data.toString(), /^HTTP\/1\.1 200 /);
      pending = Buffer.alloc(0);
    }
    tunnel.socket.end();
    await readUntil(tunnel.socket, Buffer.alloc(0), () => false);
    // CONNECT itself plus the two requests inside the tunnel.
    assert.equal(
      await proxy.metric('trellis_request_total', { direction: 'outbound', protocol: 'http1' }),
      3,
    );
    assert.equal(
      await proxy.metric('trellis_detect_total', {
        direction: 'outbound',
        protocol: 'http1',
        outcome: 'detected',
      }),
      2,
    );
    assert.equal(
      await proxy.metric('trellis_response_total', {
        direction: 'outbound',
        status_code: '200',
        classification: 'success',
      }),
      3,
    );
  },
);

test(
  'CONNECT to a raw TCP echo server carries opaque bytes both ways',
  { timeout: TEST_TIMEOUT },
  async (t) => {
    const echo = net.createServer({ allowHalfOpen: true }, (s) => s.on('error', () => {}).pipe(s));
    echo.listen(0, '127.0.0.1');
    await once(echo, 'listening');
    t.after(() => echo.close());
    const proxy = await startProxyProcess();
    t.after(() => proxy.stop());

    const tunnel = await openTunnel(
      proxy.port('outbound'),
      `127.0.0.1:${(echo.address() as net.AddressInfo).port}`,
    );
    t.after(() => tunnel.socket.destroy());
    assert.match(tunnel.head, /^HTTP\/1\.1 200 /);
    const payload = Buffer.concat([Buffer.from([0x00, 0xff, 0x10]), binaryPayload(50_000)]);
    tunnel.socket.end(payload);
    const { data, closed } = await readUntil(tunnel.socket, tunnel.rest, () => false);
    assert.ok(closed);
    assert.ok(data.equals(payload), `echoed ${data.length} of ${payload.length} bytes`);
    // The tunnel's connection is still accounted for when it closes (CONNECT hands the socket over).
    assert.equal(await waitForMetric(proxy, 'trellis_tcp_close_total', { direction: 'outbound' }, 1), 1);
    assert.equal(await proxy.metric('trellis_tcp_open_connections', { direction: 'outbound' }), 0);
    assert.ok(
      (await proxy.metric('trellis_tcp_read_bytes_total', { direction: 'outbound' })) > payload.length,
    );
    assert.equal(
      await proxy.metric('trellis_detect_total', {
        direction: 'outbound',
        protocol: 'opaque',
        outcome: 'detected',
      }),
      1,
    );
  },
);

test(
  'CONNECT to a refused port: the tunnel closes and connect-failed is counted',
  { timeout: TEST_TIMEOUT },
  async (t) => {
    const proxy = await startProxyProcess();
    t.after(() => proxy.stop());
    const tunnel = await openTunnel(proxy.port('outbound'), `127.0.0.1:${await deadPort()}`);
    t.after(() => tunnel.socket.destroy());
    // The client speaks first (so detection decides at once), then the tunnel must close.
    tunnel.socket.write(Buffer.from([0x00, 0x01, 0x02]));
    const { data, closed } = await readUntil(tunnel.socket, tunnel.rest, () => false);
    assert.ok(closed);
    // The proxy connects before it answers CONNECT: the client hears why, not 200 and a close.
    assert.match(tunnel.head, /^HTTP\/1\.1 502 /);
    assert.match(tunnel.head, /trellis-proxy-error: connect-failed/);
    assert.match(
      data.toString('latin1'),
      /^CONNECT 127\.0\.0\.1:\d+: connect-failed/,
      'only the error body follows',
    );
    assert.equal(
      await proxy.metric('trellis_proxy_errors_total', { direction: 'outbound', reason: 'connect-failed' }),
      1,
    );
  },
);

test(
  'CONNECT to the proxy own listener is a loop: closed, never recursed',
  { timeout: TEST_TIMEOUT },
  async (t) => {
    const proxy = await startProxyProcess();
    t.after(() => proxy.stop());
    const own = proxy.port('outbound');
    const tunnel = await openTunnel(own, `127.0.0.1:${own}`);
    t.after(() => tunnel.socket.destroy());
    const { closed } = await readUntil(tunnel.socket, tunnel.rest, () => false);
    assert.ok(closed);
    assert.equal(
      await proxy.metric('trellis_proxy_errors_total', { direction: 'outbound', reason: 'loop-detected' }),
      1,
    );
    // Only the test's own connection was ever accepted: the proxy did not connect to itself.
    assert.equal(await proxy.metric('trellis_tcp_open_total', { direction: 'outbound' }), 1);
  },
);
