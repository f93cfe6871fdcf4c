// Time, injectable. Balancers, breakers and rotation ask a Clock for "now" and a Timers for
// "later" instead of calling performance.now / setTimeout, so tests can run them in virtual time
// with FakeClock (which is both) and assert exact outcomes without sleeping.

/** A monotonic clock in milliseconds (fractional). Never goes backwards. */
export interface Clock {
  now(): number;
}

/** A scheduled callback that can be cancelled; cancelling twice or after it ran is harmless. */
export interface TimerHandle {
  cancel(): void;
}

/** Schedules callbacks `ms` milliseconds from now, on the same timeline as its Clock. */
export interface Timers {
  setTimeout(callback: () => void, ms: number): TimerHandle;
}

/** The process's monotonic clock (performance.now). */
export const systemClock: Clock = { now: () => performance.now() };

/** Node's timers. Unref'd: a pending timer alone never keeps the process alive. */
export const systemTimers: Timers = {
  setTimeout(callback, ms) {
    const timer = setTimeout(callback, Math.max(0, ms));
    timer.unref();
    return { cancel: () => clearTimeout(timer) };
  },
};

interface FakeTimer {
  readonly dueAt: number;
  readonly seq: number;
  readonly callback: () => void;
  cancelled: boolean;
}

/**
 * Virtual time for tests: `now()` only moves when `advance(ms)` is called, and `advance` runs the
 * timers that fall due on the way, in order of due time (ties in the order they were scheduled),
 * with `now()` set to each timer's due time while it runs.
 */
export class FakeClock implements Clock, Timers {
  #now: number;
  #seq = 0;
  #timers: FakeTimer[] = [];

  constructor(startMs = 0) {
    this.#now = startMs;
  }

  now(): number {
    return this.#now;
  }

  /** Moves time forward by `ms` (>= 0), running every timer due up to the new time. */
  advance(ms: number): void {
    if (!(ms >= 0) || !Number.isFinite(ms)) throw new RangeError(`FakeClock.advance: bad duration ${ms}`);
    const until = this.#now + ms;
    // A bounded loop: each iteration removes one timer; callbacks may schedule more, but only
    // those due by `until` run now.
    for (;;) {
      const next = this.#nextDue(until);
      if (next === undefined) break;
      this.#timers.splice(this.#timers.indexOf(next), 1);
      this.#now = Math.max(this.#now, next.dueAt);
      if (!next.cancelled) next.callback();
    }
    this.#now = until;
  }

  setTimeout(callback: () => void, ms: number): TimerHandle {
    const timer: FakeTimer = {
      dueAt: this.#now + Math.max(0, ms),
      seq: this.#seq++,
      callback,
      cancelled: false,
    };
    this.#timers.push(timer);
    return {
      cancel: () => {
        timer.cancelled = true;
      },
    };
  }

  /** How many timers are scheduled and not cancelled (tests check nothing leaks). */
  get pendingTimers(): number {
    return this.#timers.filter((t) => !t.cancelled).length;
  }

  #nextDue(until: number): FakeTimer | undefined {
    let best: FakeTimer | undefined;
    for (const t of this.#timers) {
      if (t.dueAt > until) continue;
      if (best === undefined || t.dueAt < best.dueAt || (t.dueAt === best.dueAt && t.seq < best.seq))
        best = t;
    }
    return best;
  }
}
