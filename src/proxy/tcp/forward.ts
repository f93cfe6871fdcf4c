// Opaque TCP: bytes both ways, half-close respected (one side's FIN becomes the other side's FIN),
// backpressure through pipe(). Also used to splice an upgraded HTTP/1 connection (WebSocket) and
// a CONNECT tunnel whose contents are opaque.
import net from 'node:net';
import type { Target } from '../transport/target.ts';

/**
 * Pipes a and b into each other until both directions have ended or either side errors.
 *
 * Each socket closes by itself (autoDestroy) once it has both read its peer's FIN and flushed its
 * own FIN, so a half-closed direction keeps carrying bytes the other way for as long as needed,
 * and nothing still buffered for a peer is thrown away. When one socket closes, the other can no
 * longer deliver what it reads: it is closed too, but only after what it still has to write.
 */
export function splice(a: net.Socket, b: net.Socket, toB: Buffer | null, toA: Buffer | null): void {
  const destroyBoth = () => {
    a.destroy();
    b.destroy();
  };
  a.on('error', destroyBoth);
  b.on('error', destroyBoth);
  a.once('close', () => closeAfterFlush(b));
  b.once('close', () => closeAfterFlush(a));
  if (toB !== null && toB.length > 0) b.write(toB);
  if (toA !== null && toA.length > 0) a.write(toA);
  a.pipe(b);
  b.pipe(a);
  if (a.isPaused()) a.resume();
  if (b.isPaused()) b.resume();
}

/** Closes a socket whose peer is gone: at once when its writes were cut short, else once they are flushed. */
function closeAfterFlush(s: net.Socket): void {
  if (s.destroyed) return;
  if (!s.writableEnded || s.writableFinished) s.destroy();
  else s.once('finish', () => s.destroy());
}

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

/**
 * Connects to target, then splices; `onFail` is called (and client closed) when the connection
 * cannot be made.
 */
export function forwardTcp(
  client: net.Socket,
  target: Target,
  initial: Buffer | null,
  opts: ConnectOptions,
  onFail: (reason: ConnectFailure, err?: Error) => void,
): void {
  if (client.destroyed) return; // gone while its protocol was being detected
  client.pause();
  client.on('error', () => {});
  const attempt = connectTcp(target, opts.connectTimeoutMs, (upstream, reason, err) => {
    client.removeListener('close', onClientClose);
    if (upstream === null) {
      client.destroy();
      onFail(reason!, err);
      return;
    }
    splice(client, upstream, initial, null);
  });
  const onClientClose = () => attempt.cancel();
  client.once('close', onClientClose);
}
