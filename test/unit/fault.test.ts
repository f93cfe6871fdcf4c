// A fault of the proxy's own code stays with the connection it happened on (src/proxy/fault.ts):
// a handler that throws from a socket event answers 500 internal-error when it still can, closes
// that connection, counts the fault, and the proxy goes on serving everyone else. The throws are
// injected into a real in-process proxy by patching the handlers' methods; before the guards,
// each of these throws ended the process (the test runner reported the uncaught exception).
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { silentLogger } from '../../src/core/log.ts';
import { validateProxyConfig } from '../../src/proxy/config.ts';
import { H1Session } from '../../src/proxy/http/h1-session.ts';
import { H1Client } from '../../src/proxy/http/h1-client.ts';
import { startProxy, type RunningProxy } from '../../src/proxy/proxy.ts';
import { askThrough, metric, portOf } from '../helpers/running-proxy.ts';

/** Replaces one method of H1Session (or of its upstream side, H1Client) while `when` holds, until restored. */
function throwOn(
  method: string,
  when: (session: object, args: unknown[]) => boolean,
  of: object = H1Session.prototype,
): () => void {
  const proto = of as Record<string, (...a: unknown[]) => unknown>;
  const original = proto[method]!;
  proto[method] = function (this: object, ...args: unknown[]) {
    if (when(this, args)) throw new Error(`injected fault in ${method}`);
    return original.apply(this, args);
  };
  return () => {
    proto[method] = original;
  };
}

/** One request on its own connection through the outbound listener; the raw answer. */
function ask(port: number, upstream: number, path: string): Promise<string> {
  return askThrough(
    port,
    upstream,
    path,
    (got) => /\r\n\r\n/.test(got) && /content-length: 0|ok$/i.test(got),
  );
}

describe('faults of the proxy own code', () => {
  let proxy: RunningProxy;
  let app: http.Server;
  let appPort: number;
  let outbound: number;
  before(async () => {
    app = http.createServer((_req, res) => res.end('ok'));
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    appPort = (app.address() as net.AddressInfo).port;
    proxy = await startProxy(
      validateProxyConfig({
        inboundListen: '127.0.0.1:0',
        outboundListen: '127.0.0.1:0',
        adminListen: '127.0.0.1:0',
        timeouts: { requestHeadMs: 300 },
      }),
      silentLogger,
    );
    outbound = portOf(proxy, 'outbound');
  });
  after(async () => {
    await proxy.shutdown(100);
    app.close();
  });

  const faults = () => metric(proxy, 'trellis_proxy_errors_total', { reason: 'internal-error' });
  const isPath = (path: string) => (s: object) =>
    (s as { req: { target: string } | null }).req?.target.endsWith(path) === true;

  it('a throw while handling the request answers 500 internal-error on that connection only', async () => {
    const before = faults();
    const restore = throwOn('connectUpstream', (s) => isPath('/boom')(s));
    try {
      const answer = await ask(outbound, appPort, '/boom');
      assert.match(answer, /^HTTP\/1\.1 500 /);
      assert.match(answer, /trellis-proxy-error: internal-error/);
      assert.equal(faults(), before + 1);
      assert.match(await ask(outbound, appPort, '/fine'), /^HTTP\/1\.1 200 [^]*ok$/);
    } finally {
      restore();
    }
  });

  it('a throw while reading the upstream response (an upstream socket event) is contained too', async () => {
    const before = faults();
    const restore = throwOn('onResponseHead', (s) => isPath('/boom-up')(s), H1Client.prototype);
    try {
      const answer = await ask(outbound, appPort, '/boom-up');
      assert.match(answer, /^HTTP\/1\.1 500 [^]*trellis-proxy-error: internal-error/);
      assert.equal(faults(), before + 1);
      assert.match(await ask(outbound, appPort, '/fine'), /^HTTP\/1\.1 200 [^]*ok$/);
    } finally {
      restore();
    }
  });

  it('a throw at a timer (the request head timeout) closes that connection and nothing else', async () => {
    const before = faults();
    const restore = throwOn('onHeadTimeout', () => true);
    try {
      // An incomplete head: the head timer fires after 300 ms, and its handler throws.
      const half = net.connect(outbound, '127.0.0.1', () => half.write('GET http://127.0.0.1/ HTTP/1.1\r\n'));
      half.on('error', () => {});
      const closed = new Promise((r) => half.once('close', r));
      await closed;
      assert.equal(faults(), before + 1);
      assert.match(await ask(outbound, appPort, '/fine'), /^HTTP\/1\.1 200 [^]*ok$/);
    } finally {
      restore();
    }
  });
});
