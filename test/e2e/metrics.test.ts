// The proxy's telemetry end to end: after a known mix of traffic (HTTP/1 with 2xx/4xx/5xx, HTTP/2,
// opaque TCP, a refused upstream), /metrics passes `promtool check metrics`, holds only families
// docs/metrics.md documents, and every counter matches what was sent, byte counts included;
// /config shows the effective configuration with defaults filled in; the access log has one JSON
// line per request.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import http from 'node:http';
import http2 from 'node:http2';
import { once } from 'node:events';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { ProxyConfig } from '../../src/proxy/config.ts';
import { startProxyProcess, type ProxyProcess } from '../helpers/proxy-process.ts';
import { undocumented } from '../helpers/metrics-docs.ts';

const TEST_TIMEOUT = 60_000;
const PROMTOOL = '/usr/bin/promtool';

type After = { after(fn: () => unknown): void };

async function listen(t: After, server: net.Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => new Promise((r) => server.close(r)));
  return (server.address() as net.AddressInfo).port;
}

/** Bytes the client side of every connection sent and received: the proxy must count the same. */
const clientBytes = { written: 0, read: 0 };
function account(socket: net.Socket): void {
  socket.once('close', () => {
    clientBytes.written += socket.bytesWritten;
    clientBytes.read += socket.bytesRead;
  });
}

/** One HTTP/1 request on its own connection (agent: false sends `connection: close`). */
function h1Request(port: number, target: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: target, agent: false, timeout: 5000 }, (res) => {
      res.resume();
      res.on('end', () => res.socket.once('close', () => resolve(res.statusCode ?? 0)));
    });
    req.on('socket', account);
    req.on('timeout', () => req.destroy(new Error('no answer in 5 s')));
    req.on('error', reject);
  });
}

async function h2Requests(port: number, paths: string[]): Promise<unknown[]> {
  const socket = net.connect(port, '127.0.0.1');
  account(socket);
  const session = http2.connect(`http://127.0.0.1:${port}`, { createConnection: () => socket });
  session.on('error', () => {});
  try {
    const statuses = await Promise.all(
      paths.map(async (p) => {
        const stream = session.request({ ':path': p });
        const [headers] = (await once(stream, 'response')) as [http2.IncomingHttpHeaders];
        stream.resume();
        await once(stream, 'end');
        return headers[':status'];
      }),
    );
    session.close();
    if (!socket.closed) await once(socket, 'close');
    return statuses;
  } finally {
    session.destroy();
  }
}

async function opaqueExchange(port: number, payload: Buffer): Promise<Buffer> {
  const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  account(socket);
  socket.end(payload);
  const chunks: Buffer[] = [];
  for await (const chunk of socket) chunks.push(chunk as Buffer);
  if (!socket.closed) await once(socket, 'close');
  return Buffer.concat(chunks);
}

async function settled(proxy: ProxyProcess, opened: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if ((await proxy.metric('trellis_tcp_close_total')) === opened) return;
    await new Promise((r) => setTimeout(r, 20));
  }
}

test(
  'metrics after mixed traffic: promtool-valid and exact; /config; access log',
  { timeout: TEST_TIMEOUT },
  async (t) => {
    const web = http.createServer((req, res) => {
      const status = req.url === '/missing' ? 404 : req.url === '/boom' ? 500 : 200;
      res.statusCode = status;
      res.end(`status ${status}`);
    });
    const webPort = await listen(t, web);
    const grpcish = http2.createServer();
    grpcish.on('stream', (stream, headers) => {
      stream.respond({ ':status': headers[':path'] === '/unavailable' ? 503 : 200 });
      stream.end('h2');
    });
    const h2Port = await listen(t, grpcish);
    const echo = net.createServer({ allowHalfOpen: true }, (s) => s.on('error', () => {}).pipe(s));
    const echoPort = await listen(t, echo);
    const probe = net.createServer();
    const deadPort = await listen({ after: () => {} }, probe);
    await new Promise((r) => probe.close(r));

    const dir = mkdtempSync(path.join(tmpdir(), 'trellis-metrics-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const accessLogFile = path.join(dir, 'access.log');
    const proxy = await startProxyProcess({
      args: [
        '--access-log',
        accessLogFile,
        '--destination',
        `127.0.0.1:0=127.0.0.1:${webPort}`,
        '--destination',
        `127.0.0.1:0=127.0.0.1:${h2Port}`,
        '--destination',
        `127.0.0.1:0=127.0.0.1:${echoPort}`,
      ],
    });
    t.after(() => proxy.stop());

    // ---- the traffic ----
    const h1Paths = ['/ok', '/ok', '/ok?x=1', '/missing', '/boom', '/boom'];
    const h1Statuses: number[] = [];
    for (const p of h1Paths) h1Statuses.push(await h1Request(proxy.port('destination-0'), p));
    assert.deepEqual(h1Statuses, [200, 200, 200, 404, 500, 500]);
    // Absolute-form to a refused port: the proxy answers 502 itself.
    assert.equal(await h1Request(proxy.port('outbound'), `http://127.0.0.1:${deadPort}/nobody`), 502);
    assert.deepEqual(await h2Requests(proxy.port('destination-1'), ['/ok', '/unavailable']), [200, 503]);
    const payload = Buffer.concat([Buffer.from([0x00, 0x01]), Buffer.alloc(10_000, 7)]);
    assert.ok((await opaqueExchange(proxy.port('destination-2'), payload)).equals(payload));
    const connections = h1Paths.length + 1 + 1 + 1;
    await settled(proxy, connections);

    // ---- promtool ----
    const text = await proxy.admin('/metrics');
    if (existsSync(PROMTOOL)) {
      const check = spawnSync(PROMTOOL, ['check', 'metrics'], {
        input: text,
        encoding: 'utf8',
        timeout: 10_000,
      });
      assert.equal(check.status, 0, `promtool: ${check.stdout}${check.stderr}`);
    } else {
      t.diagnostic(`${PROMTOOL} missing: promtool check skipped`);
    }
    assert.deepEqual(undocumented(text), [], 'docs/metrics.md documents every family of the page');

    // ---- counters ----
    const m = (name: string, labels: Record<string, string> = {}) => proxy.metric(name, labels);
    const out = { direction: 'outbound' };
    assert.equal(await m('trellis_request_total', { ...out, protocol: 'http1' }), 7);
    assert.equal(await m('trellis_request_total', { ...out, protocol: 'h2' }), 2);
    assert.equal(await m('trellis_request_total', { direction: 'inbound' }), 0);
    const responses = async (protocol: string, status: string, classification: string) =>
      m('trellis_response_total', { ...out, protocol, status_code: status, classification });
    assert.equal(await responses('http1', '200', 'success'), 3);
    assert.equal(await responses('http1', '404', 'success'), 1);
    assert.equal(await responses('http1', '500', 'failure'), 2);
    assert.equal(await responses('http1', '500', 'success'), 0);
    assert.equal(await responses('http1', '502', 'failure'), 1);
    assert.equal(await responses('h2', '200', 'success'), 1);
    assert.equal(await responses('h2', '503', 'failure'), 1);
    assert.equal(await m('trellis_response_latency_seconds_count', out), 9);
    assert.equal(await m('trellis_proxy_errors_total', { ...out, reason: 'connect-failed' }), 1);
    assert.equal(await m('trellis_proxy_errors_total'), 1);

    assert.equal(await m('trellis_tcp_open_total', out), connections);
    assert.equal(await m('trellis_tcp_close_total', out), connections);
    assert.equal(await m('trellis_tcp_open_connections', out), 0);
    assert.equal(await m('trellis_tcp_read_bytes_total', out), clientBytes.written);
    assert.equal(await m('trellis_tcp_write_bytes_total', out), clientBytes.read);

    assert.equal(await m('trellis_detect_total', { ...out, protocol: 'http1', outcome: 'detected' }), 7);
    assert.equal(await m('trellis_detect_total', { ...out, protocol: 'h2', outcome: 'detected' }), 1);
    assert.equal(await m('trellis_detect_total', { ...out, protocol: 'opaque', outcome: 'detected' }), 1);
    assert.equal(await m('trellis_detect_total'), connections);

    // ---- /config: the effective configuration, defaults filled in ----
    const config = JSON.parse(await proxy.admin('/config')) as ProxyConfig;
    assert.equal(config.log.access, accessLogFile);
    assert.equal(config.mode, 'explicit');
    assert.equal(config.appHost, undefined); // unset: 127.0.0.1 (transparent mode: the pod's IP)
    assert.equal(config.timeouts.connectMs, 5000);
    assert.equal(config.detect.timeoutMs, 3000);
    assert.deepEqual(config.opaquePorts, [25, 587, 3306, 4444, 5432, 6379, 9300, 11211]);
    assert.equal(config.destinations.length, 3);
    assert.equal(config.destinations[0]?.target, `127.0.0.1:${webPort}`);
    assert.equal(config.destinations[0]?.protocol, 'auto');

    // ---- access log: one JSON line per request (flushed when the proxy drains) ----
    assert.equal(await proxy.stop(), 0);
    const lines = readFileSync(accessLogFile, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const seen = lines.map(
      (l) => `${l.protocol as string} ${l.method as string} ${l.path as string} ${l.status as number}`,
    );
    const expected = [
      'h2 GET /ok 200',
      'h2 GET /unavailable 503',
      'http1 GET /boom 500',
      'http1 GET /boom 500',
      'http1 GET /missing 404',
      'http1 GET /ok 200',
      'http1 GET /ok 200',
      'http1 GET /ok?x=1 200',
    ];
    assert.deepEqual(seen.filter((l) => !l.endsWith(' 502')).sort(), expected);
    for (const l of lines) assert.equal(l.direction, 'outbound');
    // Answers the proxy makes up itself belong in the access log too (the 502 of the refused port).
    assert.deepEqual(seen.sort(), [...expected, 'http1 GET /nobody 502'].sort());
  },
);
