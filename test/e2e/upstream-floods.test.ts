// Availability against a misbehaving upstream (the app behind the inbound listener, or any server
// the outbound listener reaches): what it sends the proxy passes on, and what the proxy holds
// meanwhile, must stay bounded whether or not the client reads. The upstream here is a raw TCP
// server, so that it can break HTTP in ways a real server library would not.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import { once } from 'node:events';
import { startProxyProcess } from '../helpers/proxy-process.ts';

const EARLY_HINTS = Buffer.from(
  `HTTP/1.1 103 Early Hints\r\nLink: </${'x'.repeat(1000)}>; rel=preload\r\n\r\n`,
);

/** A raw upstream that answers each connection's first bytes with `answer`'s writes. */
async function rawUpstream(answer: (s: net.Socket) => void): Promise<{ port: number; close(): void }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    s.once('data', () => answer(s));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    close() {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

/** Writes `chunk` up to `total` bytes as fast as the socket takes it, then `tail`. */
function pump(s: net.Socket, chunk: Buffer, total: number, tail: string): void {
  let sent = 0;
  const go = (): void => {
    while (sent < total && !s.destroyed) {
      sent += chunk.length;
      if (!s.write(chunk)) return void s.once('drain', go);
    }
    if (!s.destroyed) s.end(tail);
  };
  go();
}

/** Sends `request` on a new connection and reads everything until the proxy closes it (or 10 s). */
function readAll(port: number, request: string): Promise<Buffer> {
  return new Promise((resolve) => {
    const parts: Buffer[] = [];
    const c = net.connect(port, '127.0.0.1', () => c.write(request));
    c.on('data', (d: Buffer) => parts.push(d));
    c.on('error', () => {});
    c.on('close', () => resolve(Buffer.concat(parts)));
    c.setTimeout(10_000, () => c.destroy());
  });
}

test('an upstream that sends 1xx responses without end: 502 after a bounded amount, not all of them', async (t) => {
  // 8 MiB of 103s, then a 200. Before the fix every one of them was passed on (and written to a
  // client that does not read, held in the proxy: 200 MiB of them grew it by 300 MB).
  const upstream = await rawUpstream((s) =>
    pump(
      s,
      Buffer.concat(Array<Buffer>(64).fill(EARLY_HINTS)),
      8 * 1024 * 1024,
      'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok',
    ),
  );
  t.after(() => upstream.close());
  const proxy = await startProxyProcess({ args: ['--app-port', String(upstream.port)] });
  t.after(() => proxy.stop());

  const got = await readAll(proxy.port('inbound'), 'GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
  const text = got.toString('latin1');
  const interim = text.split('HTTP/1.1 103 ').length - 1;
  const final = /HTTP\/1\.1 (?!103)(\d{3})[^]*$/.exec(text);
  assert.ok(got.length < 256 * 1024, `${got.length} bytes passed on (${interim} interim responses)`);
  assert.equal(final?.[1], '502', text.slice(-300));
  assert.match(final[0], /trellis-proxy-error: upstream-bad-response/i);
  assert.ok(interim > 0, 'interim responses under the bound are passed on');
  assert.equal(await proxy.metric('trellis_proxy_errors_total', { reason: 'upstream-bad-response' }), 1);
  assert.equal(proxy.proc.exitCode, null);
});

test('an HTTP/2 upstream that sends 1xx responses without end: 502 after a bounded amount, not all of them', async (t) => {
  // 10,000 103s of 1 KB each, then a 200. Before the fix every one was passed on (a client that
  // did not read them left ~70 MB in the proxy for this one stream).
  const FLOOD = 10_000;
  const app = http2.createServer();
  app.on('stream', (stream) => {
    stream.on('error', () => {});
    const link = `</${'x'.repeat(1000)}>; rel=preload`;
    let sent = 0;
    const go = (): void => {
      for (let i = 0; i < 200 && sent < FLOOD && !stream.destroyed; i++, sent++)
        stream.additionalHeaders({ ':status': 103, link });
      if (stream.destroyed) return;
      if (sent < FLOOD) setImmediate(go);
      else stream.respond({ ':status': 200 }, { endStream: true });
    };
    go();
  });
  app.listen(0, '127.0.0.1');
  await once(app, 'listening');
  t.after(() => app.close());
  const proxy = await startProxyProcess({
    args: ['--app-port', String((app.address() as net.AddressInfo).port)],
  });
  t.after(() => proxy.stop());

  const client = http2.connect(`http://127.0.0.1:${proxy.port('inbound')}`);
  t.after(() => client.destroy());
  const req = client.request({ ':path': '/' });
  let interim = 0;
  req.on('headers', () => interim++);
  const [headers] = (await once(req, 'response')) as [http2.IncomingHttpHeaders];
  req.resume();
  assert.equal(headers[':status'], 502, `after ${interim} interim responses`);
  assert.equal(headers['trellis-proxy-error'], 'upstream-bad-response');
  assert.ok(interim > 0 && interim < 100, `${interim} interim responses passed on`);
  assert.equal(proxy.proc.exitCode, null);
});
