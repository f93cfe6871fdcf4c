// Free loopback ports for listeners that a child process opens later (`trellis demo`'s apps, the
// tests' workloads). Asking the kernel for port 0 and closing it hands out a port from the
// ephemeral range, the same range every outgoing connection on the machine draws its source port
// from: between our close and the child's listen, any connect may take it, and the child then fails
// with EADDRINUSE (seen in CI). So ports come from below the ephemeral range, where only listeners
// live, each one checked by binding it.
import { readFileSync } from 'node:fs';
import net from 'node:net';

/** Lowest port handed out: above the well-known and the usual registered service ports. */
const LOW = 20_000;

/** The first port of the kernel's ephemeral range (Linux default 32768). */
function ephemeralStart(): number {
  try {
    const [first] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/);
    const n = Number(first);
    if (Number.isInteger(n) && n > 0) return n;
  } catch {
    // Not Linux: the IANA dynamic range starts at 49152.
    return 49_152;
  }
  return 32_768;
}

function bind(server: net.Server, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const fail = () => resolve(false);
    server.once('error', fail);
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => {
      server.off('error', fail);
      resolve(true);
    });
  });
}

/**
 * `count` distinct ports free on 127.0.0.1 a moment ago, outside the ephemeral range when it leaves
 * room below it (else from the kernel). All are held together while they are picked.
 */
export async function freeLoopbackPorts(count: number): Promise<number[]> {
  const high = ephemeralStart();
  const servers: net.Server[] = [];
  try {
    const ports: number[] = [];
    for (let tries = 0; ports.length < count; tries++) {
      const server = net.createServer();
      const below = high - LOW > 1_000 && tries < count * 50;
      const port = below ? LOW + Math.floor(Math.random() * (high - LOW)) : 0;
      if (ports.includes(port) || !(await bind(server, port))) continue;
      servers.push(server);
      ports.push((server.address() as net.AddressInfo).port);
    }
    return ports;
  } finally {
    await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  }
}
