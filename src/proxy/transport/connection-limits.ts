// How many connections one listener holds at once, in all and per peer address. Every accepted
// connection costs file descriptors (two once it is forwarded), and an outsider who can open them
// without end would exhaust the process's limit, after which every connection fails.
//
// At a limit the listener makes room by closing the connection that has been idle longest (one
// waiting for its first bytes, or a keep-alive connection between requests); only when none is
// idle is the new connection refused. Handlers say when a connection becomes busy or idle again
// (busy: an exchange or a tunnel in progress). Each shed or refusal is counted, and logged at most
// once per 10 s per listener with the number left out since the last line (LogThrottle, core/log-rate-limit.ts).
//
// O(1) per connection and per transition, shedding included: the idle lists, one for the listener
// and one per peer, are linked through the connections' own records, in the order they became idle
// (the first is the one idle longest). A transition moves a record in or out of both lists and
// allocates nothing: HTTP/1 sessions make two per request. (Sets re-inserted per request, as
// before, cost ~67 bytes of rehashed backing tables per request, and a churned Set or Map is what
// docs/architecture.md keeps off the data path.)
import type net from 'node:net';
import { readFileSync } from 'node:fs';
import { LogThrottle } from '../../core/log-rate-limit.ts';

export type LimitKind = 'listener' | 'peer';
export type LimitAction = 'shed' | 'refused';

export interface ConnectionLimitsOptions {
  /** The most connections open at once (0: no limit). */
  readonly max: number;
  /** The most connections open at once from one peer address (0: no limit). */
  readonly maxPerPeer: number;
  /** Counts a shed or a refusal. */
  readonly onLimit: (kind: LimitKind, action: LimitAction) => void;
  /** Logs a summary line (rate-limited by this class). */
  readonly log: (msg: string, fields: Record<string, unknown>) => void;
}

/** A connection's place in one idle list. */
interface IdleNode {
  readonly owner: Tracked;
  prev: IdleNode | null;
  next: IdleNode | null;
}

/** Idle connections in the order they became idle: `first` has been idle longest. */
interface IdleList {
  first: IdleNode | null;
  last: IdleNode | null;
}

/** The connections of one peer address. */
interface Peer {
  readonly address: string;
  open: number;
  /** Its idle connections. */
  readonly idle: IdleList;
}

/** One connection the listener holds, with its places in the listener's and its peer's idle lists. */
class Tracked {
  readonly socket: net.Socket;
  readonly peer: Peer;
  idle = false;
  readonly inListener: IdleNode;
  readonly inPeer: IdleNode;

  constructor(socket: net.Socket, peer: Peer) {
    this.socket = socket;
    this.peer = peer;
    this.inListener = { owner: this, prev: null, next: null };
    this.inPeer = { owner: this, prev: null, next: null };
  }
}

function append(list: IdleList, node: IdleNode): void {
  node.prev = list.last;
  node.next = null;
  if (list.last === null) list.first = node;
  else list.last.next = node;
  list.last = node;
}

function unlink(list: IdleList, node: IdleNode): void {
  const { prev, next } = node;
  if (prev === null) list.first = next;
  else prev.next = next;
  if (next === null) list.last = prev;
  else next.prev = prev;
  node.prev = null;
  node.next = null;
}

export class ConnectionLimits {
  private readonly opts: ConnectionLimitsOptions;
  private readonly entries = new Map<net.Socket, Tracked>();
  /** Idle connections, of every peer. */
  private readonly idle: IdleList = { first: null, last: null };
  private readonly peers = new Map<string, Peer>();
  private readonly throttle = new LogThrottle();

  constructor(opts: ConnectionLimitsOptions) {
    this.opts = opts;
  }

  /**
   * A connection just accepted: true when it may stay (it is then tracked, idle, until it
   * closes); false when it must be closed. Makes room by shedding an idle connection if needed.
   */
  admit(socket: net.Socket): boolean {
    const address = socket.remoteAddress ?? '';
    const { max, maxPerPeer } = this.opts;
    const known = this.peers.get(address);
    if (maxPerPeer > 0 && known !== undefined && known.open >= maxPerPeer && !this.shed('peer', known.idle)) {
      return this.refuse('peer');
    }
    if (max > 0 && this.entries.size >= max && !this.shed('listener', this.idle))
      return this.refuse('listener');
    // Shedding may have forgotten the peer (its last connection): look it up again.
    let peer = this.peers.get(address);
    if (peer === undefined) {
      peer = { address, open: 0, idle: { first: null, last: null } };
      this.peers.set(address, peer);
    }
    peer.open++;
    const t = new Tracked(socket, peer);
    this.entries.set(socket, t);
    this.toIdle(t);
    socket.once('close', () => this.forget(socket));
    return true;
  }

  /** The connection has work in progress: it is not shed. */
  busy(socket: net.Socket): void {
    const t = this.entries.get(socket);
    if (t !== undefined && t.idle) this.fromIdle(t);
  }

  /** The connection waits for its client again (a keep-alive connection between requests). */
  idleAgain(socket: net.Socket): void {
    const t = this.entries.get(socket);
    if (t !== undefined && !t.idle) this.toIdle(t);
  }

  private toIdle(t: Tracked): void {
    append(this.idle, t.inListener);
    append(t.peer.idle, t.inPeer);
    t.idle = true;
  }

  private fromIdle(t: Tracked): void {
    unlink(this.idle, t.inListener);
    unlink(t.peer.idle, t.inPeer);
    t.idle = false;
  }

  private forget(socket: net.Socket): void {
    const t = this.entries.get(socket);
    if (t === undefined) return;
    this.entries.delete(socket);
    if (t.idle) this.fromIdle(t);
    const peer = t.peer;
    if (--peer.open === 0) this.peers.delete(peer.address);
  }

  /** Closes the connection idle longest of `idle` (all, or one peer's); false when none is idle. */
  private shed(kind: LimitKind, idle: IdleList): boolean {
    const first = idle.first;
    if (first === null) return false;
    const socket = first.owner.socket;
    this.forget(socket);
    socket.destroy();
    this.report(kind, 'shed');
    return true;
  }

  private refuse(kind: LimitKind): false {
    this.report(kind, 'refused');
    return false;
  }

  private report(kind: LimitKind, action: LimitAction): void {
    this.opts.onLimit(kind, action);
    this.throttle.note((skipped) =>
      this.opts.log('connection limit reached: idle connections shed, or new ones refused', {
        limit: kind,
        action,
        notLoggedSince: skipped,
        open: this.entries.size,
        max: this.opts.max,
        max_per_peer: this.opts.maxPerPeer,
      }),
    );
  }
}

/** The process's soft limit on open files (Node raises it to the hard limit at start), or null. */
export function openFilesLimit(): number | null {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max open files'));
    const soft = line?.slice('Max open files'.length).trim().split(/\s+/)[0];
    const n = Number(soft);
    return Number.isInteger(n) && n > 0 ? n : null;
  } catch {
    return null;
  }
}

/**
 * The default per-listener limit: a quarter of the open-files limit after a reserve, so that the
 * inbound and outbound listeners full of forwarded connections (two descriptors each) still leave
 * the reserve for pools, the control plane and logs.
 */
export function defaultMaxConnections(openFiles: number | null): number {
  if (openFiles === null) return 10_000;
  return Math.max(64, Math.floor((openFiles - 512) / 4));
}
