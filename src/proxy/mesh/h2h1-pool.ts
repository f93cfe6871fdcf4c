// The outbound pool of the mesh's own HTTP/2 connections (src/proxy/h2/, ALPN trellis-h2h1/1) that
// carry HTTP/1 requests to meshed endpoints: one long-lived mTLS connection per endpoint and
// expected identity, another only when every one is at the peer's MAX_CONCURRENT_STREAMS (up to
// MAX_PER_TARGET). A connection leaves the pool when it receives GOAWAY or closes, so new
// requests go to a fresh one while the streams in flight finish. Connections with no new stream
// for the idle timeout are closed. When discovery removes an endpoint (drainEndpoint), its
// connections leave the pool at once and drain: GOAWAY, closed when their streams are done, cut
// after the drain's grace.
//
// A connection counts as connected once the peer's SETTINGS arrived: in TLS 1.3 a server that
// refuses our certificate only closes the connection after our handshake completed, and that
// close must read as `tls-handshake-failed`, not as a reset of the first request.
import type { ConnectFailureReason } from '../errors.ts';
import { H2Connection } from '../h2/connection.ts';
import type { H2Limit } from '../h2/limits.ts';
import type { H2Stream, H2StreamHandler } from '../h2/stream.ts';
import type { Target } from '../../core/target.ts';
import { targetKey } from '../../core/target.ts';
import { closedAfterHandshake, connectMesh, type MeshClientContext } from './connect.ts';
import { ALPN_H2H1 } from './protocol.ts';
import { WaitQueue } from '../transport/wait-queue.ts';

const MAX_PER_TARGET = 4;
/**
 * Requests one endpoint's slot holds while they wait for a connection with room. A peer can
 * announce SETTINGS_MAX_CONCURRENT_STREAMS 0 (or keep every stream busy): its connections are
 * then open and never have room, and requests waited for it without end. Each waits at most
 * twice the connect timeout (connect-timeout), and past this many the next fails at once.
 */
export const MAX_WAITERS_PER_TARGET = 1024;

export type ConnCallback = (
  conn: H2Connection | null,
  reason: ConnectFailureReason | null,
  err?: Error,
) => void;

export interface MeshH2PoolOptions {
  readonly ctx: MeshClientContext;
  readonly connectTimeoutMs: number;
  /** Close a connection that opened no stream for this long (0: never). */
  readonly idleTimeoutMs: number;
  /** A connection's peer (`identity`) ran into a limit (src/proxy/h2/limits.ts): count and log it. */
  readonly onLimit?: (limit: H2Limit, message: string, identity: string) => void;
}

interface Slot {
  readonly address: Target;
  /** targetKey(address): what drainEndpoint is given. */
  readonly addressKey: string;
  readonly identity: string;
  readonly conns: H2Connection[];
  connecting: number;
  /** Requests waiting for a connection with room, each until its deadline. */
  readonly waiters: WaitQueue<ConnCallback>;
  /**
   * The drain's grace once its endpoint left discovery (0: it has not): the slot is out of the
   * pool, and a connection still being made drains once it served the slot's waiters.
   */
  draining: number;
}

export class MeshH2Pool {
  private readonly opts: MeshH2PoolOptions;
  private readonly slots = new Map<string, Slot>();
  private closed = false;

  constructor(opts: MeshH2PoolOptions) {
    this.opts = opts;
  }

  /** The pool's key for an endpoint and the identity it must prove (made once by each user). */
  static keyOf(address: Target, identity: string): string {
    return `${targetKey(address)} ${identity}`;
  }

  /**
   * Opens a stream at once on a connected connection with room to the endpoint under `key`
   * (keyOf; the common case once warm: no callback, no promise); null when there is none (use
   * `connection`).
   */
  requestNow(
    key: string,
    fields: readonly string[],
    endStream: boolean,
    handler: H2StreamHandler,
  ): H2Stream | null {
    const slot = this.slots.get(key);
    if (slot === undefined) return null;
    for (const conn of slot.conns) {
      if (conn.hasRoom()) return conn.request(fields, endStream, handler);
    }
    return null;
  }

  /** Calls `cb` with a connected connection that has room, connecting one when needed. */
  connection(
    address: Target,
    identity: string,
    cb: ConnCallback,
    key: string = MeshH2Pool.keyOf(address, identity),
  ): void {
    if (this.closed) {
      cb(null, 'connect-failed', new Error('the proxy is shutting down'));
      return;
    }
    let slot = this.slots.get(key);
    if (slot === undefined) {
      slot = {
        address,
        addressKey: targetKey(address),
        identity,
        conns: [],
        connecting: 0,
        waiters: new WaitQueue(MAX_WAITERS_PER_TARGET),
        draining: 0,
      };
      this.slots.set(key, slot);
    }
    for (const conn of slot.conns) {
      if (conn.hasRoom()) {
        cb(conn, null);
        return;
      }
    }
    // Twice the connect timeout: a connection being made fails its waiters itself, with its reason.
    const ms = 2 * this.opts.connectTimeoutMs;
    const added = slot.waiters.add(cb, ms, () =>
      cb(
        null,
        'connect-timeout',
        new Error(`no connection with room for a stream to ${key} within ${ms} ms`),
      ),
    );
    if (!added) {
      cb(null, 'connect-failed', new Error(`${MAX_WAITERS_PER_TARGET} requests already wait for ${key}`));
      return;
    }
    if (slot.connecting === 0 && slot.conns.length < MAX_PER_TARGET) this.connect(key, slot);
  }

  private connect(key: string, slot: Slot): void {
    const { address, identity } = slot;
    slot.connecting++;
    const { ctx, connectTimeoutMs } = this.opts;
    connectMesh(ctx, address, identity, ALPN_H2H1, connectTimeoutMs, (socket, reason, err) => {
      if (socket === null) {
        slot.connecting--;
        this.failWaiters(key, slot, reason ?? 'connect-failed', err);
        return;
      }
      let ready = false;
      const onLimit = this.opts.onLimit;
      const conn = new H2Connection(socket, {
        role: 'client',
        peer: identity, // the queue limits count per peer identity
        ...(onLimit !== undefined ? { onLimit: (l, m) => onLimit(l, m, identity) } : {}),
        onReady: () => {
          ready = true;
          slot.connecting--;
          if (this.closed) {
            conn.shutdown();
            return;
          }
          slot.conns.push(conn);
          this.watchIdle(conn);
          this.serve(slot);
          if (slot.draining > 0) drain(conn, slot.draining);
        },
        onRoom: () => this.serve(slot),
        onGoaway: () => this.remove(key, slot, conn),
        onClose: (closeErr) => {
          if (ready) {
            this.remove(key, slot, conn);
            return;
          }
          slot.connecting--;
          const why = closedAfterHandshake(ctx, socket) ?? 'connect-failed';
          this.failWaiters(
            key,
            slot,
            why,
            closeErr ?? new Error(`mTLS connection to ${key} closed before HTTP/2 started`),
          );
        },
      });
      socket.resume();
    });
  }

  /** Hands connections with room to waiting requests. */
  private serve(slot: Slot): void {
    while (slot.waiters.size > 0) {
      const conn = slot.conns.find((c) => c.hasRoom());
      if (conn === undefined) return;
      slot.waiters.shift()!(conn, null);
    }
  }

  private failWaiters(key: string, slot: Slot, reason: ConnectFailureReason, err?: Error): void {
    const waiters = slot.waiters.takeAll();
    if (slot.conns.length === 0 && slot.connecting === 0) this.forgetSlot(key, slot);
    for (const w of waiters) w(null, reason, err);
  }

  private remove(key: string, slot: Slot, conn: H2Connection): void {
    const i = slot.conns.indexOf(conn);
    if (i >= 0) slot.conns.splice(i, 1);
    if (slot.conns.length === 0 && slot.connecting === 0 && slot.waiters.size === 0)
      this.forgetSlot(key, slot);
    else if (slot.waiters.size > 0 && slot.connecting === 0 && !this.closed) {
      // Requests still wait (the connection went away under them): connect anew.
      this.connect(key, slot);
    }
  }

  /** Takes the slot out of the map, unless another (after a drain) has taken its key. */
  private forgetSlot(key: string, slot: Slot): void {
    if (this.slots.get(key) === slot) this.slots.delete(key);
  }

  /**
   * The endpoint at `addressKey` (targetKey) left discovery: its connections leave the pool and
   * drain (GOAWAY; each closes when its streams are done, or after `graceMs`). Requests to it
   * that wait for a connection still get one; it drains once they are on it.
   */
  drainEndpoint(addressKey: string, graceMs: number): void {
    for (const [key, slot] of this.slots) {
      if (slot.addressKey !== addressKey) continue;
      this.slots.delete(key);
      slot.draining = Math.max(1, graceMs);
      for (const conn of slot.conns) drain(conn, slot.draining);
    }
  }

  /** Closes the connection once a whole idle period passed without a new stream. */
  private watchIdle(conn: H2Connection): void {
    const ms = this.opts.idleTimeoutMs;
    if (ms <= 0) return;
    let seen = -1;
    const timer = setInterval(() => {
      if (conn.closed) clearInterval(timer);
      else if (conn.active === 0 && conn.streamsOpened === seen) {
        clearInterval(timer);
        conn.shutdown();
      } else seen = conn.streamsOpened;
    }, ms);
    timer.unref();
  }

  /** Drain: no new connections; the open ones close once their streams are done. */
  close(): void {
    this.closed = true;
    for (const [key, slot] of this.slots) {
      for (const conn of slot.conns) conn.shutdown();
      this.failWaiters(key, slot, 'connect-failed', new Error('the proxy is shutting down'));
    }
    this.slots.clear();
  }
}

/** GOAWAY now: the connection closes once its streams are done, and is cut after `graceMs`. */
function drain(conn: H2Connection, graceMs: number): void {
  conn.shutdown();
  if (!conn.closed) setTimeout(() => conn.destroy(null), graceMs).unref();
}
