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

/**
 * Connects to target, then splices; `onFail` is called (and client closed) when the connection
 * cannot be made.
 */
export function forwardTcp(
  client: net.Socket,
  target: Target,
  initial: Buffer | null,
  opts: ConnectOptions,
  onFail: (reason: 'connect-failed' | 'connect-timeout', err?: Error) => void,
): void {
  if (client.destroyed) return; // gone while its protocol was being detected
  client.pause();
  let upstream: net.Socket;
  try {
    // net.connect throws at once on a bad port or host: the data path must not.
    upstream = net.connect({ host: target.host, port: target.port, allowHalfOpen: true, noDelay: true });
  } catch (err) {
    client.destroy();
    onFail('connect-failed', err as Error);
    return;
  }
  let settled = false;
  const timer =
    opts.connectTimeoutMs > 0
      ? setTimeout(() => {
          if (settled) return;
          settled = true;
          upstream.destroy();
          client.destroy();
          onFail('connect-timeout');
        }, opts.connectTimeoutMs)
      : null;
  const onClientClose = () => {
    if (!settled) {
      settled = true;
      if (timer !== null) clearTimeout(timer);
      upstream.destroy();
    }
  };
  client.once('close', onClientClose);
  client.on('error', () => {});
  upstream.once('error', (err) => {
    if (settled) return;
    settled = true;
    if (timer !== null) clearTimeout(timer);
    client.destroy();
    onFail('connect-failed', err);
  });
  upstream.once('connect', () => {
    if (settled) return;
    settled = true;
    if (timer !== null) clearTimeout(timer);
    client.removeListener('close', onClientClose);
    splice(client, upstream, initial, null);
  });
}
