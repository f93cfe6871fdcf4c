// How many connections one listener holds at once, in all and per peer address. Every accepted
// connection costs file descriptors (two once it is forwarded), and an outsider who can open them
// without end would exhaust the process's limit, after which every connection fails.
//
// At a limit the listener makes room by closing the connection that has been idle longest (one
// waiting for its first bytes, or a keep-alive connection between requests); only when none is
// idle is the new connection refused. Handlers say when a connection becomes busy or idle again
// (busy: an exchange or a tunnel in progress). Each shed or refusal is counted, and logged at most
// once per 10 s per listener with the number left out since the last line (core/log-throttle.ts).
//
// O(1) per connection and per transition: a Map in insertion order is the idle list (re-inserting
// moves a connection to the end, so the first entry is the one idle longest).
import type net from 'node:net';
import { readFileSync } from 'node:fs';
import { LogThrottle } from '../../core/log-throttle.ts';

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
  readonly now?: () => number;
}

interface Entry {
  readonly peer: string;
  idle: boolean;
}

export class ConnectionLimits {
  private readonly opts: ConnectionLimitsOptions;
  private readonly entries = new Map<net.Socket, Entry>();
  /** Idle connections, the one idle longest first. */
  private readonly idle = new Map<net.Socket, Entry>();
  private readonly perPeer = new Map<string, number>();
  private readonly throttle: LogThrottle;

  constructor(opts: ConnectionLimitsOptions) {
    this.opts = opts;
    this.throttle = new LogThrottle(undefined, opts.now);
  }

  /**
   * A connection just accepted: true when it may stay (it is then tracked, idle, until it
   * closes); false when it must be closed. Makes room by shedding an idle connection if needed.
   */
  admit(socket: net.Socket): boolean {
    const peer = socket.remoteAddress ?? '';
    const { max, maxPerPeer } = this.opts;
    if (maxPerPeer > 0 && (this.perPeer.get(peer) ?? 0) >= maxPerPeer && !this.shed('peer', peer)) {
      return this.refuse('peer');
    }
    if (max > 0 && this.entries.size >= max && !this.shed('listener', null)) return this.refuse('listener');
    const entry: Entry = { peer, idle: true };
    this.entries.set(socket, entry);
    this.idle.set(socket, entry);
    this.perPeer.set(peer, (this.perPeer.get(peer) ?? 0) + 1);
    socket.once('close', () => this.forget(socket));
    return true;
  }

  /** The connection has work in progress: it is not shed. */
  busy(socket: net.Socket): void {
    const e = this.entries.get(socket);
    if (e === undefined || !e.idle) return;
    e.idle = false;
    this.idle.delete(socket);
  }

  /** The connection waits for its client again (a keep-alive connection between requests). */
  idleAgain(socket: net.Socket): void {
    const e = this.entries.get(socket);
    if (e === undefined || e.idle) return;
    e.idle = true;
    this.idle.set(socket, e);
  }

  private forget(socket: net.Socket): void {
    const e = this.entries.get(socket);
    if (e === undefined) return;
    this.entries.delete(socket);
    this.idle.delete(socket);
    const n = (this.perPeer.get(e.peer) ?? 1) - 1;
    if (n <= 0) this.perPeer.delete(e.peer);
    else this.perPeer.set(e.peer, n);
  }

  /** Closes the connection idle longest (of `peer`, when given); false when none is idle. */
  private shed(kind: LimitKind, peer: string | null): boolean {
    for (const [socket, e] of this.idle) {
      if (peer !== null && e.peer !== peer) continue;
      this.forget(socket);
      socket.destroy();
      this.report(kind, 'shed');
      return true;
    }
    return false;
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
