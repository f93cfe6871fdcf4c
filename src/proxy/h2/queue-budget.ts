// What the process's own HTTP/2 connections queue towards their peers, summed per peer and for
// the whole process, so that a limit holds however many connections an attacker opens: a peer
// that keeps sending (PINGs, SETTINGS, requests) but never reads the answers makes them pile up
// in the socket, and one connection's limit (connection.ts) alone lets N connections hold N times
// as much. When a peer's sum or the process's sum goes over its limit, the connection that queues
// most in that scope is cut off (it reports the limit, so it is counted and logged).
//
// Each connection reports its queue as it changes (after a write, on new input, on drain): O(1),
// no allocation. Those reports can be stale (a socket drains without telling), so before cutting
// anyone off the scope is measured afresh; that walk happens only when a limit is passed.

import type { H2Limit, QueueLimits } from './limits.ts';
import { QUEUE_LIMITS } from './limits.ts';

/** A connection the budget watches. */
export interface QueueMember {
  /** Bytes queued towards the peer now. */
  queuedBytes(): number;
  /** The budget cuts the connection off: it must leave the budget (leave) at once. */
  shed(limit: H2Limit, message: string): void;
}

/** One peer's connections and what they queue together. */
class PeerQueue {
  readonly key: string;
  bytes = 0;
  readonly entries = new Set<QueueEntry>();
  constructor(key: string) {
    this.key = key;
  }
}

/** A member's place in the budget (what it reported last). */
export class QueueEntry {
  readonly member: QueueMember;
  readonly peer: PeerQueue;
  bytes = 0;
  constructor(member: QueueMember, peer: PeerQueue) {
    this.member = member;
    this.peer = peer;
  }
}

export class QueueBudget {
  readonly limits: QueueLimits;
  /** Bytes queued by every member together (as last reported). */
  total = 0;
  private readonly peers = new Map<string, PeerQueue>();

  constructor(limits: QueueLimits = QUEUE_LIMITS) {
    this.limits = limits;
  }

  /** A new connection to `peer` (its mTLS identity, else its address). */
  join(member: QueueMember, peer: string): QueueEntry {
    let q = this.peers.get(peer);
    if (q === undefined) {
      q = new PeerQueue(peer);
      this.peers.set(peer, q);
    }
    const entry = new QueueEntry(member, q);
    q.entries.add(entry);
    return entry;
  }

  /** The connection is gone: what it queued no longer counts. */
  leave(entry: QueueEntry): void {
    const q = entry.peer;
    if (!q.entries.delete(entry)) return;
    this.set(entry, 0);
    if (q.entries.size === 0) this.peers.delete(q.key);
  }

  /** Bytes queued towards one peer (as last reported). */
  peerBytes(peer: string): number {
    return this.peers.get(peer)?.bytes ?? 0;
  }

  /** The member now queues `bytes`; cuts off the largest member of a scope over its limit. */
  update(entry: QueueEntry, bytes: number): void {
    const grew = bytes > entry.bytes;
    this.set(entry, bytes);
    if (!grew) return;
    const { perPeer, total } = this.limits;
    if (entry.peer.bytes > perPeer) this.enforce(entry.peer.entries, perPeer, 'peer-queued-bytes');
    if (this.total > total) this.enforce(this.allEntries(), total, 'total-queued-bytes');
  }

  private set(entry: QueueEntry, bytes: number): void {
    const delta = bytes - entry.bytes;
    entry.bytes = bytes;
    entry.peer.bytes += delta;
    this.total += delta;
  }

  /** Measures `scope` afresh, then cuts off its largest members until it is within `limit`. */
  private enforce(scope: Iterable<QueueEntry>, limit: number, name: H2Limit): void {
    const entries = [...scope];
    let sum = 0;
    for (const e of entries) {
      this.set(e, e.member.queuedBytes());
      sum += e.bytes;
    }
    while (sum > limit && entries.length > 0) {
      let worst = 0;
      for (let i = 1; i < entries.length; i++) if (entries[i]!.bytes > entries[worst]!.bytes) worst = i;
      const victim = entries[worst]!;
      entries.splice(worst, 1);
      sum -= victim.bytes;
      victim.member.shed(name, `${name}: ${sum + victim.bytes} bytes queued, over ${limit}`);
      this.leave(victim); // (the member has left already; this is a no-op then)
    }
  }

  private allEntries(): QueueEntry[] {
    const all: QueueEntry[] = [];
    for (const q of this.peers.values()) for (const e of q.entries) all.push(e);
    return all;
  }
}

/** The process's budget, shared by every own HTTP/2 connection unless one is given its own (tests). */
export const processQueueBudget = new QueueBudget();
