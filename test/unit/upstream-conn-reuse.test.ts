// An upstream connection whose upstream sent bytes past the end of its response is out of step
// with the proxy (src/proxy/http/upstream-conn.ts): it is never given to another exchange. The
// upstream here is raw TCP, so it can send what node:http never would: a whole chunked response
// followed, in the same write, by the start of an unsolicited second one. Before the response
// reader was one piece, the rule was checked only after the end of a chunked body had already
// handed the connection back to the pool, so the next request went out on it.
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import { silentLogger } from '../../src/core/log.ts';
import { validateProxyConfig } from '../../src/proxy/config.ts';
import { startProxy, type RunningProxy } from '../../src/proxy/proxy.ts';
import { askThrough, portOf } from '../helpers/running-proxy.ts';

const CHUNKED_THEN_MORE =
  'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n' +
  'HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmug';
const PLAIN = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok';

/** One request on its own connection through the outbound listener; the raw answer. */
const ask = (port: number, upstream: number, path: string): Promise<string> =>
  askThrough(port, upstream, path, (got) => /\r\n\r\n[^]*ok(\r\n0\r\n\r\n)?$/.test(got));

describe('an upstream connection out of step is not reused', () => {
  let proxy: RunningProxy;
  let upstream: net.Server;
  let upstreamPort: number;
  /** The upstream connection each request arrived on (by the order they were accepted). */
  const seen: number[] = [];
  before(async () => {
    let accepted = 0;
    upstream = net.createServer((socket) => {
      const id = ++accepted;
      let buf = '';
      socket.setEncoding('latin1');
      socket.on('data', (d: string) => {
        buf += d;
        let end: number;
        while ((end = buf.indexOf('\r\n\r\n')) !== -1) {
          const head = buf.slice(0, end);
          buf = buf.slice(end + 4);
          seen.push(id);
          socket.write(head.includes(' /extra ') ? CHUNKED_THEN_MORE : PLAIN);
        }
      });
      socket.on('error', () => {});
    });
    upstream.listen(0, '127.0.0.1');
    await once(upstream, 'listening');
    upstreamPort = (upstream.address() as net.AddressInfo).port;
    proxy = await startProxy(
      validateProxyConfig({
        inboundListen: '127.0.0.1:0',
        outboundListen: '127.0.0.1:0',
        adminListen: '127.0.0.1:0',
      }),
      silentLogger,
    );
  });
  after(async () => {
    await proxy.shutdown(100);
    upstream.close();
  });

  it('after a chunked response with bytes past its end, the next request goes on a new connection', async () => {
    const outbound = portOf(proxy, 'outbound');
    const first = await ask(outbound, upstreamPort, '/extra');
    assert.match(first, /^HTTP\/1\.1 200 [^]*\r\n2\r\nok\r\n0\r\n\r\n$/);
    assert.doesNotMatch(first, /smug/);
    const second = await ask(outbound, upstreamPort, '/next');
    assert.match(second, /^HTTP\/1\.1 200 [^]*ok$/);
    assert.equal(seen.length, 2);
    assert.notEqual(seen[1], seen[0], 'the second request went out on the connection that was out of step');
  });
});
