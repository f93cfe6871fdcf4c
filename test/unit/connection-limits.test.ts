// A listener's connection limits (src/proxy/transport/connection-limits.ts): property-based against
// a model written plainly with arrays (the semantics the class had when its idle lists were Sets):
// which connections are admitted, and which idle one is shed to make room, over any sequence of
// accepts, busy/idle transitions and closes from a few peers. And measured: a busy/idle transition
// (two per HTTP/1 request) allocates nothing.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type net from 'node:net';
import fc from 'fast-check';
import { ConnectionLimits } from '../../src/proxy/transport/connection-limits.ts';
import { youngBytesPerCall } from '../helpers/young-allocation.ts';

/** What the class needs of a socket: its peer address, a 'close' listener, destroy(). */
class FakeSocket {
  destroyed = false;
  onClose: (() => void) | null = null;
  readonly remoteAddress: string;
  constructor(remoteAddress: string) {
    this.remoteAddress = remoteAddress;
  }
  once(_event: 'close', fn: () => void): this {
    this.onClose = fn;
    return this;
  }
  destroy(): void {
    this.destroyed = true;
  }
}

/** The reference: idle lists as arrays in the order connections became idle. */
class Model {
  readonly entries = new Map<FakeSocket, string>();
  readonly idle: FakeSocket[] = [];
  readonly peers = new Map<string, { open: number; idle: FakeSocket[] }>();
  readonly max: number;
  readonly maxPerPeer: number;
  constructor(max: number, maxPerPeer: number) {
    this.max = max;
    this.maxPerPeer = maxPerPeer;
  }

  admit(s: FakeSocket): boolean {
    const known = this.peers.get(s.remoteAddress);
    if (this.maxPerPeer > 0 && known !== undefined && known.open >= this.maxPerPeer && !this.shed(known.idle))
      return false;
    if (this.max > 0 && this.entries.size >= this.max && !this.shed(this.idle)) return false;
    let peer = this.peers.get(s.remoteAddress);
    if (peer === undefined) this.peers.set(s.remoteAddress, (peer = { open: 0, idle: [] }));
    peer.open++;
    this.entries.set(s, s.remoteAddress);
    this.idle.push(s);
    peer.idle.push(s);
    return true;
  }

  busy(s: FakeSocket): void {
    if (!this.entries.has(s) || !this.idle.includes(s)) return;
    remove(this.idle, s);
    remove(this.peers.get(s.remoteAddress)!.idle, s);
  }

  idleAgain(s: FakeSocket): void {
    if (!this.entries.has(s) || this.idle.includes(s)) return;
    this.idle.push(s);
    this.peers.get(s.remoteAddress)!.idle.push(s);
  }

  forget(s: FakeSocket): void {
    if (!this.entries.delete(s)) return;
    remove(this.idle, s);
    const peer = this.peers.get(s.remoteAddress)!;
    remove(peer.idle, s);
    if (--peer.open === 0) this.peers.delete(s.remoteAddress);
  }

  private shed(list: FakeSocket[]): boolean {
    const first = list[0];
    if (first === undefined) return false;
    this.forget(first);
    first.destroyed = true;
    return true;
  }
}

function remove<T>(list: T[], item: T): void {
  const i = list.indexOf(item);
  if (i >= 0) list.splice(i, 1);
}

const op = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({ kind: fc.constant('accept' as const), peer: fc.integer({ min: 0, max: 3 }) }),
  },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('busy' as const), at: fc.nat() }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('idle' as const), at: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('close' as const), at: fc.nat() }) },
);

test('connection limits admit and shed as the model does, over any sequence of events', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 6 }),
      fc.integer({ min: 0, max: 3 }),
      fc.array(op, { maxLength: 80 }),
      (max, maxPerPeer, ops) => {
        const limits = new ConnectionLimits({ max, maxPerPeer, onLimit: () => {}, log: () => {} });
        const model = new Model(max, maxPerPeer);
        // Each accepted connection twice: the class's and the model's (shedding marks them).
        const pairs: [real: FakeSocket, ref: FakeSocket][] = [];
        for (const o of ops) {
          if (o.kind === 'accept') {
            const real = new FakeSocket(`198.18.0.${o.peer}`);
            const ref = new FakeSocket(real.remoteAddress);
            const admitted = limits.admit(real as unknown as net.Socket);
            assert.equal(admitted, model.admit(ref));
            if (admitted) pairs.push([real, ref]);
          } else if (pairs.length > 0) {
            const [real, ref] = pairs[o.at % pairs.length]!;
            if (o.kind === 'busy') {
              limits.busy(real as unknown as net.Socket);
              model.busy(ref);
            } else if (o.kind === 'idle') {
              limits.idleAgain(real as unknown as net.Socket);
              model.idleAgain(ref);
            } else {
              real.onClose?.(); // a shed socket closes too, later: forgetting it again does nothing
              model.forget(ref);
              pairs.splice(pairs.indexOf(pairs[o.at % pairs.length]!), 1);
            }
          }
          for (const [real, ref] of pairs) assert.equal(real.destroyed, ref.destroyed);
        }
      },
    ),
  );
});

test('a busy/idle transition allocates nothing (no Set re-inserted per request)', () => {
  const limits = new ConnectionLimits({ max: 1000, maxPerPeer: 100, onLimit: () => {}, log: () => {} });
  const sockets = Array.from({ length: 50 }, (_, i) => new FakeSocket(`198.18.0.${i % 4}`));
  for (const s of sockets) assert.ok(limits.admit(s as unknown as net.Socket));
  const cycle = (n: number) => {
    for (let i = 0; i < n; i++) {
      const s = sockets[i % sockets.length] as unknown as net.Socket;
      limits.busy(s);
      limits.idleAgain(s);
    }
  };
  const perCycle = youngBytesPerCall(cycle, 3_000);
  // Sets re-inserted per transition cost ~67 bytes per cycle here.
  assert.ok(
    Math.min(...perCycle) < 10,
    `bytes per busy/idle cycle: ${perCycle.map((b) => b.toFixed(1)).join(', ')}`,
  );
});
