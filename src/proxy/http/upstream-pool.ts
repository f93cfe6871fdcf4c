// Keep-alive connections to HTTP/1 upstreams, pooled per target. A connection is either owned by
// one exchange or idle in the pool; one set of socket listeners per connection dispatches to its
// current owner, so reusing a connection costs no listener churn on the hot path.
//
// A Connector makes connections of another kind under its own key: mTLS connections to meshed
// endpoints, or the virtual connections that carry HTTP/1 over the mesh's HTTP/2 sessions
// (src/proxy/mesh/); they are pooled and reused the same way.
import type net from 'node:net';
import type { ConnectFailureReason } from '../errors.ts';
import type { Target } from '../transport/target.ts';
import { targetKey } from '../transport/target.ts';
import { connectTcp } from '../tcp/forward.ts';

/** What an exchange that owns an upstream connection is told. */
export interface UpstreamOwner {
  onUpstreamData(chunk: Buffer): void;
  onUpstreamEnd(): void;
  onUpstreamClose(hadError: boolean, err: Error | null): void;
  onUpstreamDrain(): void;
}

export type AcquireCallback = (
  conn: UpstreamConn | null,
  error: ConnectFailureReason | null,
  err?: Error,
) => void;

/** Makes connections the pool keeps under `key` (instead of plain TCP to the target). */
export interface Connector {
  readonly key: string;
  /** Connects; `cb` gets a connected socket-like stream (paused), or why it could not. */
  connect(cb: (socket: net.Socket | null, reason: ConnectFailureReason | null, err?: Error) => void): void;
}

export class UpstreamConn {
  readonly socket: net.Socket;
  readonly key: string;
  owner: UpstreamOwner | null = null;
  /** Times this connection was handed out; > 1 means it was reused from the pool. */
  uses = 0;
  connected = false;
  closed = false;
  private lastError: Error | null = null;
  private idleTimer: NodeJS.Timeout | null = null;
  private readonly pool: UpstreamPool;

  constructor(pool: UpstreamPool, socket: net.Socket, key: string) {
    this.pool = pool;
    this.socket = socket;
    this.key = key;
    socket.on('data', (chunk: Buffer) => {
      if (this.owner !== null) this.owner.onUpstreamData(chunk);
      else socket.destroy(); // bytes on an idle connection: the upstream broke the protocol
    });
    socket.on('end', () => {
      if (this.owner !== null) this.owner.onUpstreamEnd();
      else socket.destroy();
    });
    socket.on('drain', () => this.owner?.onUpstreamDrain());
    socket.on('error', (err) => {
      this.lastError = err;
    });
    socket.on('close', (hadError) => {
      this.closed = true;
      this.clearIdle();
      this.pool.forget(this);
      const owner = this.owner;
      this.owner = null;
      owner?.onUpstreamClose(hadError, this.lastError);
    });
  }

  setIdleTimer(ms: number): void {
    if (ms <= 0) return;
    this.idleTimer = setTimeout(() => this.socket.destroy(), ms);
    this.idleTimer.unref();
  }

  clearIdle(): void {
    if (this.idleTimer !== null) {
      clearTimeout(this.idleTimer);
      this.idleTimer = null;
    }
  }
}

export interface PoolOptions {
  readonly maxIdlePerHost: number;
  readonly idleTimeoutMs: number;
  readonly connectTimeoutMs: number;
}

export class UpstreamPool {
  private readonly idle = new Map<string, UpstreamConn[]>();
  private readonly opts: PoolOptions;
  private closing = false;

  constructor(opts: PoolOptions) {
    this.opts = opts;
  }

  /**
   * Hands `owner` a connection to `target`: an idle pooled one at once, else a new one; `cb` is
   * called with the connection once it is connected, or with an error reason.
   */
  acquire(target: Target, owner: UpstreamOwner, cb: AcquireCallback, connector?: Connector): void {
    const key = connector === undefined ? targetKey(target) : connector.key;
    const list = this.idle.get(key);
    while (list !== undefined && list.length > 0) {
      const conn = list.pop()!;
      if (conn.closed) continue;
      conn.clearIdle();
      conn.owner = owner;
      conn.uses++;
      cb(conn, null);
      return;
    }
    const connected = (socket: net.Socket | null, reason: ConnectFailureReason | null, err?: Error): void => {
      if (socket === null) {
        cb(null, reason, err);
        return;
      }
      const conn = new UpstreamConn(this, socket, key);
      conn.uses = 1;
      conn.connected = true;
      conn.owner = owner;
      socket.resume();
      cb(conn, null);
    };
    if (connector === undefined) connectTcp(target, this.opts.connectTimeoutMs, connected);
    else connector.connect(connected);
  }

  /** Takes a connection made elsewhere (a CONNECT tunnel's) into the pool as idle. */
  adopt(target: Target, socket: net.Socket): void {
    const conn = new UpstreamConn(this, socket, targetKey(target));
    conn.connected = true;
    conn.uses = 1;
    this.release(conn);
  }

  /** Returns a connection whose exchange finished cleanly; it becomes idle or is closed. */
  release(conn: UpstreamConn): void {
    conn.owner = null;
    if (conn.closed) return;
    if (this.closing || this.opts.maxIdlePerHost === 0) {
      conn.socket.destroy();
      return;
    }
    let list = this.idle.get(conn.key);
    if (list === undefined) {
      list = [];
      this.idle.set(conn.key, list);
    }
    if (list.length >= this.opts.maxIdlePerHost) {
      conn.socket.destroy();
      return;
    }
    if (conn.socket.isPaused()) conn.socket.resume();
    list.push(conn);
    conn.setIdleTimer(this.opts.idleTimeoutMs);
  }

  forget(conn: UpstreamConn): void {
    const list = this.idle.get(conn.key);
    if (list === undefined) return;
    const i = list.indexOf(conn);
    if (i !== -1) list.splice(i, 1);
    if (list.length === 0) this.idle.delete(conn.key);
  }

  get idleCount(): number {
    let n = 0;
    for (const list of this.idle.values()) n += list.length;
    return n;
  }

  /** Closes every idle connection and stops pooling (drain). */
  close(): void {
    this.closing = true;
    for (const list of this.idle.values()) for (const c of list) c.socket.destroy();
    this.idle.clear();
  }
}
