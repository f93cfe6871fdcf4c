// The control plane's gRPC port on a listener of its own: grpc-js's bindAsync accepts every
// connection and keeps it for as long as the client likes, even one that never sends a byte, so a
// caller could hold connections until the process ran out of file descriptors (then no proxy
// could connect, and the control plane could open no file). Here the port's connections are
// shared among client addresses up to `maxConnections` (connection-share.ts), a connection that
// sends nothing within `firstBytesMs` is closed, and the rest are handed to grpc-js (its
// connection injector). Both are counted in trellis_control_grpc_connections_closed_total{reason}
// and logged at most once per 10 s. grpc-js itself closes a connection without a call for
// `idleMs` (grpc.max_connection_idle_ms, set by destination/server.ts); a proxy's watches keep its
// own open, and a client that needs one again reconnects.
import net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../core/log.ts';
import { LogThrottle } from '../core/log-rate-limit.ts';
import { Registry } from '../core/prometheus.ts';
import { ConnectionShare } from './connection-share.ts';

export interface GrpcConnectionLimits {
  /** Connections held at once, shared among client addresses (a proxy holds one or two). */
  readonly maxConnections: number;
  /** From a connection's start to its first byte (the HTTP/2 preface): a silent one is closed. */
  readonly firstBytesMs: number;
  /** A connection without a call for this long is closed (GOAWAY). */
  readonly idleMs: number;
}

export const DEFAULT_GRPC_CONNECTION_LIMITS: GrpcConnectionLimits = {
  maxConnections: 10_000,
  firstBytesMs: 10_000,
  idleMs: 300_000,
};

export interface GrpcListener {
  readonly port: number;
  /** trellis_control_grpc_connections_closed_total. */
  metrics(): string;
  /** Stops accepting (grpc-js's shutdown ends the connections it was given). */
  close(): void;
}

/** Serves `server` on `listen` ("HOST:PORT", "[v6]:PORT") with `limits`. */
export async function listenGrpc(
  server: grpc.Server,
  listen: string,
  limits: GrpcConnectionLimits,
  log: Logger,
): Promise<GrpcListener> {
  const colon = listen.lastIndexOf(':');
  const host = listen.slice(0, colon).replace(/^\[|\]$/g, '');
  const port = Number(listen.slice(colon + 1));
  if (colon === -1 || !Number.isInteger(port) || port < 0 || port > 65535)
    throw new Error(`not a HOST:PORT address: ${listen}`);
  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  const closed = { cap: 0, silent: 0 };
  const throttle = new LogThrottle();
  const note = (reason: 'cap' | 'silent', remote: string): void => {
    closed[reason]++;
    throttle.note((skipped) =>
      log.warn(
        reason === 'cap'
          ? 'gRPC connection closed: too many open'
          : 'gRPC connection closed: it sent nothing',
        { max: limits.maxConnections, firstBytesMs: limits.firstBytesMs, remote, unloggedBefore: skipped },
      ),
    );
  };
  const share = new ConnectionShare(limits.maxConnections, (victim) => note('cap', victim.address));
  const listener = net.createServer((socket) => {
    socket.on('error', () => {}); // grpc-js has its own handlers once it holds the connection
    share.admit(socket);
    if (socket.destroyed) return;
    const timer = setTimeout(() => {
      // bytesRead counts what node:http2 read from the socket's handle too.
      if (socket.bytesRead > 0 || socket.destroyed) return;
      note('silent', socket.remoteAddress ?? '');
      socket.destroy();
    }, limits.firstBytesMs);
    timer.unref();
    socket.once('close', () => clearTimeout(timer));
    injector.injectConnection(socket);
  });
  await new Promise<void>((resolve, reject) => {
    listener.once('error', reject);
    listener.listen({ host, port }, () => {
      listener.off('error', reject);
      resolve();
    });
  });
  listener.on('error', (err: Error) => log.warn('gRPC listener error', { err }));
  return {
    port: (listener.address() as net.AddressInfo).port,
    metrics() {
      const registry = new Registry();
      const family = registry.counter(
        'trellis_control_grpc_connections_closed_total',
        'Connections to the gRPC port closed by its bounds: reason="cap" (it held its maximum: the new one, or the oldest of the client address holding the most), reason="silent" (no byte within the first-bytes deadline).',
        ['reason'],
      );
      family.labels('cap').inc(closed.cap);
      family.labels('silent').inc(closed.silent);
      return registry.render();
    },
    close() {
      listener.close();
      injector.destroy();
    },
  };
}
