// Opaque TCP: bytes both ways, half-close respected (one side's FIN becomes the other side's FIN),
// backpressure through pipe(). Also used to splice an upgraded HTTP/1 connection (WebSocket) and
// a CONNECT tunnel whose contents are opaque.
import net from 'node:net';
import type { Target } from '../transport/target.ts';

/** Pipes a and b into each other until both directions have ended or either side errors. */
export function splice(a: net.Socket, b: net.Socket, toB: Buffer | null, toA: Buffer | null): void {
  const destroyBoth = () => {
    a.destroy();
    b.destroy();
  };
  a.on('error', destroyBoth);
  b.on('error', destroyBoth);
  a.on('close', () => {
    if (!b.destroyed && !b.writableEnded) b.destroy();
  });
  b.on('close', () => {
    if (!a.destroyed && !a.writableEnded) a.destroy();
  });
  // When both directions are finished, close both sockets.
  let ended = 0;
  const onEnd = () => {
    if (++ended === 2) destroyBoth();
  };
  a.on('end', onEnd);
  b.on('end', onEnd);
  if (toB !== null && toB.length > 0) b.write(toB);
  if (toA !== null && toA.length > 0) a.write(toA);
  a.pipe(b);
  b.pipe(a);
  if (a.isPaused()) a.resume();
  if (b.isPaused()) b.resume();
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
  client.pause();
  const upstream = net.connect({ host: target.host, port: target.port, allowHalfOpen: true, noDelay: true });
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
