// Graceful drain of the real proxy process: on SIGTERM (or POST /shutdown with the admin token) in-flight
// HTTP/1 and HTTP/2 exchanges finish (HTTP/1 answers carry `connection: close`, HTTP/2 clients get
// GOAWAY), new connections are refused, /ready turns 503, and the process exits 0; work slower
// than the grace period does not keep the process alive past it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import http from 'node:http';
import http2 from 'node:http2';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startProxyProcess, type ProxyProcess } from '../helpers/proxy-process.ts';

const TEST_TIMEOUT = 30_000;

type After = { after(fn: () => unknown): void };

/** HTTP/1 and h2c upstreams that answer after `delayMs`; `arrived` counts requests seen. */
async function slowUpstreams(t: After, delayMs: number) {
  const state = { arrived: 0 };
  const timers = new Set<NodeJS.Timeout>();
  const later = (fn: () => void) => {
    const timer = setTimeout(() => {
      timers.delete(timer);
      fn();
    }, delayMs);
    timers.add(timer);
  };
  const h1 = http.createServer((req, res) => {
    state.arrived++;
    later(() => res.end(`slow ${req.url}`));
  });
  const h2 = http2.createServer();
  h2.on('stream', (stream, headers) => {
    state.arrived++;
    stream.on('error', () => {});
    later(() => {
      if (stream.destroyed) return;
      stream.respond({ ':status': 200 });
      stream.end(`slow h2 ${headers[':path']}`);
    });
  });
  h2.on('session', (s) => s.on('error', () => {}));
  const ports: number[] = [];
  for (const server of [h1, h2]) {
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    ports.push((server.address() as net.AddressInfo).port);
  }
  t.after(() => {
    for (const timer of timers) clearTimeout(timer);
    h1.closeAllConnections();
    h1.close();
    h2.close();
  });
  return { state, h1Port: ports[0]!, h2Port: ports[1]! };
}

interface H1Answer {
  status: number;
  connection: string | undefined;
  body: string;
}

function h1Get(port: number, path: string): Promise<H1Answer> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false, timeout: 15_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, connection: res.headers.connection, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('no answer in 15 s')));
    req.on('error', reject);
  });
}

async function waitFor(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 5000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Whether a TCP connection to the port is refused (the listener is closed). */
function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(true));
  });
}

async function readyStatus(proxy: ProxyProcess): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${proxy.port('admin')}/ready`);
  await res.text();
  return res.status;
}

function exitOf(proxy: ProxyProcess): Promise<[number | null, NodeJS.Signals | null]> {
  if (proxy.proc.exitCode !== null) return Promise.resolve([proxy.proc.exitCode, null]);
  return once(proxy.proc, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
}

test(
  'SIGTERM: in-flight HTTP/1 and HTTP/2 finish, new connections refused, exit 0',
  { timeout: TEST_TIMEOUT },
  async (t) => {
    const up = await slowUpstreams(t, 1000);
    const proxy = await startProxyProcess({
      args: [
        '--drain-grace-ms',
        '5000',
        '--destination',
        `127.0.0.1:0=127.0.0.1:${up.h1Port}`,
        '--destination',
        `127.0.0.1:0=127.0.0.1:${up.h2Port}`,
      ],
    });
    t.after(() => proxy.stop('SIGKILL'));
    assert.equal(await readyStatus(proxy), 200);

    const h1 = h1Get(proxy.port('destination-0'), '/slow');
    const client = http2.connect(`http://127.0.0.1:${proxy.port('destination-1')}`);
    t.after(() => client.destroy());
    client.on('error', () => {});
    let goaway = false;
    client.on('goaway', () => (goaway = true));
    const stream = client.request({ ':path': '/slow-h2' });
    const h2 = (async () => {
      const [headers] = (await once(stream, 'response')) as [http2.IncomingHttpHeaders];
      let body = '';
      stream.setEncoding('utf8');
      stream.on('data', (d: string) => (body += d));
      await once(stream, 'end');
      return { status: headers[':status'], body };
    })();
    await waitFor('both requests to reach the upstreams', () => up.state.arrived === 2);

    const exited = exitOf(proxy);
    const signalledAt = Date.now();
    proxy.proc.kill('SIGTERM');
    await waitFor('the listeners to close', () => refused(proxy.port('destination-0')));
    assert.ok(await refused(proxy.port('outbound')));
    assert.ok(await refused(proxy.port('destination-1')));
    assert.equal(await readyStatus(proxy), 503, '/ready during the drain');

    const a1 = await h1;
    assert.equal(a1.status, 200);
    assert.equal(a1.body, 'slow /slow');
    assert.equal(a1.connection, 'close');
    const a2 = await h2;
    assert.equal(a2.status, 200);
    assert.equal(a2.body, 'slow h2 /slow-h2');
    await waitFor('GOAWAY on the HTTP/2 client', () => goaway);

    const [code, signal] = await exited;
    assert.equal(signal, null);
    assert.equal(code, 0, proxy.stderr());
    assert.ok(Date.now() - signalledAt < 4000, `drain took ${Date.now() - signalledAt} ms with nothing left`);
  },
);

test(
  'SIGTERM: a request slower than the grace period does not keep the process alive',
  { timeout: TEST_TIMEOUT },
  async (t) => {
    const up = await slowUpstreams(t, 20_000);
    const proxy = await startProxyProcess({
      args: ['--drain-grace-ms', '1000', '--destination', `127.0.0.1:0=127.0.0.1:${up.h1Port}`],
    });
    t.after(() => proxy.stop('SIGKILL'));
    const h1 = h1Get(proxy.port('destination-0'), '/too-slow').then(
      (a) => a,
      (err: Error) => err,
    );
    await waitFor('the request to reach the upstream', () => up.state.arrived === 1);
    const exited = exitOf(proxy);
    const signalledAt = Date.now();
    proxy.proc.kill('SIGTERM');
    const [code] = await exited;
    const took = Date.now() - signalledAt;
    assert.equal(code, 0, proxy.stderr());
    assert.ok(took >= 900, `exited after ${took} ms, before the grace period`);
    assert.ok(took < 3000, `exited after ${took} ms, long after the 1000 ms grace period`);
    const answer = await h1;
    assert.ok(answer instanceof Error, 'the unfinished request was cut off');
  },
);

test(
  'POST /shutdown from loopback with the admin token drains and exits 0',
  { timeout: TEST_TIMEOUT },
  async (t) => {
    const up = await slowUpstreams(t, 500);
    const dir = mkdtempSync(join(tmpdir(), 'trellis-admin-token-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, 'token'), 'drain-test-token\n', { mode: 0o600 });
    const proxy = await startProxyProcess({
      args: [
        '--drain-grace-ms',
        '5000',
        '--admin-token-file',
        join(dir, 'token'),
        '--destination',
        `127.0.0.1:0=127.0.0.1:${up.h1Port}`,
      ],
    });
    t.after(() => proxy.stop('SIGKILL'));
    const h1 = h1Get(proxy.port('destination-0'), '/during-shutdown');
    await waitFor('the request to reach the upstream', () => up.state.arrived === 1);
    const exited = exitOf(proxy);
    const res = await fetch(`http://127.0.0.1:${proxy.port('admin')}/shutdown`, {
      method: 'POST',
      headers: { authorization: 'Bearer drain-test-token' },
    });
    assert.equal(res.status, 202);
    await res.text();
    await waitFor('the listeners to close', () => refused(proxy.port('destination-0')));
    const answer = await h1;
    assert.equal(answer.status, 200);
    assert.equal(answer.connection, 'close');
    const [code] = await exited;
    assert.equal(code, 0, proxy.stderr());
  },
);
