// freeLoopbackPorts hands out listener ports outside the ephemeral range, so that no outgoing
// connection can take one between the pick and the child's listen (CI saw EADDRINUSE from that).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { test } from 'node:test';
import { freeLoopbackPorts } from '../../src/core/free-ports.ts';

const ephemeralStart = Number(
  readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0],
);

test('free loopback ports are distinct, below the ephemeral range, and bindable', async () => {
  for (let round = 0; round < 20; round++) {
    const ports = await freeLoopbackPorts(4);
    assert.equal(new Set(ports).size, 4);
    for (const port of ports) {
      assert.ok(port >= 20_000 && port < ephemeralStart, `port ${port} outside [20000, ${ephemeralStart})`);
      const server = net.createServer();
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, '127.0.0.1', resolve);
      });
      await new Promise((resolve) => server.close(resolve));
    }
  }
});

test('a port held by a listener is never handed out', async () => {
  const held: net.Server[] = [];
  for (let i = 0; i < 200; i++) {
    const server = net.createServer();
    const [port] = await freeLoopbackPorts(1);
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    held.push(server);
  }
  const heldPorts = new Set(held.map((s) => (s.address() as net.AddressInfo).port));
  try {
    const fresh = await freeLoopbackPorts(50);
    for (const port of fresh) assert.ok(!heldPorts.has(port), `port ${port} is held by a listener`);
  } finally {
    for (const s of held) s.close();
  }
});
