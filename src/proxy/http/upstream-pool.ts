// Keep-alive connections to HTTP/1 upstreams (upstream-conn.ts), pooled per target. A connection
// is either owned by one exchange or idle in the pool.
//
// A Connector makes byte connections of another kind under its own key (mTLS connections to
// meshed endpoints, for an Upgrade: src/proxy/mesh/outbound.ts); they are pooled and reused the
// same way.
//
// The pool counts the connections it has per key (connecting, in use, idle). An acquire with a
// HostLimit (acquireBounded: the mesh's HTTP/2-to-HTTP/1 bridge, where one peer connection carries
// many streams) opens no more than maxConnections: over it, the acquire waits for a connection to
// come back (a bounded queue, a bounded time; a waiter that gives up is withdrawn with cancel),
// and is refused with `upstream-busy` when the queue is full or the wait too long.
//
// When discovery removes an endpoint (drainEndpoint), what the pool has for its address leaves the
// pool: idle connections close at once, busy ones when their exchange ends (or after the drain's
// grace), and the next acquire for the address starts afresh.
import type net from 'node:net';
import type { ConnectFailureReason } from '../errors.ts';
import type { H1Limits } from './h1-parser.ts';
import type { H1ResponseSink } from './h1-upstream.ts';
import { UpstreamConn } from './upstream-conn.ts';
import type { Target } from '../../core/target.ts';
import { targetKey } from '../../core/target.ts';
import { connectTcp } from '../tcp/connect.ts';

export type AcquireCallback = (
  conn: UpstreamConn | null,
  error: ConnectFailureReason | null,
  err?: Error,
) => void;

/** Why a bounded acquire got no connection: a connect failure, or the upstream's limit. */
export type BoundedAcquireCallback = (
  conn: UpstreamConn | null,
  error: ConnectFailureReason | 'upstream-busy' | null,
  err?: Error,
) => void;

/** A bound on the connections to one upstream (acquireBounded). */
export interface HostLimit {
  /** Connections to the upstream at once: connecting, in use and idle. */
  readonly maxConnections: number;
  /** Acquires that may wait for a connection when there are that many; more are refused. */
  readonly maxWaiting: number;
  /** How long an acquire may wait before it is refused. */
  readonly waitTimeoutMs: number;
}

/** Makes connections the pool keeps under `key` (instead of plain TCP to the target). */
export interface Connector {
  readonly key: string;
  /** Connects; `cb` gets a connected socket (paused), or why it could not. */
  connect(cb: (socket: net.Socket | null, reason: ConnectFailureReason | null, err?: Error) => void): void;
}

export interface PoolOptions {
  /** The limits a response head is parsed with. */
  readonly limits: H1Limits;
  readonly maxIdlePerHost: number;
  readonly idleTimeoutMs: number;
  readonly connectTimeoutMs: number;
}

/** An acquire waiting for a connection under a HostLimit. */
interface Waiter {
  readonly host: PoolHost;
  readonly target: Target;
  readonly owner: H1ResponseSink;
  readonly cb: BoundedAcquireCallback;
  readonly connector: Connector | undefined;
  timer: NodeJS.Timeout | null;
}

/** What the pool has under one key. Each connection knows its Host (UpstreamConn.host). */
export class PoolHost {
  readonly key: string;
  /** The address its connections go to (targetKey): what drainEndpoint is given. */
  readonly address: string;
  readonly idle: UpstreamConn[] = [];
  /** Connections counted under the key: connecting, in use and idle. */
  open = 0;
  /** Its connections that are connected and counted (drainEndpoint closes the busy ones late). */
  readonly conns = new Set<UpstreamConn>();
  /** Bounded acquires waiting for a connection, oldest first. */
  readonly waiters = new Set<Waiter>();
  /** Its endpoint left discovery: out of the pool, each connection closed when its exchange ends. */
  draining = false;

  constructor(key: string, address: string) {
    this.key = key;
    this.address = address;
  }
}

export class UpstreamPool {
  private readonly hosts = new Map<string, PoolHost>();
  /** Waiting acquires by owner (cancel). */
  private readonly waiting = new Map<H1ResponseSink, Waiter>();
  private readonly opts: PoolOptions;
  private closing = false;

  constructor(opts: PoolOptions) {
    this.opts = opts;
  }

  /**
   * Hands `owner` a connection to `target`: an idle pooled one at once, else a new one; `cb` is
   * called with the connection once it is connected, or with an error reason.
   */
  acquire(target: Target, owner: H1ResponseSink, cb: AcquireCallback, connector?: Connector): void {
    this.acquireBounded(target, owner, cb as BoundedAcquireCallback, null, connector);
  }

  /**
   * As acquire, but with at most `limit.maxConnections` connections under the key: over it the
   * acquire waits (cb later, or `upstream-busy` when the queue is full or the wait times out).
   */
  acquireBounded(
    target: Target,
    owner: H1ResponseSink,
    cb: BoundedAcquireCallback,
    limit: HostLimit | null,
    connector?: Connector,
  ): void {
    const key = connector === undefined ? targetKey(target) : connector.key;
    const host = this.host(key, target);
    const list = host.idle;
    while (list.length > 0) {
      const conn = list.pop()!;
      if (conn.closed) continue;
      conn.clearIdle();
      conn.owner = owner;
      conn.uses++;
      cb(conn, null);
      return;
    }
    if (limit === null || host.open < limit.maxConnections) {
      this.connect(host, target, owner, cb, connector);
      return;
    }
    if (host.waiters.size >= limit.maxWaiting || this.waiting.has(owner)) {
      cb(null, 'upstream-busy', new Error(`${limit.maxConnections} connections to ${key} in use`));
      return;
    }
    const waiter: Waiter = { host, target, owner, cb, connector, timer: null };
    if (limit.waitTimeoutMs > 0)
      waiter.timer = setTimeout(() => {
        waiter.timer = null;
        if (!this.withdraw(waiter)) return;
        cb(null, 'upstream-busy', new Error(`no connection to ${key} within ${limit.waitTimeoutMs} ms`));
      }, limit.waitTimeoutMs);
    host.waiters.add(waiter);
    this.waiting.set(owner, waiter);
  }

  /** Withdraws `owner`'s acquire that waits for a connection (its callback will not run). */
  cancel(owner: H1ResponseSink): void {
    const waiter = this.waiting.get(owner);
    if (waiter !== undefined) this.withdraw(waiter);
  }

  private withdraw(waiter: Waiter): boolean {
    if (this.waiting.get(waiter.owner) !== waiter) return false;
    this.waiting.delete(waiter.owner);
    if (waiter.timer !== null) clearTimeout(waiter.timer);
    waiter.host.waiters.delete(waiter);
    this.dropIfEmpty(waiter.host);
    return true;
  }

  /** The oldest waiter under `host`, withdrawn (null when none waits). */
  private nextWaiter(host: PoolHost): Waiter | null {
    for (const waiter of host.waiters) {
      this.withdraw(waiter);
      return waiter;
    }
    return null;
  }

  private host(key: string, target: Target): PoolHost {
    let host = this.hosts.get(key);
    if (host === undefined) {
      host = new PoolHost(key, targetKey(target));
      this.hosts.set(key, host);
    }
    return host;
  }

  private dropIfEmpty(host: PoolHost): void {
    if (
      host.open === 0 &&
      host.idle.length === 0 &&
      host.waiters.size === 0 &&
      this.hosts.get(host.key) === host
    )
      this.hosts.delete(host.key);
  }

  private connect(
    host: PoolHost,
    target: Target,
    owner: H1ResponseSink,
    cb: BoundedAcquireCallback,
    connector: Connector | undefined,
  ): void {
    host.open++;
    const connected = (socket: net.Socket | null, reason: ConnectFailureReason | null, err?: Error): void => {
      if (socket === null) {
        host.open--;
        this.dropIfEmpty(host);
        cb(null, reason, err);
        this.serveWaiter(host); // the slot is free again: a waiter may connect
        return;
      }
      const conn = new UpstreamConn(this, socket, host, this.opts.limits);
      host.conns.add(conn);
      conn.uses = 1;
      conn.connected = true;
      conn.owner = owner;
      socket.resume();
      cb(conn, null);
    };
    if (connector === undefined) connectTcp(target, this.opts.connectTimeoutMs, connected);
    else connector.connect(connected);
  }

  /** A slot under `host` was freed: the oldest waiter connects. */
  private serveWaiter(host: PoolHost): void {
    if (host.waiters.size === 0 || this.closing) return;
    const waiter = this.nextWaiter(host);
    if (waiter === null) return;
    // Withdrawing the last waiter dropped the emptied host from the map: it is back for the
    // waiter's connection (a draining one stays out).
    if (!host.draining && !this.hosts.has(host.key)) this.hosts.set(host.key, host);
    this.connect(host, waiter.target, waiter.owner, waiter.cb, waiter.connector);
  }

  /** Takes a connection made elsewhere (a CONNECT tunnel's) into the pool as idle. */
  adopt(target: Target, socket: net.Socket): void {
    const host = this.host(targetKey(target), target);
    host.open++;
    const conn = new UpstreamConn(this, socket, host, this.opts.limits);
    host.conns.add(conn);
    conn.connected = true;
    conn.uses = 1;
    this.release(conn);
  }

  /**
   * Returns a connection whose exchange finished cleanly: it goes to the oldest waiter for its
   * key, else becomes idle, or is closed.
   */
  release(conn: UpstreamConn): void {
    conn.owner = null;
    if (conn.closed) return;
    const host = conn.host;
    if (host.draining) {
      conn.socket.destroy();
      return;
    }
    if (host.waiters.size > 0 && !this.closing) {
      const waiter = this.nextWaiter(host)!;
      conn.owner = waiter.owner;
      conn.uses++;
      if (conn.socket.isPaused()) conn.socket.resume();
      waiter.cb(conn, null);
      return;
    }
    if (this.closing || this.opts.maxIdlePerHost === 0) {
      conn.socket.destroy();
      return;
    }
    const list = host.idle;
    if (list.length >= this.opts.maxIdlePerHost) {
      conn.socket.destroy();
      return;
    }
    if (conn.socket.isPaused()) conn.socket.resume();
    list.push(conn);
    conn.setIdleTimer(this.opts.idleTimeoutMs);
  }

  /** The connection leaves the pool (it closed, or its socket was handed to a tunnel). */
  forget(conn: UpstreamConn): void {
    const host = conn.host;
    const i = host.idle.indexOf(conn);
    if (i !== -1) host.idle.splice(i, 1);
    host.conns.delete(conn);
    if (conn.counted) {
      conn.counted = false;
      host.open--;
      this.serveWaiter(host);
    }
    this.dropIfEmpty(host);
  }

  /**
   * The endpoint at `address` (targetKey) left discovery: everything the pool has for it (plain
   * and by connector) leaves the pool. Idle connections close now, busy ones when their exchange
   * ends, or after `graceMs` however far it got. Waiting acquires still get their connection.
   */
  drainEndpoint(address: string, graceMs: number): void {
    for (const host of this.hosts.values()) {
      if (host.address !== address) continue;
      this.hosts.delete(host.key);
      host.draining = true;
      for (const conn of host.idle.splice(0)) conn.socket.destroy();
      if (host.conns.size === 0) continue;
      setTimeout(
        () => {
          for (const conn of host.conns) conn.socket.destroy();
        },
        Math.max(1, graceMs),
      ).unref();
    }
  }

  get idleCount(): number {
    let n = 0;
    for (const host of this.hosts.values()) n += host.idle.length;
    return n;
  }

  /** Closes every idle connection and stops pooling (drain); waiting acquires are refused. */
  close(): void {
    this.closing = true;
    for (const host of this.hosts.values()) {
      for (const c of host.idle) c.socket.destroy();
      host.idle.length = 0;
    }
    for (const waiter of [...this.waiting.values()]) {
      this.withdraw(waiter);
      waiter.cb(null, 'upstream-busy', new Error('the proxy is shutting down'));
    }
  }
}
