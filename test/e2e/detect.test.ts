// Protocol detection through the real proxy process, on a destination listener with protocol auto:
// HTTP/1, HTTP/2 with prior knowledge (h2c), TLS passed through untouched (the client verifies the
// upstream's own certificate), opaque binary bytes, and a server-first protocol, where the first
// connection waits for the detect timeout and later ones to the same destination do not.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import http from 'node:http';
import http2 from 'node:http2';
import tls from 'node:tls';
import { once } from 'node:events';
import crypto from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startProxyProcess, type ProxyProcess } from '../helpers/proxy-process.ts';

const TEST_TIMEOUT = 30_000;
const DETECT_TIMEOUT_MS = 300;

type After = { after(fn: () => unknown): void };

async function listen(t: After, server: net.Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => new Promise((r) => server.close(r)));
  return (server.address() as net.AddressInfo).port;
}

/** A proxy with one auto-detecting destination listener bound for 127.0.0.1:upstreamPort. */
async function proxyFor(t: After, upstreamPort: number, extra: string[] = []): Promise<ProxyProcess> {
  const proxy = await startProxyProcess({
    args: ['--destination', `127.0.0.1:0=127.0.0.1:${upstreamPort}`, ...extra],
  });
  t.after(() => proxy.stop());
  return proxy;
}

function detectCount(proxy: ProxyProcess, protocol: string, outcome: string): Promise<number> {
  return proxy.metric('trellis_detect_total', { direction: 'outbound', protocol, outcome });
}

test('HTTP/1 is detected and proxied', { timeout: TEST_TIMEOUT }, async (t) => {
  const port = await listen(
    t,
    http.createServer((req, res) => res.end(`h1 ${req.method} ${req.url}`)),
  );
  const proxy = await proxyFor(t, port);
  const res = await fetch(`http://127.0.0.1:${proxy.port('destination-0')}/a?b=1`);
  assert.equal(res.status, 200);
  assert.equal(await res.text(), 'h1 GET /a?b=1');
  assert.equal(await detectCount(proxy, 'http1', 'detected'), 1);
  assert.equal(await proxy.metric('trellis_request_total', { direction: 'outbound', protocol: 'http1' }), 1);
});

test('HTTP/2 prior knowledge (h2c) is detected and proxied', { timeout: TEST_TIMEOUT }, async (t) => {
  const server = http2.createServer();
  server.on('stream', (stream, headers) => {
    stream.respond({ ':status': 200, 'x-proto': 'h2' });
    stream.end(`h2 ${headers[':path']}`);
  });
  const port = await listen(t, server);
  const proxy = await proxyFor(t, port);
  const client = http2.connect(`http://127.0.0.1:${proxy.port('destination-0')}`);
  t.after(() => client.destroy());
  client.on('error', () => {});
  const req = client.request({ ':path': '/grpc-ish' });
  const [headers] = (await once(req, 'response')) as [http2.IncomingHttpHeaders];
  let body = '';
  req.setEncoding('utf8');
  req.on('data', (d: string) => (body += d));
  await once(req, 'end');
  client.close();
  assert.equal(headers[':status'], 200);
  assert.equal(headers['x-proto'], 'h2');
  assert.equal(body, 'h2 /grpc-ish');
  assert.equal(await detectCount(proxy, 'h2', 'detected'), 1);
  assert.equal(await proxy.metric('trellis_request_total', { direction: 'outbound', protocol: 'h2' }), 1);
});

/** A self-signed certificate for localhost / 127.0.0.1, made with openssl; null when there is none. */
function makeCertificate(): { key: Buffer; cert: Buffer } | null {
  const dir = mkdtempSync(path.join(tmpdir(), 'trellis-tls-'));
  try {
    const r = spawnSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-keyout',
        path.join(dir, 'key.pem'),
        '-out',
        path.join(dir, 'cert.pem'),
        '-days',
        '1',
        '-subj',
        '/CN=localhost',
        '-addext',
        'subjectAltName=DNS:localhost,IP:127.0.0.1',
      ],
      { timeout: 10_000, stdio: 'ignore' },
    );
    if (r.status !== 0) return null;
    return { key: readFileSync(path.join(dir, 'key.pem')), cert: readFileSync(path.join(dir, 'cert.pem')) };
  } catch {
    return null;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test(
  'TLS passes through untouched: the client verifies the upstream certificate',
  { timeout: TEST_TIMEOUT },
  async (t) => {
    const creds = makeCertificate();
    if (creds === null) {
      t.skip('openssl is not available to make a certificate');
      return;
    }
    const server = tls.createServer({ ...creds, ALPNProtocols: ['echo/1'] }, (s) => {
      s.on('error', () => {});
      s.on('data', (d: Buffer) => s.write(`tls:${d.toString()}`));
      s.on('end', () => s.end());
    });
    const port = await listen(t, server);
    const proxy = await proxyFor(t, port);
    const client = tls.connect({
      host: '127.0.0.1',
      port: proxy.port('destination-0'),
      servername: 'localhost',
      ca: [creds.cert], // only the upstream's own certificate is trusted
      ALPNProtocols: ['echo/1'],
    });
    t.after(() => client.destroy());
    await once(client, 'secureConnect');
    assert.equal(client.authorized, true, String(client.authorizationError));
    assert.ok(client.getPeerCertificate().raw.equals(new crypto.X509Certificate(creds.cert).raw));
    assert.equal(client.alpnProtocol, 'echo/1');
    client.write('ping');
    const [reply] = (await once(client, 'data')) as [Buffer];
    assert.equal(reply.toString(), 'tls:ping');
    client.end();
    await once(client, 'close');
    assert.equal(await detectCount(proxy, 'tls', 'detected'), 1);
  },
);

test('opaque binary bytes are detected as opaque and forwarded', { timeout: TEST_TIMEOUT }, async (t) => {
  const port = await listen(
    t,
    net.createServer((s) => s.on('error', () => {}).pipe(s)),
  );
  const proxy = await proxyFor(t, port);
  // A length-prefixed binary frame, as a database or cache protocol would send.
  const frame = Buffer.from([0x00, 0x00, 0x00, 0x08, 0xca, 0xfe, 0xba, 0xbe, 0x01, 0x02, 0x03, 0x04]);
  const client = net.connect(proxy.port('destination-0'), '127.0.0.1');
  t.after(() => client.destroy());
  client.write(frame);
  let echoed = Buffer.alloc(0);
  for await (const chunk of client) {
    echoed = Buffer.concat([echoed, chunk as Buffer]);
    if (echoed.length >= frame.length) break;
  }
  assert.ok(echoed.equals(frame));
  assert.equal(await detectCount(proxy, 'opaque', 'detected'), 1);
  assert.equal(await detectCount(proxy, 'opaque', 'timeout'), 0);
});

/** Connects and measures how long the server's banner takes to arrive. */
async function timeToBanner(port: number, banner: string): Promise<number> {
  const started = performance.now();
  const client = net.connect(port, '127.0.0.1');
  try {
    let got = '';
    const deadline = setTimeout(() => client.destroy(new Error('no banner within 5 s')), 5000);
    client.setEncoding('utf8');
    for await (const chunk of client) {
      got += chunk as string;
      if (got.length >= banner.length) break;
    }
    clearTimeout(deadline);
    assert.equal(got, banner);
    return performance.now() - started;
  } finally {
    client.destroy();
  }
}

test(
  'server-first protocol: first connection waits for the timeout, the next does not',
  { timeout: TEST_TIMEOUT },
  async (t) => {
    const banner = '220 smtp.example ESMTP ready\r\n';
    const port = await listen(
      t,
      net.createServer((s) => {
        s.on('error', () => {});
        s.end(banner);
      }),
    );
    const proxy = await proxyFor(t, port, ['--detect-timeout-ms', String(DETECT_TIMEOUT_MS)]);
    const listenerPort = proxy.port('destination-0');

    const first = await timeToBanner(listenerPort, banner);
    assert.ok(first >= DETECT_TIMEOUT_MS - 20, `first banner after ${first} ms, before the detect timeout`);
    assert.equal(await detectCount(proxy, 'opaque', 'timeout'), 1);

    const second = await timeToBanner(listenerPort, banner);
    assert.ok(second < DETECT_TIMEOUT_MS / 2, `second banner took ${second} ms: it waited for detection`);
    assert.equal(await detectCount(proxy, 'opaque', 'cached-opaque'), 1);
    assert.equal(await detectCount(proxy, 'opaque', 'timeout'), 1);
  },
);

// ---- absolute-form requests on the outbound (HTTP proxy) listener ----------------------------

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** Sends one request with the given request-target to the proxy; bounded in time. */
function requestVia(proxyPort: number, target: string, host: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port: proxyPort, path: target, headers: { host }, agent: false, timeout: 5000 },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('no answer in 5 s')));
    req.on('error', reject);
    req.end();
  });
}

test(
  'absolute-form: forwarded in origin-form with Host from the URI authority',
  { timeout: TEST_TIMEOUT },
  async (t) => {
    const port = await listen(
      t,
      http.createServer((req, res) => res.end(JSON.stringify({ url: req.url, host: req.headers.host }))),
    );
    const proxy = await startProxyProcess();
    t.after(() => proxy.stop());
    const res = await requestVia(
      proxy.port('outbound'),
      `http://127.0.0.1:${port}/path?q=1`,
      'ignored.example',
    );
    assert.equal(res.status, 200);
    assert.deepEqual(JSON.parse(res.body), { url: '/path?q=1', host: `127.0.0.1:${port}` });
    // An empty path becomes "/".
    const bare = await requestVia(proxy.port('outbound'), `http://127.0.0.1:${port}`, 'ignored.example');
    assert.deepEqual(JSON.parse(bare.body), { url: '/', host: `127.0.0.1:${port}` });
  },
);

test(
  'absolute-form to the proxy own port is a loop: 508 loop-detected',
  { timeout: TEST_TIMEOUT },
  async (t) => {
    const proxy = await startProxyProcess();
    t.after(() => proxy.stop());
    const own = proxy.port('outbound');
    const res = await requestVia(own, `http://127.0.0.1:${own}/again`, `127.0.0.1:${own}`);
    assert.equal(res.status, 508);
    assert.equal(res.headers['trellis-proxy-error'], 'loop-detected');
    // Origin-form with only a Host naming the proxy is the same loop.
    const viaHost = await requestVia(own, '/again', `localhost:${own}`);
    assert.equal(viaHost.status, 508);
    // Other spellings of this host must not slip through (each would recurse without end).
    const spellings = ['LOCALHOST.', '127.1', '2130706433', '0x7f.0.0.1', '[::ffff:127.0.0.1]', '0'];
    for (const host of spellings) {
      const res = await requestVia(own, `http://${host}:${own}/`, 'x');
      assert.equal(res.status, 508, `http://${host}:${own}/`);
    }
    const loops = 2 + spellings.length;
    assert.equal(
      await proxy.metric('trellis_proxy_errors_total', { direction: 'outbound', reason: 'loop-detected' }),
      loops,
    );
    // Only the test's own connections were accepted: the proxy never connected to itself.
    assert.equal(await proxy.metric('trellis_tcp_open_total', { direction: 'outbound' }), loops);
  },
);

test('absolute-form with https:// is refused with 400', { timeout: TEST_TIMEOUT }, async (t) => {
  const proxy = await startProxyProcess();
  t.after(() => proxy.stop());
  const res = await requestVia(proxy.port('outbound'), 'https://127.0.0.1:1/secret', '127.0.0.1:1');
  assert.equal(res.status, 400);
  assert.equal(res.headers['trellis-proxy-error'], 'bad-request');
  assert.equal(
    await proxy.metric('trellis_response_total', {
      direction: 'outbound',
      status_code: '400',
      classification: 'failure',
    }),
    1,
  );
});

test(
  'a connection reset during detection does not mark its destination opaque',
  { timeout: TEST_TIMEOUT },
  async (t) => {
    const port = await listen(
      t,
      http.createServer((_req, res) => res.end('fine')),
    );
    const proxy = await proxyFor(t, port, ['--detect-timeout-ms', String(DETECT_TIMEOUT_MS)]);
    const listenerPort = proxy.port('destination-0');
    // A TCP probe: connect, then reset before sending anything.
    const probe = net.connect(listenerPort, '127.0.0.1');
    probe.on('error', () => {});
    await once(probe, 'connect');
    await new Promise((r) => setTimeout(r, 50));
    probe.resetAndDestroy();
    await new Promise((r) => setTimeout(r, DETECT_TIMEOUT_MS + 200));

    const res = await fetch(`http://127.0.0.1:${listenerPort}/`);
    assert.equal(await res.text(), 'fine');
    assert.equal(await detectCount(proxy, 'http1', 'detected'), 1);
    assert.equal(await detectCount(proxy, 'opaque', 'cached-opaque'), 0);
    assert.equal(await detectCount(proxy, 'opaque', 'timeout'), 0);
    assert.equal(await detectCount(proxy, 'opaque', 'closed'), 1);
    assert.equal(await proxy.metric('trellis_proxy_errors_total', { reason: 'detect-timeout' }), 0);
  },
);
