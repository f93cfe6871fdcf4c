// A plain TCP connection to one address, with a connect timeout: the endpoint-level connect that
// the opaque path, CONNECT tunnels and the HTTP/1 pool share (balancing across endpoints is
// src/proxy/outbound/balance.ts; mTLS to a meshed endpoint is src/proxy/mesh/connect.ts).
import net from 'node:net';
import type { Target } from '../../core/target.ts';

export interface ConnectOptions {
  readonly connectTimeoutMs: number;
}

export type ConnectFailure = 'connect-failed' | 'connect-timeout';

/**
 * Opens a TCP connection to target with a timeout; `cb` gets the connected socket (paused, so
 * nothing it receives is lost before a reader is attached), or why it could not be made. Never
 * throws: a bad host or port is a connect failure.
 */
export function connectTcp(
  target: Target,
  timeoutMs: number,
  cb: (socket: net.Socket | null, reason: ConnectFailure | null, err?: Error) => void,
): { cancel(): void } {
  let socket: net.Socket;
  let settled = false;
  try {
    socket = net.connect({ host: target.host, port: target.port, allowHalfOpen: true, noDelay: true });
  } catch (err) {
    queueMicrotask(() => cb(null, 'connect-failed', err as Error));
    return { cancel: () => {} };
  }
  socket.pause();
  const timer =
    timeoutMs > 0
      ? setTimeout(() => {
          if (settled) return;
          settled = true;
          socket.destroy();
          cb(null, 'connect-timeout');
        }, timeoutMs)
      : null;
  const onError = (err: Error) => {
    if (settled) return;
    settled = true;
    if (timer !== null) clearTimeout(timer);
    cb(null, 'connect-failed', err);
  };
  socket.once('error', onError);
  socket.once('connect', () => {
    if (settled) return;
    settled = true;
    if (timer !== null) clearTimeout(timer);
    socket.removeListener('error', onError);
    socket.on('error', () => {});
    cb(socket, null);
  });
  return {
    cancel() {
      if (settled) return;
      settled = true;
      if (timer !== null) clearTimeout(timer);
      socket.destroy();
    },
  };
}
