// One client address must not take every connection of the control plane's HTTP API: with the
// bound reached, a newcomer from another address gets room (the oldest connection of the address
// holding the most is closed), and only an address that already holds the most is refused. Before,
// 512 silent connections from one address (renewed as the head timeout closed them) kept every
// other client out: proxies' trace exports, Prometheus, the CLI.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';
import { startStateControlPlane } from '../helpers/state-control-plane.ts';

async function startPlane(t: { after(fn: () => unknown): void }, maxConnections: number): Promise<number> {
  return (await startStateControlPlane(t, () => ({ httpLimits: { maxConnections } }))).httpPort;
}

async function open(port: number, from: string): Promise<Socket> {
  const socket = connect({ port, host: '127.0.0.1', localAddress: from });
  socket.on('error', () => {});
  await once(socket, 'connect');
  return socket;
}

/** GET `path` on a new connection from `from`: the raw answer ('' when closed without one). */
async function get(port: number, from: string, path: string): Promise<string> {
  const socket = await open(port, from);
  let text = '';
  socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
  socket.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
  const timer = setTimeout(() => socket.destroy(), 5000);
  await once(socket, 'close');
  clearTimeout(timer);
  return text;
}

const closedSoon = (s: Socket): Promise<boolean> =>
  s.destroyed || s.readableEnded
    ? Promise.resolve(true)
    : Promise.race([
        once(s, 'close').then(() => true),
        new Promise<boolean>((r) => setTimeout(() => r(false), 5000)),
      ]);

test('an address that holds every connection of the HTTP API does not keep another one out', async (t) => {
  const port = await startPlane(t, 8);
  const attacker: Socket[] = [];
  for (let i = 0; i < 8; i++) attacker.push(await open(port, '127.0.0.2'));
  t.after(() => attacker.forEach((s) => s.destroy()));

  const answer = await get(port, '127.0.0.1', '/healthz');
  // Served: an answer, 200 once the plane has read its state, 503 "syncing" on a loaded machine
  // before (a readiness poll first would open a connection of its own that the server may still
  // count when the attacker's come).
  assert.match(answer, /^HTTP\/1\.1 (200|503) /, 'the other address is served');
  assert.ok(await closedSoon(attacker[0]!), "the attacker's oldest connection made room");
  // The attacker takes the room back, but an address that holds the most is refused another one.
  // Which of its two new connections is refused depends on when the server sees the answered
  // connection's close (under load, after the first of them): exactly one is.
  const refill = await open(port, '127.0.0.2');
  const more = await open(port, '127.0.0.2');
  t.after(() => refill.destroy());
  t.after(() => more.destroy());
  const refused = await Promise.race([
    closedSoon(more).then((closed) => (closed ? more : null)),
    closedSoon(refill).then((closed) => (closed ? refill : null)),
  ]);
  assert.ok(refused !== null, 'a ninth connection from the attacker is closed');
  const kept = refused === more ? refill : more;
  assert.equal(
    [...attacker.slice(1), kept].filter((s) => s.destroyed).length,
    0,
    'its other connections stay',
  );
});
