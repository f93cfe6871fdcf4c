// A structured logger: one JSON object per line, {"ts", "level", "msg", ...fields}, to stderr by
// default. Loggers are cheap to derive (`child` binds fields once) and a level below the threshold
// costs one comparison; `enabled(level)` lets hot paths skip building fields at all. Logging never
// throws: fields that JSON cannot hold (cycles, BigInt, errors) are converted, and a failing
// writer is ignored. Repeated lines are rate-limited (log-rate-limit.ts): by default a message
// (level + msg) writes at most 10 lines per 10 s, then one summary line says how many were
// suppressed; trace and debug lines, which an operator turns on to see everything, are exempt.

import type { Clock, Timers } from './clock.ts';
import { DEFAULT_LOG_RATE_LIMIT, LogRateLimiter, type LogRateLimit } from './log-rate-limit.ts';

export { logLinesSuppressed, type LogRateLimit } from './log-rate-limit.ts';

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error';
export type LogLevelSetting = LogLevel | 'off';
/** Every level setting, for flags and files that take one. */
export const LOG_LEVEL_SETTINGS: readonly LogLevelSetting[] = [
  'trace',
  'debug',
  'info',
  'warn',
  'error',
  'off',
];
export type LogFields = Record<string, unknown>;

export interface Logger {
  trace(msg: string, fields?: LogFields): void;
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every record (the record's own fields win on a clash). */
  child(fields: LogFields): Logger;
  /** Whether a record at `level` would be written. */
  enabled(level: LogLevel): boolean;
}

export interface LoggerOptions {
  level: LogLevelSetting;
  /** Receives each record as one JSON line, without the trailing newline. Default: stderr. */
  write?: (line: string) => void;
  now?: () => Date;
  /** Repeated lines of info and above: DEFAULT_LOG_RATE_LIMIT when absent, none when null. */
  rateLimit?: LogRateLimit | null;
  /** The limiter's monotonic clock and timers (tests pass a FakeClock). */
  clock?: Clock;
  timers?: Timers;
}

const SEVERITY: Record<LogLevelSetting, number> = {
  trace: 10,
  debug: 20,
  info: 30,
  warn: 40,
  error: 50,
  off: 99,
};

/** The levels the rate limit applies to, as indices for LogRateLimiter; -1: never limited. */
const LIMITED: Record<LogLevel, number> = { trace: -1, debug: -1, info: 0, warn: 1, error: 2 };
const LIMITED_LEVELS: readonly LogLevel[] = ['info', 'warn', 'error'];

/** Keys every record has; a field with one of these names is written as `field.<name>`. */
const RESERVED = new Set(['ts', 'level', 'msg']);

function writeToStderr(line: string): void {
  process.stderr.write(line + '\n');
}

/** Errors become {message, code}; BigInts become strings. */
function plainReplacer(_key: string, value: unknown): unknown {
  if (value instanceof Error) {
    const code = (value as { code?: unknown }).code;
    return code === undefined ? { message: value.message } : { message: value.message, code };
  }
  if (typeof value === 'bigint') return value.toString();
  return value;
}

/** As plainReplacer, and an object met a second time becomes "[Circular]". */
function cycleSafeReplacer(): (key: string, value: unknown) => unknown {
  const seen = new WeakSet<object>();
  return (key, value) => {
    const v = plainReplacer(key, value);
    if (typeof v === 'object' && v !== null) {
      if (seen.has(v)) return '[Circular]';
      seen.add(v);
    }
    return v;
  };
}

function serialize(record: LogFields): string {
  try {
    return JSON.stringify(record, plainReplacer);
  } catch {
    // A cycle, or a toJSON that throws: retry with the slower, cycle-safe replacer.
  }
  try {
    return JSON.stringify(record, cycleSafeReplacer());
  } catch {
    return JSON.stringify({
      ts: record.ts,
      level: record.level,
      msg: record.msg,
      logError: 'unserializable',
    });
  }
}

class JsonLogger implements Logger {
  private readonly threshold: number;
  private readonly writeLine: (line: string) => void;
  private readonly now: () => Date;
  private readonly bound: LogFields | undefined;
  /** Shared by a logger and all its children. */
  private readonly limiter: LogRateLimiter | null;

  constructor(
    threshold: number,
    write: (line: string) => void,
    now: () => Date,
    bound: LogFields | undefined,
    limiter: LogRateLimiter | null,
  ) {
    this.threshold = threshold;
    this.writeLine = write;
    this.now = now;
    this.bound = bound;
    this.limiter = limiter;
  }

  enabled(level: LogLevel): boolean {
    return SEVERITY[level] >= this.threshold;
  }

  trace(msg: string, fields?: LogFields): void {
    if (SEVERITY.trace >= this.threshold) this.emit('trace', msg, fields);
  }
  debug(msg: string, fields?: LogFields): void {
    if (SEVERITY.debug >= this.threshold) this.emit('debug', msg, fields);
  }
  info(msg: string, fields?: LogFields): void {
    if (SEVERITY.info >= this.threshold) this.emit('info', msg, fields);
  }
  warn(msg: string, fields?: LogFields): void {
    if (SEVERITY.warn >= this.threshold) this.emit('warn', msg, fields);
  }
  error(msg: string, fields?: LogFields): void {
    if (SEVERITY.error >= this.threshold) this.emit('error', msg, fields);
  }

  child(fields: LogFields): Logger {
    const merged = this.bound === undefined ? { ...fields } : { ...this.bound, ...fields };
    return new JsonLogger(this.threshold, this.writeLine, this.now, merged, this.limiter);
  }

  private emit(level: LogLevel, msg: string, fields: LogFields | undefined): void {
    try {
      const text = typeof msg === 'string' ? msg : String(msg);
      const limited = LIMITED[level];
      if (limited >= 0 && this.limiter !== null && !this.limiter.admit(limited, text)) return;
      const record: LogFields = { ts: timestamp(this.now), level, msg: text };
      if (this.bound !== undefined) addFields(record, this.bound);
      if (fields !== undefined && fields !== null) addFields(record, fields);
      this.writeLine(serialize(record));
    } catch {
      // Logging must never take the caller down (e.g. EPIPE on stderr, a throwing getter).
    }
  }
}

function timestamp(now: () => Date): string {
  try {
    return now().toISOString();
  } catch {
    return new Date().toISOString();
  }
}

function addFields(record: LogFields, fields: LogFields): void {
  for (const key of Object.keys(fields)) {
    record[RESERVED.has(key) ? `field.${key}` : key] = fields[key];
  }
}

export function createLogger(opts: LoggerOptions): Logger {
  const threshold = SEVERITY[opts.level] ?? SEVERITY.info;
  const write = opts.write ?? writeToStderr;
  const now = opts.now ?? (() => new Date());
  const limit = opts.rateLimit === undefined ? DEFAULT_LOG_RATE_LIMIT : opts.rateLimit;
  const limiter =
    limit === null || threshold > SEVERITY.error
      ? null
      : new LogRateLimiter(
          limit,
          LIMITED_LEVELS.length,
          (level, msg, suppressed, intervalMs) =>
            write(
              serialize({
                ts: timestamp(now),
                level: LIMITED_LEVELS[level],
                msg: `${suppressed} similar lines suppressed`,
                message: msg,
                suppressed,
                intervalMs,
              }),
            ),
          opts.clock,
          opts.timers,
        );
  return new JsonLogger(threshold, write, now, undefined, limiter);
}

/** A logger that writes nothing (for tests and for callers that were given none). */
export const silentLogger: Logger = createLogger({ level: 'off', write: () => {} });
