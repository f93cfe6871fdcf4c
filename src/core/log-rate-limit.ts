// Rate limiting of repeated log lines (issue 9, 2.7): a proxy under attack fails the same way
// thousands of times a second, and one warning per failure would flood the log and the disk. Both
// limits here count in the same fixed windows (a window starts at its first line and lasts
// `intervalMs`; a line past the window's allowance is counted, not written):
//
// - LogRateLimiter, the logger's own limit on any repeated line: each message (level + msg) may
//   write `lines` lines per window; when the window ends one summary line says how many were
//   suppressed. Admitting a line costs one clock read and one Map lookup; the only timer (for the
//   summaries of windows that end in silence) exists while something is suppressed, and is unref'd.
// - LogThrottle, for an event that is expected to recur without end (a flood of refusals, limits
//   hit, connections shed): one line per window, which itself says how many occurrences it left
//   out since the previous one, so the log stays readable and nothing is lost from the count.

import { systemClock, systemTimers, type Clock, type TimerHandle, type Timers } from './clock.ts';

export interface LogRateLimit {
  /** Lines of one message (level and msg) written per window; more are suppressed. */
  readonly lines: number;
  /** The window's length, in milliseconds. */
  readonly intervalMs: number;
}

/** 10 lines per message per 10 s: a failure that repeats shows, a flood costs 1 line a second. */
export const DEFAULT_LOG_RATE_LIMIT: LogRateLimit = { lines: 10, intervalMs: 10_000 };

/**
 * Distinct messages tracked per level. Messages are constant strings in the code (variable data
 * goes in fields), so this is never reached unless a caller puts data in msg; past it, messages
 * not yet tracked share one window, summarised as "other messages".
 */
const MAX_TRACKED = 1000;
const OTHER = '(other messages)';

let suppressedInProcess = 0;

/** Log lines suppressed by every logger of this process (trellis_log_lines_suppressed_total). */
export function logLinesSuppressed(): number {
  return suppressedInProcess;
}

/** One window: when it started, the lines it wrote, and those it suppressed. */
interface Window {
  start: number;
  written: number;
  suppressed: number;
}

/**
 * Starts `w` again at `now` when its `intervalMs` have passed; returns how many lines the window
 * that ended suppressed (0 when it goes on).
 */
function restartIfEnded(w: Window, now: number, intervalMs: number): number {
  if (now - w.start < intervalMs) return 0;
  const suppressed = w.suppressed;
  w.start = now;
  w.written = 0;
  w.suppressed = 0;
  return suppressed;
}

/** Takes one of the window's `lines` (true), or counts the line as suppressed (false). */
function takeLine(w: Window, lines: number): boolean {
  if (w.written < lines) {
    w.written++;
    return true;
  }
  w.suppressed++;
  return false;
}

/** Writes "N similar lines suppressed" for `msg` at `level` (an index into the caller's levels). */
export type SummaryWriter = (level: number, msg: string, suppressed: number, intervalMs: number) => void;

export class LogRateLimiter {
  private readonly lines: number;
  private readonly intervalMs: number;
  private readonly clock: Clock;
  private readonly timers: Timers;
  private readonly writeSummary: SummaryWriter;
  /** Per level, the window of each message. */
  private readonly windows: Map<string, Window>[];
  private timer: TimerHandle | null = null;

  constructor(
    limit: LogRateLimit,
    levels: number,
    writeSummary: SummaryWriter,
    clock: Clock = systemClock,
    timers: Timers = systemTimers,
  ) {
    if (!Number.isInteger(limit.lines) || limit.lines < 1)
      throw new RangeError(`log rate limit: lines must be a positive integer, not ${limit.lines}`);
    if (!(limit.intervalMs > 0) || !Number.isFinite(limit.intervalMs))
      throw new RangeError(`log rate limit: intervalMs must be positive, not ${limit.intervalMs}`);
    this.lines = limit.lines;
    this.intervalMs = limit.intervalMs;
    this.clock = clock;
    this.timers = timers;
    this.writeSummary = writeSummary;
    this.windows = Array.from({ length: levels }, () => new Map<string, Window>());
  }

  /** Whether a line of `msg` at `level` may be written now; counts it when it may not. */
  admit(level: number, msg: string): boolean {
    const now = this.clock.now();
    const windows = this.windows[level]!;
    let w = windows.get(msg);
    if (w === undefined) {
      if (windows.size >= MAX_TRACKED) {
        this.flushEnded(now);
        if (windows.size >= MAX_TRACKED) msg = OTHER;
      }
      w = windows.get(msg);
      if (w === undefined) {
        w = { start: now, written: 0, suppressed: 0 };
        windows.set(msg, w);
      }
    }
    const ended = restartIfEnded(w, now, this.intervalMs);
    if (ended > 0) this.summarise(level, msg, ended);
    if (takeLine(w, this.lines)) return true;
    suppressedInProcess++;
    if (this.timer === null) this.schedule(w.start + this.intervalMs - now);
    return false;
  }

  /** Writes the summaries of the windows that have ended and forgets those windows. */
  private flushEnded(now: number): void {
    this.windows.forEach((windows, level) => {
      for (const [msg, w] of windows) {
        if (now - w.start < this.intervalMs) continue;
        if (w.suppressed > 0) this.summarise(level, msg, w.suppressed);
        windows.delete(msg);
      }
    });
  }

  private summarise(level: number, msg: string, suppressed: number): void {
    try {
      this.writeSummary(level, msg, suppressed, this.intervalMs);
    } catch {
      // A failing writer must not break logging (nor the timer).
    }
  }

  private schedule(ms: number): void {
    this.timer = this.timers.setTimeout(() => this.onTimer(), Math.max(0, ms));
  }

  /** A window with suppressed lines has ended: summarise; come back for the next one, if any. */
  private onTimer(): void {
    this.timer = null;
    const now = this.clock.now();
    this.flushEnded(now);
    let next = Infinity;
    for (const windows of this.windows)
      for (const w of windows.values())
        if (w.suppressed > 0) next = Math.min(next, w.start + this.intervalMs);
    if (next !== Infinity) this.schedule(next - now);
  }
}

export const LOG_THROTTLE_INTERVAL_MS = 10_000;

/** One line per interval for an event that recurs, each with the count it left out (see the file comment). */
export class LogThrottle {
  private readonly intervalMs: number;
  private readonly now: () => number;
  /** A window of one line; it has not started until the first occurrence. */
  private readonly window: Window = { start: -Infinity, written: 0, suppressed: 0 };

  constructor(intervalMs = LOG_THROTTLE_INTERVAL_MS, now: () => number = Date.now) {
    this.intervalMs = intervalMs;
    this.now = now;
  }

  /** An occurrence: `write(left out since the last line)` runs when a line is due, else it is counted. */
  note(write: (skipped: number) => void): void {
    const skipped = restartIfEnded(this.window, this.now(), this.intervalMs);
    if (takeLine(this.window, 1)) write(skipped);
  }
}
