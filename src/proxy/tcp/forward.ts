// Opaque TCP: bytes both ways, half-close respected (one side's FIN becomes the other side's FIN),
// backpressure through pipe(). Also used to splice an upgraded HTTP/1 connection (WebSocket) and
// a CONNECT tunnel whose contents are opaque. A connection to a logical target connects to an
// endpoint that discovery picks for it, and once more to another when that connect fails.
import net from 'node:net';
import type { Target } from '../../core/target.ts';
import {
  connectBalanced,
  type BalancedConnectFailure,
  type Discovery,
  type MeshTcpConnector,
} from '../outbound/balance.ts';
import type { ConnectOptions } from './connect.ts';

/**
 * Pipes a and b into each other until both directions have ended or either side errors.
 *
 * Each socket closes by itself (autoDestroy) once it has both read its peer's FIN and flushed its
 * own FIN, so a half-closed direction keeps carrying bytes the other way for as long as needed,
 * and nothing still buffered for a peer is thrown away. When one socket closes, the other can no
 * longer deliver what it reads: it is closed too, but only after what it still has to write.
 * With no byte either way for `idleMs` (0: never), both are closed.
 */
export function splice(
  a: net.Socket,
  b: net.Socket,
  toB: Buffer | null,
  toA: Buffer | null,
  idleMs: number,
): void {
  armIdleTimeout(a, b, idleMs);
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

/**
 * Closes both ends of an opaque connection after `ms` without a byte either way (the client
 * socket's timer counts what it reads and what is written to it). disarm() hands the client to a
 * path with its own timers.
 */
export function armIdleTimeout(client: net.Socket, upstream: net.Socket, ms: number): { disarm(): void } {
  if (ms <= 0) return { disarm() {} };
  const onTimeout = (): void => {
    client.destroy();
    upstream.destroy();
  };
  client.setTimeout(ms);
  client.on('timeout', onTimeout);
  return {
    disarm() {
      client.setTimeout(0);
      client.removeListener('timeout', onTimeout);
    },
  };
}

export interface ForwardOptions extends ConnectOptions {
  /** A connection with no bytes either way for this long is closed (0 or absent: never). */
  readonly idleTimeoutMs?: number;
  /** Resolves logical targets to endpoints; null: every target is connected to as it is. */
  readonly discovery: Discovery | null;
  /** Reaches meshed endpoints over mTLS; null: this proxy has no identity. */
  readonly mesh?: MeshTcpConnector | null;
}

/**
 * Connects to target (an endpoint of it, when it is logical) for `client`, which is paused
 * meanwhile and whose close cancels the attempt: `then` gets the connected upstream (paused);
 * `onFail` is called (and client closed) when the connection cannot be made.
 */
export function connectForClient(
  client: net.Socket,
  target: Target,
  opts: ForwardOptions,
  then: (upstream: net.Socket) => void,
  onFail: (reason: BalancedConnectFailure, err?: Error) => void,
): void {
  if (client.destroyed) return; // gone while its protocol was being detected
  client.pause();
  client.on('error', () => {});
  let attempt: { cancel(): void } | null = null;
  const onClientClose = () => attempt?.cancel();
  client.once('close', onClientClose);
  attempt = connectBalanced(
    opts.discovery,
    target,
    opts.connectTimeoutMs,
    (upstream, _pick, reason, err) => {
      client.removeListener('close', onClientClose);
      if (upstream === null) {
        client.destroy();
        onFail(reason!, err);
        return;
      }
      then(upstream);
    },
    opts.mesh ?? null,
  );
}

/** connectForClient, then splices the two (`initial`: what the client sent before). */
export function forwardTcp(
  client: net.Socket,
  target: Target,
  initial: Buffer | null,
  opts: ForwardOptions,
  onFail: (reason: BalancedConnectFailure, err?: Error) => void,
): void {
  connectForClient(
    client,
    target,
    opts,
    (upstream) => splice(client, upstream, initial, null, opts.idleTimeoutMs ?? 0),
    onFail,
  );
}
