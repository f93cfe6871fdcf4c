// The spans one proxy exports per exchange (src/proxy/http/h1-session.ts with tracing): a proxy
// with a static destination exports one CLIENT span per request, HTTP/1 and HTTP/2, on a kept
// connection too; a request that cannot be parsed after a traced one on the same connection
// exports nothing (it once ended the previous request's span a second time); a sampled request
// the proxy refuses (no route) exports its span with the status and the reason.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { once } from 'node:events';
import { startProxy } from '../../src/proxy/proxy.ts';
import { validateProxyConfig } from '../../src/proxy/config.ts';
import { silentLogger } from '../../src/core/log.ts';
import { portOf } from '../helpers/running-proxy.ts';
import { startOtlpReceiver } from '../helpers/otlp-receiver.ts';

const T = '4bf92f3577b34da6a3ce929d0e0e4736';
const P = '00f067aa0ba902b7';

/** Writes `text` on one connection and reads until the peer closes or `until` matches. */
async function raw(port: number, text: string, until: RegExp): Promise<string> {
  const s = net.connect({ host: '127.0.0.1', port });
  s.on('error', () => {});
  await once(s, 'connect');
  s.write(text);
  let got = '';
  s.setEncoding('latin1');
  s.on('data', (d: string) => (got += d));
  const deadline = Date.now() + 5000;
  while (!until.test(got) && !s.destroyed && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 10));
  s.destroy();
  return got;
}

test('a standalone proxy: one CLIENT span per request, none for a bad request after it, refused requests too', async (t) => {
  const receiver = await startOtlpReceiver();
  t.after(() => receiver.close());
  const app = http.createServer((_req, res) => res.end('ok'));
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  t.after(() => app.close());
  const appPort = (app.address() as net.AddressInfo).port;
  const proxy = await startProxy(
    validateProxyConfig({
      inboundListen: '127.0.0.1:0',
      outboundListen: '127.0.0.1:0',
      adminListen: '127.0.0.1:0',
      destinations: [{ listen: '127.0.0.1:0', target: `127.0.0.1:${appPort}` }],
      tracing: { collector: receiver.url, sampleRatio: 1, batchDelayMs: 20 },
    }),
    silentLogger,
  );
  t.after(() => proxy.shutdown(100));
  const port = portOf(proxy, 'destination-0');
  const settle = () => new Promise((r) => setTimeout(r, 300));

  // Two requests on one kept connection, then one that does not parse.
  const answer = await raw(
    port,
    'GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\nGET /c HTTP/1.1\r\nBad Header\r\n\r\n',
    /400 Bad Request[^]*\r\n\r\n/,
  );
  assert.match(answer, /^HTTP\/1\.1 200 [^]*HTTP\/1\.1 200 [^]*HTTP\/1\.1 400 /);
  await receiver.waitFor((s) => s.length >= 2);
  await settle();
  assert.deepEqual(
    receiver.spans.map((s) => [s.kind, s.attributes['url.path']]),
    [
      ['SPAN_KIND_CLIENT', '/a'],
      ['SPAN_KIND_CLIENT', '/b'],
    ],
  );
  assert.notEqual(receiver.spans[0]!.spanId, receiver.spans[1]!.spanId);

  // HTTP/2 to the same listener: one span as well.
  receiver.spans.length = 0;
  const c = http2.connect(`http://127.0.0.1:${port}`);
  t.after(() => c.close());
  for (const path of ['/h2a', '/h2b']) {
    const r = c.request({ ':path': path });
    r.resume();
    r.end();
    await once(r, 'end');
  }
  await receiver.waitFor((s) => s.length >= 2);
  await settle();
  assert.deepEqual(
    receiver.spans.map((s) => s.attributes['url.path']),
    ['/h2a', '/h2b'],
  );
});

test('a sampled request the outbound proxy cannot route: its span carries the 4xx/5xx and the reason', async (t) => {
  const receiver = await startOtlpReceiver();
  t.after(() => receiver.close());
  const proxy = await startProxy(
    validateProxyConfig({
      inboundListen: '127.0.0.1:0',
      outboundListen: '127.0.0.1:0',
      adminListen: '127.0.0.1:0',
      tracing: { collector: receiver.url, sampleRatio: 0, batchDelayMs: 20 },
    }),
    silentLogger,
  );
  t.after(() => proxy.shutdown(100));
  // An empty Host: the outbound proxy has nowhere to send it (404 unknown-destination).
  const answer = await raw(
    portOf(proxy, 'outbound'),
    `GET /nowhere HTTP/1.1\r\nHost: \r\ntraceparent: 00-${T}-${P}-01\r\n\r\n`,
    /\r\n\r\n[^]*$/,
  );
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1]);
  const reason = /trellis-proxy-error: ([^\r]+)/i.exec(answer)?.[1];
  assert.ok(status >= 400, answer);
  assert.ok(reason !== undefined, answer);
  const [s] = await receiver.waitFor((spans) => spans.length > 0);
  assert.equal(s!.traceId, T);
  assert.equal(s!.parentSpanId, P);
  assert.equal(s!.kind, 'SPAN_KIND_CLIENT');
  assert.equal(s!.attributes['http.response.status_code'], status);
  assert.equal(s!.attributes['trellis.proxy_error'], reason);
  assert.equal(s!.status.code, 'STATUS_CODE_ERROR');
});
