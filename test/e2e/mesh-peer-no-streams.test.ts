// A meshed peer (a valid certificate for its identity) that accepts the client proxy's mesh
// connections and announces SETTINGS_MAX_CONCURRENT_STREAMS 0: the pool of the mesh's own HTTP/2
// (src/proxy/mesh/h2h1-pool.ts) opens its connections to it and then has no room on any of them.
// Each request to that peer used to wait for room without end, its waiter kept in the pool even
// after the app gave up (and the proxy has no response timeout by default): the app's requests
// hung, and the pool grew with every request. A request now waits for room at most twice the
// connect timeout (timeouts.connectMs), and the waiters are bounded.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { once } from 'node:events';
import { CLIENT_PREFACE, FrameType, FrameWriter, Setting } from '../../src/proxy/h2/frames.ts';
import { identityFor, idOf, issueLeaf, startMeshWorld } from '../helpers/mesh-pki.ts';
import { portOf } from '../helpers/running-proxy.ts';

/** A raw GET through the outbound listener: the status line, or 'no answer' after `ms`. */
function statusThrough(port: number, host: string, ms: number): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () =>
      s.write(`GET http://${host}/x HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`),
    );
    let got = '';
    s.setEncoding('latin1');
    s.on('data', (d: string) => (got += d));
    s.on('error', () => {});
    const timer = setTimeout(() => s.destroy(), ms);
    s.on('close', () => {
      clearTimeout(timer);
      resolve(got === '' ? 'no answer' : got.slice(0, got.indexOf('\r\n')));
    });
  });
}

test('a meshed peer that allows no stream: requests to it fail after twice the connect timeout instead of waiting forever', async (t) => {
  const world = await startMeshWorld();
  t.after(() => world.close());
  const leaf = await issueLeaf(world.ca, idOf('stingy'));
  const conns = new Set<tls.TLSSocket>();
  const peer = tls.createServer(
    { key: leaf.keyPem, cert: leaf.certPem, ALPNProtocols: ['trellis-h2h1/1'] },
    (socket) => {
      conns.add(socket);
      socket.on('error', () => {});
      socket.on('close', () => conns.delete(socket));
      const w = new FrameWriter();
      w.settings([[Setting.MAX_CONCURRENT_STREAMS, 0]]);
      socket.write(w.take()!);
      let seenPreface = false;
      socket.on('data', (d: Buffer) => {
        if (seenPreface) return;
        seenPreface = d.subarray(0, CLIENT_PREFACE.length).equals(CLIENT_PREFACE);
        const ack = new FrameWriter();
        ack.frame(FrameType.SETTINGS, 1, 0, null); // acknowledge the client's SETTINGS
        socket.write(ack.take()!);
      });
    },
  );
  peer.listen(0, '127.0.0.1');
  await once(peer, 'listening');
  t.after(() => {
    for (const s of conns) s.destroy();
    peer.close();
  });
  await world.register('stingy', 'stingy-1', (peer.address() as net.AddressInfo).port, idOf('stingy'));
  const client = await world.proxy({
    identity: await identityFor(world, 'caller'),
    config: { timeouts: { connectMs: 500, drainGraceMs: 200 } },
  });
  const out = portOf(client, 'outbound');
  const host = 'stingy.default.svc.cluster.local:8080';
  const answers = await Promise.all(Array.from({ length: 5 }, () => statusThrough(out, host, 6000)));
  for (const a of answers) assert.match(a, /^HTTP\/1\.1 50[234] /, `got: ${a}`);
});
