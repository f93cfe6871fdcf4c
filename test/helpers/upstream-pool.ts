// Helpers for tests of the proxy's HTTP/1 upstream pool (src/proxy/http/upstream-pool.ts) on real
// loopback sockets: a server that counts connections, an exchange that owns a connection and
// ignores what it hears, an acquire as a promise, and a bounded wait.
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import type { H1ResponseSink } from '../../src/proxy/http/h1-upstream.ts';
import type { UpstreamPool } from '../../src/proxy/http/upstream-pool.ts';
import type { UpstreamConn } from '../../src/proxy/http/upstream-conn.ts';

/** A TCP server that counts connections and tells when each closes. */
export async function countingServer(onSocket: (socket: net.Socket) => void = () => {}) {
  const open = new Set<net.Socket>();
  let accepted = 0;
  const server = net.createServer((socket) => {
    accepted++;
    open.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => open.delete(socket));
    onSocket(socket);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    target: { host: '127.0.0.1', port: (server.address() as net.AddressInfo).port },
    open,
    get accepted() {
      return accepted;
    },
    close() {
      for (const s of open) s.destroy();
      server.close();
    },
  };
}

/** Waits (bounded) until `cond` holds; the time it took. */
export async function until(cond: () => boolean, what: string, ms = 3000): Promise<number> {
  const start = Date.now();
  while (!cond()) {
    assert.ok(Date.now() - start < ms, `${what} within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
  return Date.now() - start;
}

/** An exchange that owns a connection and ignores what it hears. */
export function owner(): H1ResponseSink {
  const none = () => {};
  return {
    onInterim: none,
    onResponseHead: () => true,
    onResponseData: none,
    onResponseEnd: none,
    onBadResponse: none,
    onResponseBroken: none,
    onUpstreamClosed: none,
    onRequestDrain: none,
    fault: none,
  };
}

export function acquire(pool: UpstreamPool, target: { host: string; port: number }): Promise<UpstreamConn> {
  return new Promise((resolve, reject) =>
    pool.acquire(target, owner(), (conn, reason) =>
      conn === null ? reject(new Error(String(reason))) : resolve(conn),
    ),
  );
}
