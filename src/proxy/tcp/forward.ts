// Opaque TCP: bytes both ways, half-close respected (one side's FIN becomes the other side's FIN),
// backpressure through pipe(). Also used to splice an upgraded HTTP/1 connection (WebSocket) and
// a CONNECT tunnel whose contents are opaque. A connection to a logical target connects to an
// endpoint that discovery picks for it, and once more to another when that connect fails.
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Target } from '../../core/target.ts';
import {
  directPick,
  type DiscoveryFailureReason,
  type Pick,
  type PickOutcome,
  type ServiceDiscovery,
} from '../outbound/discovery.ts';
import type { ConnectFailureReason } from '../errors.ts';
import { meshIdentityOf } from '../mesh/protocol.ts';

/** Opens the mTLS opaque transport to a meshed endpoint (src/proxy/mesh/outbound.ts). */
export interface MeshTcpConnector {
  connectTcp(
    address: Target,
    identity: string,
    timeoutMs: number,
    cb: (socket: net.Socket | null, reason: ConnectFailureReason | null, err?: Error) => void,
  ): { cancel(): void };
}

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

export type BalancedConnectFailure = ConnectFailureReason | DiscoveryFailureReason;

/**
 * Connects to an endpoint of `target` that discovery picks (to target itself when it is not
 * logical or there is no discovery). A failed connect is tried once more on another endpoint.
 * `cb` gets the connected socket (paused) and its pick, whose done() runs with the connect time
 * when the socket closes, so the endpoint counts the connection as load while it lasts. With
 * `mesh`, an endpoint that discovery says is meshed is reached over the mTLS opaque transport.
 */
export function connectBalanced(
  discovery: ServiceDiscovery | null,
  target: Target,
  timeoutMs: number,
  cb: (
    socket: net.Socket | null,
    pick: Pick | null,
    reason: BalancedConnectFailure | null,
    err?: Error,
  ) => void,
  mesh: MeshTcpConnector | null = null,
): { cancel(): void } {
  let cancelled = false;
  let current: { pick: Pick; attempt: { cancel(): void } } | null = null;
  const onPicked = (outcome: PickOutcome, retried: boolean): void => {
    if ('error' in outcome) {
      cb(null, null, outcome.error);
      return;
    }
    const pick = outcome;
    if (cancelled) {
      pick.done();
      return;
    }
    const startedAt = performance.now();
    const identity = mesh === null ? null : meshIdentityOf(pick.endpoint);
    const connected = (socket: net.Socket | null, reason: ConnectFailureReason | null, err?: Error) => {
      current = null;
      if (socket === null) {
        pick.done();
        if (!retried && pick.key !== null && reason !== 'no-identity') start(pick.key, true);
        else cb(null, null, reason, err);
        return;
      }
      const rttMs = performance.now() - startedAt;
      socket.once('close', () => pick.done(rttMs));
      cb(socket, pick, null);
    };
    const attempt =
      identity === null || mesh === null
        ? connectTcp(pick.address, timeoutMs, connected)
        : mesh.connectTcp(pick.address, identity, timeoutMs, connected);
    current = { pick, attempt };
  };
  const start = (avoid: string | null, retried: boolean): void => {
    const outcome = discovery === null ? directPick(target) : discovery.pick(target, avoid);
    if (outcome instanceof Promise) {
      void outcome.then((o) => {
        if (cancelled) {
          if (!('error' in o)) o.done();
        } else onPicked(o, retried);
      });
    } else onPicked(outcome, retried);
  };
  start(null, false);
  return {
    cancel() {
      if (cancelled) return;
      cancelled = true;
      if (current !== null) {
        current.attempt.cancel();
        current.pick.done();
        current = null;
      }
    },
  };
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
  readonly discovery: ServiceDiscovery | null;
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
