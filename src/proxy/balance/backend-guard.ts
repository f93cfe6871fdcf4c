// Circuit breaking at the backend level: the picker of one backend (a Service port's EndpointSet,
// one per proxy) when its Service asks for failure accrual or limits by annotation
// (balancer.trellis.io/*, src/core/routes/service-annotations.ts). Without them discovery picks
// with a bare P2c and none of this runs.
//
// - Failure accrual: each endpoint carries a FailureAccrual (failure-accrual.ts). A tripped one
//   leaves the list P2c draws from; when its penalty is over, the next request goes to it as the
//   probe (one at a time); its verdict closes or re-opens it. When no endpoint is left to draw
//   from, requests fail at once with `all-endpoints-tripped` (503) instead of waiting.
// - maxPendingRequests: requests picked and not yet answered (done) on the backend at once; over
//   it, `overflow` (503) at once. maxConnections: the same, per endpoint (an HTTP/1 request or a
//   TCP connection holds one connection; an HTTP/2 stream counts as one too); an endpoint at its
//   limit is passed over for another, and when every one is, `overflow`.
//
// Per request the work is O(1) and allocates only the pick (as the bare path does): P2c over the
// list of closed endpoints (rebuilt only when a breaker or the set changes), one comparison of the
// clock with the earliest end of a penalty, counters. Scans over the endpoints happen only when a
// penalty ends, a limit is hit, or a retry must avoid an endpoint.
import type { Clock } from '../../core/clock.ts';
import type { Logger } from '../../core/log.ts';
import { LogThrottle } from '../../core/log-rate-limit.ts';
import type { ServiceTrafficPolicy } from '../../core/routes/service-annotations.ts';
import type { Endpoint } from '../../core/endpoints.ts';
import type { Target } from '../../core/target.ts';
import type { EndpointSet, EndpointState } from './endpoint-set.ts';
import { FailureAccrual, type BreakerState } from './failure-accrual.ts';
import type { PeakEwmaHandle } from './peak-ewma.ts';
import { P2c } from './p2c.ts';

/** What the guard counts (trellis_breaker_events_total). */
export const BREAKER_EVENTS = [
  'tripped',
  'recovered',
  'reopened',
  'probe',
  'all-tripped',
  'overflow',
] as const;
export type BreakerEvent = (typeof BREAKER_EVENTS)[number];

/** Counts one backend's events; must not allocate (ProxyMetrics.breakerCounters). */
export interface BreakerCounters {
  count(event: BreakerEvent): void;
}

/** A pick's failure the guard answers with (proxy error reasons, src/proxy/errors.ts). */
export interface GuardRefusal {
  readonly error: 'all-endpoints-tripped' | 'overflow';
  readonly detail: string;
}

/** One endpoint's breaker as the admin shows it. */
export interface EndpointBreakerView {
  readonly address: string;
  readonly state: BreakerState;
  readonly consecutiveFailures: number;
  readonly successRate: number | null;
  readonly trips: number;
  readonly penaltyMs: number;
  readonly probeInMs: number;
  readonly inFlight: number;
}

export interface BackendGuardView {
  readonly backend: string;
  readonly mode: 'consecutive' | 'success-rate' | null;
  readonly pending: number;
  readonly maxPendingRequests: number | null;
  readonly maxConnections: number | null;
  readonly endpoints: readonly EndpointBreakerView[];
}

/** Whether a Service's policy needs a guard at all. */
export function needsGuard(policy: ServiceTrafficPolicy | null): policy is ServiceTrafficPolicy {
  return (
    policy !== null &&
    (policy.failureAccrual !== null || policy.maxPendingRequests !== null || policy.maxConnections !== null)
  );
}

/** Whether two policies ask for the same circuit breaking (failure accrual and limits). */
export function sameGuardPolicy(a: ServiceTrafficPolicy | null, b: ServiceTrafficPolicy | null): boolean {
  if (a === b) return true;
  if (a === null || b === null) return false;
  return (
    a.maxPendingRequests === b.maxPendingRequests &&
    a.maxConnections === b.maxConnections &&
    JSON.stringify(a.failureAccrual) === JSON.stringify(b.failureAccrual)
  );
}

export interface BackendGuardOptions {
  /** The backend's name in logs and metrics ("web.default:8080"). */
  readonly backend: string;
  readonly set: EndpointSet;
  readonly policy: ServiceTrafficPolicy;
  readonly log: Logger;
  readonly counters: BreakerCounters;
  /** A number in [0, 1) for the penalties' jitter (Math.random). */
  readonly random?: () => number;
}

export class BackendGuard {
  readonly backend: string;
  readonly policy: ServiceTrafficPolicy;
  readonly #set: EndpointSet;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #counters: BreakerCounters;
  readonly #random: () => number;
  readonly #p2c: P2c<EndpointState>;
  readonly #maxPending: number;
  readonly #maxConnections: number;
  readonly #unsubscribe: () => void;
  /** The endpoints P2c draws from: every endpoint whose breaker is closed. */
  #available: readonly EndpointState[] = [];
  /** The earliest end of an open breaker's penalty (Infinity: none). */
  #nextProbeAt = Infinity;
  #pending = 0;
  /** Replaced (the policy changed): outcomes of its picks still in flight go nowhere. */
  #closed = false;
  // The answers to refusals, made once (a flood of them allocates nothing).
  readonly #overPending: GuardRefusal;
  readonly #overConnections: GuardRefusal;
  readonly #allTripped: GuardRefusal;
  // Refusals recur for as long as the cause lasts: one line per 10 s each, with the count left out.
  readonly #overflowLog = new LogThrottle();
  readonly #allTrippedLog = new LogThrottle();
  readonly #writeOverflow = (leftOut: number): void =>
    this.#log.warn('backend over its limit; requests answered 503 overflow', {
      backend: this.backend,
      maxPendingRequests: this.policy.maxPendingRequests,
      maxConnections: this.policy.maxConnections,
      leftOut,
    });
  readonly #writeAllTripped = (leftOut: number): void =>
    this.#log.warn('every endpoint of the backend is tripped; requests answered 503 all-endpoints-tripped', {
      backend: this.backend,
      leftOut,
    });

  constructor(options: BackendGuardOptions) {
    this.backend = options.backend;
    this.policy = options.policy;
    this.#set = options.set;
    this.#clock = options.set.clock;
    this.#log = options.log;
    this.#counters = options.counters;
    this.#random = options.random ?? Math.random;
    this.#maxPending = options.policy.maxPendingRequests ?? Infinity;
    this.#maxConnections = options.policy.maxConnections ?? Infinity;
    this.#p2c = new P2c(this);
    const backend = options.backend;
    this.#overPending = {
      error: 'overflow',
      detail: `${backend}: over its limit of ${this.#maxPending} pending requests`,
    };
    this.#overConnections = {
      error: 'overflow',
      detail: `${backend}: every endpoint at its limit of ${this.#maxConnections} connections`,
    };
    this.#allTripped = {
      error: 'all-endpoints-tripped',
      detail: `${backend}: every endpoint is tripped by its circuit breaker`,
    };
    // A new policy starts every endpoint's accrual afresh.
    for (const state of this.#set.endpoints) state.accrual = null;
    this.#unsubscribe = this.#set.onChange(() => this.#rebuild());
    this.#rebuild();
  }

  /** The endpoints P2c draws from (PickSource): those whose breaker is closed. */
  get endpoints(): readonly EndpointState[] {
    return this.#available;
  }

  /** Requests picked and not yet done. */
  get pending(): number {
    return this.#pending;
  }

  /** Stops following the set (the policy changed or the target is released). */
  close(): void {
    this.#closed = true;
    this.#unsubscribe();
  }

  /**
   * Where the next request goes: a pick, a refusal, or null while the set has no endpoints (the
   * caller waits for some, as without a guard). `avoid`: a key not to pick when there is another.
   */
  pick(avoid: string | null): GuardedPick | GuardRefusal | null {
    if (this.#set.size === 0) return null;
    if (this.#pending >= this.#maxPending) return this.#refuse('overflow', this.#overPending);
    const now = this.#clock.now();
    if (now >= this.#nextProbeAt) {
      const due = this.#dueForProbe(now, avoid);
      if (due !== null) {
        due.accrual!.startProbe(now);
        this.#nextProbeAt = this.#earliestProbe();
        this.#counters.count('probe');
        return this.#start(due, true);
      }
    }
    const available = this.#available;
    if (available.length === 0) return this.#refuse('all-tripped', this.#allTripped);
    let state = this.#p2c.pick()!;
    if (avoid !== null && state.key === avoid && available.length > 1) state = leastLoaded(available, avoid)!;
    if (state.load.pending >= this.#maxConnections) {
      const other = leastLoaded(available, null, this.#maxConnections);
      if (other === null) return this.#refuse('overflow', this.#overConnections);
      state = other;
    }
    return this.#start(state, false);
  }

  /** The admin's view of the breakers. */
  view(): BackendGuardView {
    const now = this.#clock.now();
    const accrual = this.policy.failureAccrual;
    return {
      backend: this.backend,
      mode: accrual?.mode ?? null,
      pending: this.#pending,
      maxPendingRequests: this.policy.maxPendingRequests,
      maxConnections: this.policy.maxConnections,
      endpoints: this.#set.endpoints.map((state) => {
        const a = state.accrual;
        const rate = a === null || a.policy.mode !== 'success-rate' ? NaN : a.successRate(now);
        return {
          address: state.key,
          state: a?.state ?? 'closed',
          consecutiveFailures: a?.consecutiveFailures ?? 0,
          successRate: Number.isNaN(rate) ? null : Math.round(rate * 1000) / 1000,
          trips: a?.trips ?? 0,
          penaltyMs: Math.round(a?.penaltyMs ?? 0),
          probeInMs: a === null || a.state !== 'open' ? 0 : Math.max(0, Math.round(a.openUntil - now)),
          inFlight: state.load.pending,
        };
      }),
    };
  }

  /** For GuardedPick: the request ended; `failed` is its verdict (undefined: none). */
  finish(state: EndpointState, failed: boolean | undefined, probe: boolean): void {
    this.#pending--;
    const accrual = state.accrual;
    if (accrual === null || this.#closed) return;
    const now = this.#clock.now();
    if (failed === undefined) {
      if (probe) {
        accrual.abandonProbe(now);
        this.#nextProbeAt = Math.min(this.#nextProbeAt, now);
      }
      return;
    }
    const transition = accrual.record(failed, now, probe);
    if (transition === null) return;
    this.#counters.count(transition);
    const fields = { backend: this.backend, endpoint: state.key, penaltyMs: Math.round(accrual.penaltyMs) };
    if (transition === 'tripped') {
      this.#log.warn(
        'endpoint tripped its circuit breaker; it gets no requests until its penalty ends',
        fields,
      );
    } else if (transition === 'recovered') {
      this.#log.info('endpoint recovered: its probe succeeded', {
        backend: this.backend,
        endpoint: state.key,
      });
    } else {
      this.#log.info('endpoint failed its probe; tripped again', fields);
    }
    this.#rebuild();
  }

  #start(state: EndpointState, probe: boolean): GuardedPick {
    this.#pending++;
    return new GuardedPick(this, state, state.start(), probe);
  }

  #refuse(event: 'all-tripped' | 'overflow', refusal: GuardRefusal): GuardRefusal {
    this.#counters.count(event);
    if (event === 'overflow') this.#overflowLog.note(this.#writeOverflow);
    else this.#allTrippedLog.note(this.#writeAllTripped);
    return refusal;
  }

  /** An open endpoint whose penalty is over (not `avoid`), or null. */
  #dueForProbe(now: number, avoid: string | null): EndpointState | null {
    for (const state of this.#set.endpoints) {
      if (state.key !== avoid && state.accrual?.probeDue(now) === true) return state;
    }
    return null;
  }

  #earliestProbe(): number {
    let earliest = Infinity;
    for (const state of this.#set.endpoints) {
      const a = state.accrual;
      if (a !== null && a.state === 'open' && a.openUntil < earliest) earliest = a.openUntil;
    }
    return earliest;
  }

  /** The closed endpoints, after a breaker or the set changed; new endpoints get an accrual. */
  #rebuild(): void {
    const accrual = this.policy.failureAccrual;
    const available: EndpointState[] = [];
    for (const state of this.#set.endpoints) {
      if (accrual !== null && state.accrual === null)
        state.accrual = new FailureAccrual(accrual, this.#random);
      if (state.accrual === null || state.accrual.state === 'closed') available.push(state);
    }
    this.#available = available;
    this.#nextProbeAt = this.#earliestProbe();
  }
}

/** A request or connection the guard sent to an endpoint; reports its verdict on done(). */
export class GuardedPick {
  readonly address: Target;
  readonly endpoint: Endpoint;
  readonly key: string;
  readonly #guard: BackendGuard;
  readonly #state: EndpointState;
  readonly #handle: PeakEwmaHandle;
  readonly #probe: boolean;
  #failed = false;
  #done = false;

  constructor(guard: BackendGuard, state: EndpointState, handle: PeakEwmaHandle, probe: boolean) {
    this.#guard = guard;
    this.#state = state;
    this.#handle = handle;
    this.#probe = probe;
    this.endpoint = state.endpoint;
    this.address = state.endpoint.address;
    this.key = state.key;
  }

  /** Whether this request is its endpoint's probe. */
  get probe(): boolean {
    return this.#probe;
  }

  fail(): void {
    this.#failed = true;
  }

  done(rttMs?: number, failed?: boolean): void {
    if (this.#done) return;
    this.#done = true;
    this.#handle.complete(rttMs);
    this.#guard.finish(this.#state, this.#failed ? true : failed, this.#probe);
  }
}

/**
 * The least loaded endpoint other than `avoid` with fewer than `limit` requests in flight, or
 * null (O(n): retries and limits only).
 */
function leastLoaded(
  endpoints: readonly EndpointState[],
  avoid: string | null,
  limit = Infinity,
): EndpointState | null {
  let best: EndpointState | null = null;
  let bestCost = Infinity;
  for (const e of endpoints) {
    if (e.key === avoid || e.load.pending >= limit) continue;
    const cost = e.cost();
    if (best === null || cost < bestCost) {
      best = e;
      bestCost = cost;
    }
  }
  return best;
}
