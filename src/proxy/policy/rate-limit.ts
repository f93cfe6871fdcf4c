// Inbound rate limits of one Server (an HTTPLocalRateLimitPolicy, src/api/policy.proto RateLimit),
// after linkerd's: a request is refused with 429 `rate-limited` when its client's bucket (the
// override's that lists its identity, else its own identity's) or the Server's total bucket is
// empty. The client's bucket is asked first, so a client over its own limit does not spend the
// total that other clients share. Clients without an identity share one bucket ('').
//
// Each limit is a token bucket holding one second of requests (burst = requestsPerSecond),
// refilled continuously. Memory is bounded: at most MAX_IDENTITY_BUCKETS per-identity buckets per
// Server; when full, a new identity takes the place of one not used recently, chosen by the CLOCK
// algorithm (an approximation of least recently used: a bucket used since the eviction hand last
// passed it is spared once). An evicted identity starts again with a full bucket; evictions are
// counted (rateLimitEvictions, trellis_inbound_rate_limit_evictions_total) and the first of each
// limiter logged. A check allocates nothing but a new identity's bucket: a known identity is one
// Map lookup. (Exact LRU order by a Map's delete-and-set per request made V8 rehash the Map into a
// new backing table every few requests: ~90 bytes of garbage per check, and churned Maps keep
// each other alive through young-generation GCs; docs/architecture.md.)
import type { ApiRateLimitOutput } from '../../api/client.ts';

/** Per-identity buckets kept per Server (about 100 bytes each plus the identity string). */
export const MAX_IDENTITY_BUCKETS = 10_000;

/** Which limit refused a request. */
export type RateLimitVerdict = 'total' | 'identity' | 'override';

let evictions = 0;

/** Per-identity buckets evicted by every limiter of the process. */
export function rateLimitEvictions(): number {
  return evictions;
}

export class TokenBucket {
  readonly perSecond: number;
  private tokens: number;
  private last: number;
  /** Taken from since the eviction hand last passed it (RateLimiter's CLOCK reference bit). */
  used = false;

  constructor(perSecond: number, nowMs: number) {
    this.perSecond = perSecond;
    this.tokens = perSecond;
    this.last = nowMs;
  }

  /** Takes one token: false when the bucket is empty. */
  take(nowMs: number): boolean {
    const elapsed = nowMs - this.last;
    if (elapsed > 0) {
      const refilled = this.tokens + (elapsed * this.perSecond) / 1000;
      this.tokens = refilled < this.perSecond ? refilled : this.perSecond;
      this.last = nowMs;
    }
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

export interface RateLimiterOptions {
  /** Default MAX_IDENTITY_BUCKETS. */
  readonly maxIdentities?: number;
  /** Told once, at the first eviction. */
  readonly onFull?: (max: number) => void;
  readonly now?: () => number;
}

export class RateLimiter {
  readonly name: string;
  private readonly total: TokenBucket | null;
  private readonly identityRps: number;
  private readonly overrides = new Map<string, TokenBucket>();
  private readonly identities = new Map<string, TokenBucket>();
  /** The identities held, in the order the eviction hand visits them (full: maxIdentities). */
  private readonly ring: string[] = [];
  private hand = 0;
  private readonly maxIdentities: number;
  private readonly onFull: ((max: number) => void) | undefined;
  private readonly now: () => number;
  private warned = false;
  /** The limit this limiter enforces, as compared by sameLimit. */
  private readonly key: string;

  constructor(limit: ApiRateLimitOutput, options: RateLimiterOptions = {}) {
    this.key = limitKey(limit);
    this.now = options.now ?? (() => performance.now());
    const start = this.now();
    this.name = limit.name;
    this.total = limit.totalRps > 0 ? new TokenBucket(limit.totalRps, start) : null;
    this.identityRps = limit.identityRps;
    for (const o of limit.overrides ?? []) {
      if (o.requestsPerSecond < 1) continue;
      const shared = new TokenBucket(o.requestsPerSecond, start);
      for (const id of o.identities ?? []) if (!this.overrides.has(id)) this.overrides.set(id, shared);
    }
    this.maxIdentities = Math.max(1, options.maxIdentities ?? MAX_IDENTITY_BUCKETS);
    this.onFull = options.onFull;
  }

  /** Whether `limit` is the one this limiter enforces (then its buckets can carry over). */
  sameLimit(limit: ApiRateLimitOutput): boolean {
    return limitKey(limit) === this.key;
  }

  /** Per-identity buckets held now. */
  get identityBuckets(): number {
    return this.identities.size;
  }

  /** One request from `identity` (null: unauthenticated): null when allowed, else the limit that refused it. */
  check(identity: string | null): RateLimitVerdict | null {
    const now = this.now();
    const id = identity ?? '';
    const override = this.overrides.get(id);
    if (override !== undefined) {
      if (!override.take(now)) return 'override';
    } else if (this.identityRps > 0 && !this.identityBucket(id, now).take(now)) return 'identity';
    if (this.total !== null && !this.total.take(now)) return 'total';
    return null;
  }

  private identityBucket(id: string, now: number): TokenBucket {
    let bucket = this.identities.get(id);
    if (bucket !== undefined) {
      bucket.used = true;
      return bucket;
    }
    bucket = new TokenBucket(this.identityRps, now);
    const ring = this.ring;
    if (ring.length < this.maxIdentities) ring.push(id);
    else {
      this.evictAtHand();
      ring[this.hand] = id;
      this.hand = (this.hand + 1) % ring.length;
    }
    this.identities.set(id, bucket);
    return bucket;
  }

  /**
   * Evicts the bucket at the hand, or the first after it not used since the hand last passed (each
   * used one passed on the way is spared once, its bit cleared): at most one sweep of the ring.
   */
  private evictAtHand(): void {
    const ring = this.ring;
    for (;;) {
      const id = ring[this.hand]!;
      const bucket = this.identities.get(id)!;
      if (!bucket.used) {
        this.identities.delete(id);
        break;
      }
      bucket.used = false;
      this.hand = (this.hand + 1) % ring.length;
    }
    evictions++;
    if (!this.warned) {
      this.warned = true;
      this.onFull?.(this.maxIdentities);
    }
  }
}

/** A limit's fields as one string (per policy update, never per request). */
function limitKey(limit: ApiRateLimitOutput): string {
  const overrides = (limit.overrides ?? []).map((o) => [o.requestsPerSecond, o.identities ?? []]);
  return JSON.stringify([limit.name, limit.totalRps, limit.identityRps, overrides]);
}
