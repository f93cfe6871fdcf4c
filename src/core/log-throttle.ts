// One log line per interval for an event that can recur without end (a flood of refusals, limits
// hit, connections shed): each line says how many occurrences it left out since the previous one,
// so the log stays readable and nothing is lost from the count. (The logger's own rate limit,
// log-rate-limit.ts, protects against any repeated line; this gives the events that are expected
// to repeat a summary of their own.)

export const LOG_THROTTLE_INTERVAL_MS = 10_000;

export class LogThrottle {
  private readonly intervalMs: number;
  private readonly now: () => number;
  private lastAt = -Infinity;
  private skipped = 0;

  constructor(intervalMs = LOG_THROTTLE_INTERVAL_MS, now: () => number = Date.now) {
    this.intervalMs = intervalMs;
    this.now = now;
  }

  /** An occurrence: `write(left out since the last line)` runs when a line is due, else it is counted. */
  note(write: (skipped: number) => void): void {
    const now = this.now();
    if (now - this.lastAt < this.intervalMs) {
      this.skipped++;
      return;
    }
    write(this.skipped);
    this.lastAt = now;
    this.skipped = 0;
  }
}
