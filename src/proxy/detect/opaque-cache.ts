// Remembers destinations whose protocol detection recently timed out, so that the next
// connections to them are forwarded as opaque TCP at once instead of each waiting for the detect
// timeout again (a server-first protocol on a port nobody declared opaque). linkerd2-proxy keeps
// the same kind of cache in its detect layer.
//
// A bounded set with expiry: entries live `ttlMs` from their last `add`; when the set is full the
// oldest entry goes. A Map keeps insertion order, and re-adding moves a key to the end, so with a
// constant ttl the first entry is always both the oldest and the next to expire: everything is
// O(1) amortised and no timers are needed. The clock must not go backwards (performance.now
// does not).

import { ConfigError } from '../../core/errors.ts';

export interface ExpiringSetOptions {
  /** How long an entry lives after it was (last) added, in milliseconds; 0 disables the set. */
  readonly ttlMs: number;
  /** The most entries held at once (adding beyond it evicts the oldest); 0 disables the set. */
  readonly max: number;
  /** The clock, in milliseconds (tests inject a fake one). Defaults to performance.now. */
  readonly now?: () => number;
}

export class ExpiringSet {
  private readonly ttlMs: number;
  private readonly max: number;
  private readonly now: () => number;
  /** key -> the time it expires, in insertion order (oldest first). */
  private readonly expiries = new Map<string, number>();

  constructor(opts: ExpiringSetOptions) {
    if (!(Number.isFinite(opts.ttlMs) && opts.ttlMs >= 0)) {
      throw new ConfigError('ttlMs', `must be a number of milliseconds >= 0, got ${opts.ttlMs}`);
    }
    if (!(Number.isInteger(opts.max) && opts.max >= 0)) {
      throw new ConfigError('max', `must be an integer >= 0, got ${opts.max}`);
    }
    this.ttlMs = opts.ttlMs;
    this.max = opts.max;
    this.now = opts.now ?? (() => performance.now());
  }

  /** True while `key` was added less than ttlMs ago (an expired key is dropped here). */
  has(key: string): boolean {
    const expiresAt = this.expiries.get(key);
    if (expiresAt === undefined) return false;
    if (this.now() < expiresAt) return true;
    this.expiries.delete(key);
    return false;
  }

  /** Adds `key`, or renews it (a fresh ttl, and it becomes the newest entry). */
  add(key: string): void {
    if (this.max === 0 || this.ttlMs === 0) return; // disabled
    this.expiries.delete(key);
    // The first entry is the oldest, so expired entries are always the first to go.
    while (this.expiries.size >= this.max) {
      const oldest = this.expiries.keys().next();
      if (oldest.done) break;
      this.expiries.delete(oldest.value);
    }
    this.expiries.set(key, this.now() + this.ttlMs);
  }

  /** How many keys have not expired yet. */
  get size(): number {
    this.dropExpired(this.now());
    return this.expiries.size;
  }

  /** Drops expired entries from the front; stops at the first live one (the rest expire later). */
  private dropExpired(now: number): void {
    for (const [key, expiresAt] of this.expiries) {
      if (now < expiresAt) return;
      this.expiries.delete(key);
    }
  }
}
