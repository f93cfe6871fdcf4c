// Peak-EWMA load of one endpoint, as in linkerd2-proxy (tower's PeakEwma, after Finagle): an
// estimate of the endpoint's round-trip time that jumps up at once to any slower observation
// (the peak) and otherwise moves exponentially towards recent observations, multiplied by the
// number of requests in flight plus one.
//
// Like tower, the estimate also decays towards zero while time passes without observations
// (every cost() read decays it). That is what keeps the balancer fair over time: an endpoint that
// was slow and stopped being picked looks cheaper and cheaper until it is tried again, so a
// recovered endpoint wins its traffic back and no endpoint starves for ever.

import { systemClock, type Clock } from '../../core/clock.ts';

export interface PeakEwmaOptions {
  /** Where time comes from (virtual in tests). */
  readonly clock?: Clock;
  /** The estimate before any observation, in ms. Linkerd's default: 30 ms. */
  readonly defaultRttMs?: number;
  /** The decay time constant, in ms: an observation's weight falls by 1/e per decay. Linkerd: 10 s. */
  readonly decayMs?: number;
}

export const DEFAULT_RTT_MS = 30;
export const DEFAULT_DECAY_MS = 10_000;
/** The smallest RTT cost() uses (1 µs), like Finagle's penalty for a busy endpoint with no estimate. */
export const MIN_COST_RTT_MS = 0.001;

/** One request (or connection) in flight on an endpoint; complete it exactly once. */
export interface PeakEwmaHandle {
  /** When the request started, on the load's clock (ms). */
  readonly startedAt: number;
  /**
   * Ends the request: it no longer counts as pending. Pass the observed round-trip time in ms
   * (linkerd: until the response headers; TCP: connect time) to update the estimate; pass nothing
   * for a request that failed or was cancelled before a meaningful measurement. Calls after the
   * first are ignored, so a handle can be completed from several clean-up paths safely.
   */
  complete(rttMs?: number): void;
}

export class PeakEwma {
  readonly #clock: Clock;
  readonly #decayMs: number;
  // Numeric initialisers matter: a field declared without one starts as undefined, and V8 then
  // boxes every fractional number stored in it (a heap allocation per pick).
  #rttEstimate = 0;
  #updatedAt = 0;
  #pending = 0;

  constructor(options: PeakEwmaOptions = {}) {
    this.#clock = options.clock ?? systemClock;
    this.#decayMs = positiveOr(options.decayMs, DEFAULT_DECAY_MS);
    this.#rttEstimate = nonNegativeOr(options.defaultRttMs, DEFAULT_RTT_MS);
    this.#updatedAt = this.#clock.now();
  }

  /** The clock this load measures time with. */
  get clock(): Clock {
    return this.#clock;
  }

  /** Requests started and not yet completed. */
  get pending(): number {
    return this.#pending;
  }

  /** The current RTT estimate in ms, decayed to now. */
  rttEstimate(): number {
    return this.#observe(0, this.#clock.now());
  }

  /**
   * rtt_estimate * (pending + 1): the expected wait of one more request. Allocation-free. The
   * estimate counts as at least MIN_COST_RTT_MS here, so endpoints whose estimates decayed to
   * nothing during a long idle spell are still told apart by what they have in flight.
   */
  cost(): number {
    const rtt = this.#observe(0, this.#clock.now());
    return (rtt > MIN_COST_RTT_MS ? rtt : MIN_COST_RTT_MS) * (this.#pending + 1);
  }

  /** Counts a request as in flight until its handle completes. */
  start(): PeakEwmaHandle {
    this.#pending++;
    return new InFlight(this, this.#clock.now());
  }

  /** InFlight's end of a request: no longer pending, and its RTT observed when it has one. */
  finish(rttMs: number | undefined): void {
    this.#pending--;
    if (rttMs !== undefined && Number.isFinite(rttMs) && rttMs >= 0) {
      this.#observe(rttMs, this.#clock.now());
    }
  }

  /** Folds an observation into the estimate (0: only decay with the time that passed). */
  #observe(rttMs: number, now: number): number {
    if (rttMs > this.#rttEstimate) {
      this.#rttEstimate = rttMs;
    } else if (now > this.#updatedAt) {
      const decay = Math.exp(-(now - this.#updatedAt) / this.#decayMs);
      this.#rttEstimate = this.#rttEstimate * decay + rttMs * (1 - decay);
    }
    if (now > this.#updatedAt) this.#updatedAt = now;
    return this.#rttEstimate;
  }
}

/** A started request: one object per pick, with no closure (start() runs per request). */
class InFlight implements PeakEwmaHandle {
  readonly startedAt: number;
  readonly #load: PeakEwma;
  #done = false;

  constructor(load: PeakEwma, startedAt: number) {
    this.#load = load;
    this.startedAt = startedAt;
  }

  complete(rttMs?: number): void {
    if (this.#done) return;
    this.#done = true;
    this.#load.finish(rttMs);
  }
}

function positiveOr(value: number | undefined, fallback: number): number {
  return value !== undefined && Number.isFinite(value) && value > 0 ? value : fallback;
}

function nonNegativeOr(value: number | undefined, fallback: number): number {
  return value !== undefined && Number.isFinite(value) && value >= 0 ? value : fallback;
}
