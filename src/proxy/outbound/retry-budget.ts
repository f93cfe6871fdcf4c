// The retry budget of one Service port (Linkerd's and Finagle's model): retries may add at most
// `ratio` of the requests of the last `windowMs`, plus `minPerSecond` a second so that a quiet
// Service can still retry at all. Over budget, a request's failure is returned as it is: retries
// never multiply an outage (a backend failing every request sees at most 1 + ratio times the
// client's requests, plus the floor). Counted in one-second buckets: deposit and withdraw are a
// clock read and an array update, no allocation.
import type { Clock } from '../../core/clock.ts';
import { systemClock } from '../../core/clock.ts';

export interface RetryBudgetOptions {
  /** Retries allowed per request in the window (Linkerd: 0.2). */
  readonly ratio?: number;
  /** Retries allowed a second whatever the requests (Linkerd: 10). */
  readonly minPerSecond?: number;
  /** The window, in whole seconds of milliseconds (Linkerd: 10 s). */
  readonly windowMs?: number;
  readonly clock?: Clock;
}

export class RetryBudget {
  private readonly ratio: number;
  private readonly floor: number;
  private readonly clock: Clock;
  private readonly requests: Float64Array;
  private readonly retries: Float64Array;
  /** The second (clock ms / 1000, floored) the newest bucket counts. */
  private second = -1;

  constructor(opts: RetryBudgetOptions = {}) {
    this.ratio = opts.ratio ?? 0.2;
    const seconds = Math.max(1, Math.round((opts.windowMs ?? 10_000) / 1000));
    this.floor = (opts.minPerSecond ?? 10) * seconds;
    this.clock = opts.clock ?? systemClock;
    this.requests = new Float64Array(seconds);
    this.retries = new Float64Array(seconds);
  }

  /** One original request (retries are not deposits). */
  deposit(): void {
    this.requests[this.advance()]! += 1;
  }

  /** Whether one more retry fits the budget; when it does, it is counted. */
  tryWithdraw(): boolean {
    const i = this.advance();
    let requests = 0;
    let retries = 0;
    for (let k = 0; k < this.requests.length; k++) {
      requests += this.requests[k]!;
      retries += this.retries[k]!;
    }
    if (retries + 1 > requests * this.ratio + this.floor) return false;
    this.retries[i]! += 1;
    return true;
  }

  /** Moves to the current second, clearing the buckets of the seconds that passed; its index. */
  private advance(): number {
    const now = Math.floor(this.clock.now() / 1000);
    const n = this.requests.length;
    if (this.second === -1 || now - this.second >= n) {
      if (this.second !== -1) {
        this.requests.fill(0);
        this.retries.fill(0);
      }
    } else {
      for (let s = this.second + 1; s <= now; s++) {
        this.requests[s % n] = 0;
        this.retries[s % n] = 0;
      }
    }
    if (now > this.second) this.second = now;
    return this.second % n;
  }
}
