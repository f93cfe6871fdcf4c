// The open streams of one HTTP/2 connection by id: an open-addressing hash table (linear probing,
// deletion by backward shift, so no tombstones) in one array that is only replaced when it grows.
//
// Why not a Map: every stream is a set and a delete, and a Map whose entries churn is rehashed
// every few dozen of them into a new backing table; V8 links each obsolete table to its successor
// (for live iterators) and does not clear the entries it held. Once one of those tables sat in
// the old generation, it kept the next one, and the streams in it, alive through every scavenge
// until the next full GC: under load about a third of every request's objects (the stream, its
// exchange, its decoded fields and, when traced, its span) were promoted to the old generation and
// died there, and full GCs came twice as often (measured on the two-hop benchmark; see
// docs/benchmark.md). Here a deleted slot is cleared at once and nothing links tables.
//
// A stream's slot is a keyed hash of its id, with a key drawn per table: the peer chooses its
// stream ids, and when the slot was the id's own bits (id >>> 1), ids 4,096 apart all shared one.
// 999 of them open made one probe run that every frame naming a stream in it walked (1.6 us a
// lookup instead of 12 ns; a flood of 13-byte WINDOW_UPDATEs for a closed stream cost the proxy 4x
// the CPU per byte). A Map's hash of a small integer is seeded per process for the same reason;
// here the key is per table, so what a peer might learn of one connection's layout (the order of
// values(), in the resets of a drain) says nothing about the next.
//
// Iteration order is not insertion order; values() returns a copy, so a caller may close streams
// (deleting them) while it goes through the list.

import { randomInt } from 'node:crypto';

const MIN_CAPACITY = 16;

export class StreamTable<V> {
  private ids: Int32Array;
  private held: (V | undefined)[];
  private mask: number;
  private count = 0;
  private readonly key = randomInt(0x1_0000_0000) | 0;

  constructor() {
    this.ids = new Int32Array(MIN_CAPACITY);
    this.held = new Array<V | undefined>(MIN_CAPACITY).fill(undefined);
    this.mask = MIN_CAPACITY - 1;
  }

  get size(): number {
    return this.count;
  }

  /** The slot where `id` would start its probe: the id mixed with the table's key (murmur3's fmix32). */
  private home(id: number): number {
    let h = id ^ this.key;
    h = Math.imul(h ^ (h >>> 16), 0x85eb_ca6b);
    h = Math.imul(h ^ (h >>> 13), 0xc2b2_ae35);
    return (h ^ (h >>> 16)) & this.mask;
  }

  get(id: number): V | undefined {
    const { ids, held, mask } = this;
    for (let i = this.home(id); ; i = (i + 1) & mask) {
      const v = held[i];
      if (v === undefined) return undefined;
      if (ids[i] === id) return v;
    }
  }

  has(id: number): boolean {
    return this.get(id) !== undefined;
  }

  /** Sets the value of `id` (`value` must not be undefined). */
  set(id: number, value: V): this {
    if ((this.count + 1) * 2 > this.ids.length) this.grow();
    const { ids, held, mask } = this;
    for (let i = this.home(id); ; i = (i + 1) & mask) {
      if (held[i] === undefined) {
        ids[i] = id;
        held[i] = value;
        this.count++;
        return this;
      }
      if (ids[i] === id) {
        held[i] = value;
        return this;
      }
    }
  }

  delete(id: number): boolean {
    const { ids, held, mask } = this;
    let i = this.home(id);
    for (; ; i = (i + 1) & mask) {
      if (held[i] === undefined) return false;
      if (ids[i] === id) break;
    }
    // Backward shift: move later entries of the probe run into the hole when their home allows.
    let hole = i;
    for (let j = (i + 1) & mask; held[j] !== undefined; j = (j + 1) & mask) {
      const home = this.home(ids[j]!);
      // j's entry may fill the hole unless its home lies cyclically in (hole, j].
      const between = hole <= j ? home > hole && home <= j : home > hole || home <= j;
      if (between) continue;
      ids[hole] = ids[j]!;
      held[hole] = held[j];
      hole = j;
    }
    held[hole] = undefined;
    ids[hole] = 0;
    this.count--;
    return true;
  }

  /** The values, in no particular order, as a new array. */
  values(): V[] {
    const out: V[] = [];
    for (const v of this.held) if (v !== undefined) out.push(v);
    return out;
  }

  clear(): void {
    this.held.fill(undefined);
    this.ids.fill(0);
    this.count = 0;
  }

  private grow(): void {
    const oldIds = this.ids;
    const oldValues = this.held;
    const capacity = oldIds.length * 2;
    this.ids = new Int32Array(capacity);
    this.held = new Array<V | undefined>(capacity).fill(undefined);
    this.mask = capacity - 1;
    this.count = 0;
    for (let i = 0; i < oldIds.length; i++) {
      const v = oldValues[i];
      if (v !== undefined) this.set(oldIds[i]!, v);
    }
    oldValues.fill(undefined); // nothing links the old array to the streams once it is garbage
  }
}
