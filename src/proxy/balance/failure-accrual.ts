// Failure accrual of one endpoint (Linkerd's and Finagle's circuit breaker), as a state machine
// over explicit times, so tests drive it with a fake clock:
//
//   closed --(trip)--> open --(penalty over, one request picked)--> probing
//   probing --(the probe succeeded)--> closed      probing --(the probe failed)--> open
//
// `consecutive` trips after maxFailures failures in a row; `success-rate` trips when the success
// rate of roughly the last windowMs (counts decayed exponentially with windowMs as their time
// constant: O(1), no allocation) falls below successRate once at least minRequests have counted.
// The k-th trip in a row keeps the endpoint out for min(maxPenalty, minPenalty * 2^(k-1)), less a
// random share of up to jitterRatio of it (so it never exceeds maxPenalty and endpoints tripped
// together are not probed together). A success of the probe closes the breaker and forgets the
// trips; a failed probe opens it again with the next penalty. A probe that ends without a verdict
// (cancelled) opens it again at once with the same penalty step: the next request probes.
//
// What counts as a failure is the exchange's business (countsAgainstEndpoint below, and the
// protocols' 5xx / gRPC status checks); this file only counts.
import type { FailureAccrualPolicy } from '../../core/routes/service-annotations.ts';
import type { ProxyErrorReason } from '../errors.ts';

export type BreakerState = 'closed' | 'open' | 'probing';

/** What one outcome did to the breaker (null: nothing worth telling). */
export type BreakerTransition = 'tripped' | 'recovered' | 'reopened' | null;

export class FailureAccrual {
  readonly policy: FailureAccrualPolicy;
  readonly #random: () => number;
  #state: BreakerState = 'closed';
  #consecutive = 0;
  // success-rate mode: decayed counts (numbers from the start: V8 keeps them unboxed)
  #successes = 0;
  #total = 0;
  #countedAt = 0;
  /** Trips in a row since the last recovery (the penalty's exponent). */
  #trips = 0;
  #openUntil = 0;
  #penaltyMs = 0;

  constructor(policy: FailureAccrualPolicy, random: () => number = Math.random) {
    this.policy = policy;
    this.#random = random;
  }

  get state(): BreakerState {
    return this.#state;
  }

  /** Failures in a row so far (consecutive mode). */
  get consecutiveFailures(): number {
    return this.#consecutive;
  }

  /** When an open breaker may be probed (ms on the caller's clock); 0 when closed. */
  get openUntil(): number {
    return this.#state === 'closed' ? 0 : this.#openUntil;
  }

  /** The penalty of the last trip, in ms. */
  get penaltyMs(): number {
    return this.#penaltyMs;
  }

  /** Trips in a row since the last recovery. */
  get trips(): number {
    return this.#trips;
  }

  /** The success rate the breaker currently sees (success-rate mode), NaN before any request. */
  successRate(now: number): number {
    this.#decay(now);
    return this.#total > 0 ? this.#successes / this.#total : NaN;
  }

  /** Whether an open breaker's penalty is over: the next request may probe. */
  probeDue(now: number): boolean {
    return this.#state === 'open' && now >= this.#openUntil;
  }

  /** Makes the request about to go out the probe, if the penalty is over; true when it did. */
  startProbe(now: number): boolean {
    if (!this.probeDue(now)) return false;
    this.#state = 'probing';
    return true;
  }

  /** A probe ended without a verdict: the next request probes instead. */
  abandonProbe(now: number): void {
    if (this.#state !== 'probing') return;
    this.#state = 'open';
    this.#openUntil = now;
  }

  /** One exchange's outcome; `isProbe` for the probe's own outcome. */
  record(failed: boolean, now: number, isProbe: boolean): BreakerTransition {
    if (this.#state === 'probing') {
      // Outcomes of requests that started before the trip are not the probe's.
      if (!isProbe) return null;
      if (failed) {
        this.#open(now);
        return 'reopened';
      }
      this.#close(now);
      return 'recovered';
    }
    if (this.#state === 'open') return null; // late outcomes of requests sent before the trip
    if (this.policy.mode === 'consecutive') {
      if (!failed) {
        this.#consecutive = 0;
        return null;
      }
      if (++this.#consecutive < this.policy.maxFailures) return null;
    } else {
      this.#decay(now);
      this.#total += 1;
      if (!failed) {
        this.#successes += 1;
        return null;
      }
      if (this.#total < this.policy.minRequests || this.#successes / this.#total >= this.policy.successRate)
        return null;
    }
    this.#open(now);
    return 'tripped';
  }

  #open(now: number): void {
    const { minPenaltyMs, maxPenaltyMs, jitterRatio } = this.policy;
    this.#trips += 1;
    // 2^(trips-1) without overflowing: past 2^40 the cap has long applied.
    const base = Math.min(maxPenaltyMs, minPenaltyMs * 2 ** Math.min(this.#trips - 1, 40));
    this.#penaltyMs = base * (1 - jitterRatio * this.#random());
    this.#openUntil = now + this.#penaltyMs;
    this.#state = 'open';
  }

  #close(now: number): void {
    this.#state = 'closed';
    this.#trips = 0;
    this.#consecutive = 0;
    this.#successes = 0;
    this.#total = 0;
    this.#countedAt = now;
  }

  #decay(now: number): void {
    if (this.policy.mode !== 'success-rate' || now <= this.#countedAt) return;
    const factor = Math.exp(-(now - this.#countedAt) / this.policy.windowMs);
    this.#successes *= factor;
    this.#total *= factor;
    this.#countedAt = now;
  }
}

/**
 * Whether a proxy-made answer blames the endpoint the request went to: it could not be reached,
 * reset or broke the exchange, or did not answer in time. Not: what this proxy decided itself
 * (no identity of its own, local limits, routes, policy).
 */
export function countsAgainstEndpoint(reason: ProxyErrorReason): boolean {
  switch (reason) {
    case 'connect-failed':
    case 'connect-timeout':
    case 'upstream-reset':
    case 'upstream-bad-response':
    case 'response-timeout':
    case 'request-timeout':
    case 'backend-request-timeout':
    case 'identity-mismatch':
    case 'tls-handshake-failed':
    case 'h2-protocol-error':
      return true;
    default:
      return false;
  }
}

/**
 * gRPC statuses that count as the endpoint failing: UNKNOWN (2, an unhandled exception),
 * INTERNAL (13), UNAVAILABLE (14), DATA_LOSS (15). The others are answers about the request
 * (NOT_FOUND, INVALID_ARGUMENT, PERMISSION_DENIED, ...) or the client's own deadline.
 */
export function isFailedGrpcStatus(status: number): boolean {
  return status === 2 || status === 13 || status === 14 || status === 15;
}

/**
 * Whether a response's head says the endpoint failed: a 5xx, or (gRPC, trailers-only) a failing
 * grpc-status in the headers. A gRPC status sent in trailers after a body is not seen here.
 */
export function isFailedResponse(status: number, grpcStatus: unknown): boolean {
  if (status >= 500) return true;
  return typeof grpcStatus === 'string' && grpcStatus.length < 4 && isFailedGrpcStatus(Number(grpcStatus));
}
