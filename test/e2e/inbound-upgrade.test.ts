// Upgraded connections (WebSocket) through the inbound listener, attacked (issue 9, found by the
// red team): the app's first tunnel bytes, arriving with its 101, must reach the client as they are
// (they were parsed as another response head and a 502 was written into the tunnel); a silent
// tunnel closes after timeouts.idleMs (it never did, and pinned the listener's connection slots);
// and a policy change that denies the request an upgrade began with closes its tunnel (it stayed).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { startMeshWorld } from '../helpers/mesh-pki.ts';
import { rawExchange } from '../helpers/attack.ts';
import { portOf } from '../helpers/running-proxy.ts';
import type { Decision, InboundAuthorizer } from '../../src/proxy/policy/types.ts';

const UPGRADE_REQUEST =
  'GET /ws HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n';

/** An app that answers an upgrade with 101 and, in the same write, its first tunnel bytes; then echoes. */
async function upgradeApp(first: string): Promise<{ port: number; close(): void }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    let head = '';
    const onHead = (d: Buffer) => {
      head += d.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      s.removeListener('data', onHead);
      s.write(
        `HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n${first}`,
      );
      s.on('data', (more: Buffer) => s.write(more));
    };
    s.on('data', onHead);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    close() {
      server.close();
      for (const s of sockets) s.destroy();
    },
  };
}

test('an upgraded connection through the inbound listener', { timeout: 60_000 }, async (t) => {
  const world = await startMeshWorld();
  t.after(() => world.close());
  const first = 'frame with a newline\nin it\r\n';
  const app = await upgradeApp(first);
  t.after(() => app.close());

  await t.test("the app's first tunnel bytes, sent with its 101, reach the client as they are", async () => {
    const proxy = await world.proxy({ identity: null, app: app.port });
    const r = await rawExchange(portOf(proxy, 'inbound'), [UPGRADE_REQUEST, 'echo me'], {
      gapMs: 100,
      until: /echo me/,
      timeoutMs: 5000,
    });
    const body = r.text.slice(r.text.indexOf('\r\n\r\n') + 4);
    assert.match(r.text, /^HTTP\/1\.1 101 /);
    assert.equal(body, first + 'echo me');
    assert.doesNotMatch(r.text, /502/);
  });

  await t.test('a silent tunnel is closed after timeouts.idleMs', async () => {
    const proxy = await world.proxy({
      identity: null,
      app: app.port,
      config: { timeouts: { idleMs: 1000, drainGraceMs: 200 } },
    });
    const r = await rawExchange(portOf(proxy, 'inbound'), [UPGRADE_REQUEST], { timeoutMs: 8000 });
    assert.ok(r.closed, 'the proxy closed the tunnel');
    assert.match(r.text, /^HTTP\/1\.1 101 /);
    assert.ok(r.ms >= 900 && r.ms < 5000, `closed after ${r.ms} ms`);
  });

  await t.test('a policy change that denies the upgrade request closes its tunnel', async () => {
    const listeners = new Set<() => void>();
    let allow = true;
    const decide = (): Decision => ({
      allowed: allow,
      server: 'default/app',
      policy: allow ? 'default/open' : 'default:deny',
      audited: false,
    });
    const authorizer: InboundAuthorizer = {
      checkConnection: decide,
      checkRequest: decide,
      protocolOf: () => null,
      onChange: (l) => {
        listeners.add(l);
        return () => listeners.delete(l);
      },
      close() {},
    };
    const proxy = await world.proxy({ identity: null, app: app.port, authorizer });
    const s = net.connect({ host: '127.0.0.1', port: portOf(proxy, 'inbound') });
    s.on('error', () => {});
    await once(s, 'connect');
    s.write(UPGRADE_REQUEST);
    let got = '';
    s.on('data', (d: Buffer) => (got += d.toString('latin1')));
    const deadline = Date.now() + 5000;
    while (!got.includes(first) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.match(got, /^HTTP\/1\.1 101 /);
    const closed = once(s, 'close');
    allow = false;
    for (const l of listeners) l();
    const timer = setTimeout(() => s.destroy(new Error('still open 3 s after the policy change')), 3000);
    await closed;
    clearTimeout(timer);
    assert.equal(s.errored, null, 'closed by the proxy, not by the test');
  });
});
