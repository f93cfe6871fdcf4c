// Unit tests for the JSON logger (src/core/log.ts) and the access log
// (src/proxy/telemetry/access-log.ts): level filtering, record shape, children, unserializable
// fields, the rate limit of repeated lines (src/core/log-rate-limit.ts, in virtual time), and
// access-log lines, drops and bad paths.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TrellisError } from '../../src/core/errors.ts';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { FakeClock } from '../../src/core/clock.ts';
import { createLogger, logLinesSuppressed, type LogLevelSetting } from '../../src/core/log.ts';
import { ProxyMetrics } from '../../src/proxy/telemetry/metrics.ts';
import { openAccessLog, type AccessLogEntry } from '../../src/proxy/telemetry/access-log.ts';

const FIXED = new Date('2030-01-02T03:04:05.678Z');

function capture(level: LogLevelSetting) {
  const lines: string[] = [];
  const log = createLogger({ level, write: (l) => lines.push(l), now: () => FIXED });
  return { log, lines, records: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

test('levels below the threshold are filtered out', () => {
  const cases: [LogLevelSetting, string[]][] = [
    ['trace', ['trace', 'debug', 'info', 'warn', 'error']],
    ['debug', ['debug', 'info', 'warn', 'error']],
    ['info', ['info', 'warn', 'error']],
    ['warn', ['warn', 'error']],
    ['error', ['error']],
    ['off', []],
  ];
  for (const [level, expected] of cases) {
    const { log, records } = capture(level);
    log.trace('t');
    log.debug('d');
    log.info('i');
    log.warn('w');
    log.error('e');
    assert.deepEqual(
      records().map((r) => r.level),
      expected,
      `level ${level}`,
    );
    for (const l of ['trace', 'debug', 'info', 'warn', 'error'] as const) {
      assert.equal(log.enabled(l), expected.includes(l), `${level}.enabled(${l})`);
    }
  }
});

test('one JSON line per record: ts, level, msg, then fields', () => {
  const { log, lines } = capture('info');
  log.info('listening', { address: '127.0.0.1:4140', n: 3, nested: { a: [1, 2] } });
  assert.equal(lines.length, 1);
  assert.ok(!lines[0]!.includes('\n'));
  assert.equal(
    lines[0],
    '{"ts":"2030-01-02T03:04:05.678Z","level":"info","msg":"listening","address":"127.0.0.1:4140","n":3,"nested":{"a":[1,2]}}',
  );
});

test('child loggers bind fields; record fields win; reserved keys are not overwritten', () => {
  const { log, records } = capture('debug');
  const child = log.child({ component: 'outbound', conn: 1 }).child({ conn: 2 });
  child.debug('hello', { extra: true });
  child.info('again', { conn: 3, msg: 'sneaky', level: 'nope' });
  log.info('parent');
  const [a, b, c] = records();
  assert.deepEqual(a, {
    ts: FIXED.toISOString(),
    level: 'debug',
    msg: 'hello',
    component: 'outbound',
    conn: 2,
    extra: true,
  });
  assert.equal(b!.conn, 3);
  assert.equal(b!.msg, 'again');
  assert.equal(b!.level, 'info');
  assert.equal(b!['field.msg'], 'sneaky');
  assert.equal(b!['field.level'], 'nope');
  assert.deepEqual(c, { ts: FIXED.toISOString(), level: 'info', msg: 'parent' });
});

test('errors become {message, code}; cycles and BigInts do not throw', () => {
  const { log, records } = capture('info');
  const circular: Record<string, unknown> = { name: 'loop' };
  circular.self = circular;
  log.error('failed', { err: new TrellisError('TRELLIS_ERR_X', 'boom'), plain: new Error('oops') });
  log.warn('odd', { circular, big: 12345678901234567890n });
  const throwingGetter = {
    get x() {
      throw new Error('getter');
    },
  };
  log.info('getter', { obj: throwingGetter });
  const [a, b, c] = records();
  assert.deepEqual(a!.err, { message: 'boom', code: 'TRELLIS_ERR_X' });
  assert.deepEqual(a!.plain, { message: 'oops' });
  assert.deepEqual(b!.circular, { name: 'loop', self: '[Circular]' });
  assert.equal(b!.big, '12345678901234567890');
  assert.equal(c!.msg, 'getter');
  assert.equal(c!.logError, 'unserializable');
});

test('a throwing writer or clock never reaches the caller', () => {
  const log = createLogger({
    level: 'info',
    write: () => {
      throw new Error('EPIPE');
    },
  });
  assert.doesNotThrow(() => log.error('x', { a: 1 }));
  const lines: string[] = [];
  const badClock = createLogger({
    level: 'info',
    write: (l) => lines.push(l),
    now: () => new Date(NaN),
  });
  badClock.info('still logged');
  assert.equal(JSON.parse(lines[0]!).msg, 'still logged');
});

/** A logger in virtual time with a small rate limit: `lines` per `intervalMs` per message. */
function limited(lines: number, intervalMs: number, level: LogLevelSetting = 'trace') {
  const clock = new FakeClock();
  const out: string[] = [];
  const log = createLogger({
    level,
    write: (l) => out.push(l),
    now: () => FIXED,
    rateLimit: { lines, intervalMs },
    clock,
    timers: clock,
  });
  const records = () => out.map((l) => JSON.parse(l) as Record<string, unknown>);
  return { log, clock, out, records };
}

test('rate limit: a repeated message writes N lines per interval, then one summary when it ends', () => {
  const { log, clock, records } = limited(3, 1000);
  const before = logLinesSuppressed();
  for (let i = 0; i < 10; i++) log.warn('upstream reset', { i });
  assert.deepEqual(
    records().map((r) => r.i),
    [0, 1, 2],
  );
  assert.equal(logLinesSuppressed() - before, 7, 'the process-wide counter counts every suppressed line');
  assert.equal(clock.pendingTimers, 1, 'one timer for the summary');
  clock.advance(999);
  assert.equal(records().length, 3, 'no summary before the window ends');
  clock.advance(1);
  assert.deepEqual(records()[3], {
    ts: FIXED.toISOString(),
    level: 'warn',
    msg: '7 similar lines suppressed',
    message: 'upstream reset',
    suppressed: 7,
    intervalMs: 1000,
  });
  assert.equal(clock.pendingTimers, 0, 'no timer left once nothing is suppressed');
  // A new window: the message is written again.
  log.warn('upstream reset', { i: 10 });
  assert.equal(records()[4]!.i, 10);
  clock.advance(5000);
  assert.equal(records().length, 5, 'no summary for a window that suppressed nothing');
});

test('rate limit: a steady flood costs N lines and one summary per interval, and is all counted', () => {
  const { log, clock, records } = limited(2, 1000);
  const before = logLinesSuppressed();
  // 100 lines a second for 10 s, each second's lines spread over it.
  for (let t = 0; t < 1000; t++) {
    log.error('h2 exchange failed');
    clock.advance(10);
  }
  clock.advance(1000);
  const rs = records();
  const summaries = rs.filter((r) => r.suppressed !== undefined);
  assert.equal(rs.length - summaries.length, 20, '2 lines in each of 10 windows');
  assert.equal(summaries.length, 10);
  const suppressed = summaries.reduce((n, r) => n + (r.suppressed as number), 0);
  assert.equal(suppressed, 980);
  assert.equal(logLinesSuppressed() - before, 980);
  assert.ok(rs.every((r) => r.level === 'error'));
  assert.equal(clock.pendingTimers, 0);
});

test('rate limit: per level and msg; children share their root budget; trace and debug are exempt', () => {
  const { log, clock, records } = limited(1, 1000);
  const child = log.child({ component: 'inbound' });
  log.warn('a');
  log.error('a'); // another level: another message
  log.warn('b');
  child.warn('a'); // the same message as the first: suppressed
  child.info('a');
  for (let i = 0; i < 5; i++) {
    log.debug('per request');
    log.trace('per byte');
  }
  assert.deepEqual(
    records().map((r) => `${r.level} ${r.msg}`),
    [
      'warn a',
      'error a',
      'warn b',
      'info a',
      ...Array.from({ length: 5 }, () => ['debug per request', 'trace per byte']).flat(),
    ],
  );
  clock.advance(1000);
  assert.deepEqual(records().at(-1), {
    ts: FIXED.toISOString(),
    level: 'warn',
    msg: '1 similar lines suppressed',
    message: 'a',
    suppressed: 1,
    intervalMs: 1000,
  });
});

test('rate limit: defaults to 10 lines per 10 s; null turns it off; bad limits are refused', () => {
  const clock = new FakeClock();
  const out: string[] = [];
  const log = createLogger({ level: 'info', write: (l) => out.push(l), clock, timers: clock });
  for (let i = 0; i < 20; i++) log.info('x');
  assert.equal(out.length, 10);
  clock.advance(10_000);
  assert.equal(JSON.parse(out[10]!).suppressed, 10);
  const off: string[] = [];
  const unlimited = createLogger({ level: 'info', write: (l) => off.push(l), rateLimit: null });
  for (let i = 0; i < 50; i++) unlimited.warn('x');
  assert.equal(off.length, 50);
  for (const rateLimit of [
    { lines: 0, intervalMs: 1000 },
    { lines: 1.5, intervalMs: 1000 },
    { lines: 1, intervalMs: 0 },
    { lines: 1, intervalMs: NaN },
  ])
    assert.throws(() => createLogger({ level: 'info', rateLimit }), RangeError, JSON.stringify(rateLimit));
});

test('rate limit: distinct messages are tracked up to a bound, the rest share one window', () => {
  const { log, clock, records } = limited(1, 1000, 'info');
  for (let i = 0; i < 1000; i++) log.info(`msg ${i}`); // a caller that puts data in msg
  assert.equal(records().length, 1000);
  for (let i = 1000; i < 1100; i++) log.info(`msg ${i}`);
  assert.equal(records().length, 1001, 'past the bound, new messages share one window');
  clock.advance(1000);
  const summary = records().at(-1)!;
  assert.deepEqual([summary.message, summary.suppressed], ['(other messages)', 99]);
  // Ended windows are forgotten: tracking starts afresh.
  log.info('msg 5000');
  assert.equal(records().at(-1)!.msg, 'msg 5000');
});

test('rate limit: a throwing writer during a summary does not break the logger or its timer', () => {
  const clock = new FakeClock();
  let fail = false;
  const out: string[] = [];
  const log = createLogger({
    level: 'info',
    write: (l) => {
      if (fail) throw new Error('EPIPE');
      out.push(l);
    },
    rateLimit: { lines: 1, intervalMs: 100 },
    clock,
    timers: clock,
  });
  log.warn('x');
  log.warn('x');
  fail = true;
  assert.doesNotThrow(() => clock.advance(100));
  fail = false;
  log.warn('x');
  assert.equal(out.length, 2);
});

test('rate limit: its timer does not keep a process alive', async () => {
  // A process that floods one message and then has nothing left to do exits at once, not after
  // the 10 s window whose summary is pending.
  const script = `
    import { createLogger } from ${JSON.stringify(new URL('../../src/core/log.ts', import.meta.url).href)};
    const log = createLogger({ level: 'info', write: () => {} });
    for (let i = 0; i < 100; i++) log.warn('flood');
  `;
  const started = Date.now();
  await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], { timeout: 8000 });
  assert.ok(Date.now() - started < 8000);
});

test('trellis_log_lines_suppressed_total renders the process-wide count', () => {
  const { log } = limited(1, 1000);
  log.warn('counted');
  log.warn('counted');
  const line = new ProxyMetrics()
    .render()
    .split('\n')
    .find((l) => l.startsWith('trellis_log_lines_suppressed_total '));
  assert.equal(line, `trellis_log_lines_suppressed_total ${logLinesSuppressed()}`);
  assert.ok(logLinesSuppressed() >= 1);
});

const ENTRY: AccessLogEntry = {
  ts: Date.UTC(2030, 0, 2, 3, 4, 5, 678),
  direction: 'outbound',
  protocol: 'http1',
  method: 'GET',
  authority: 'web.default:8080',
  path: '/a "quoted"\npath',
  status: 200,
  durationMs: 3.5,
  bytesIn: 10,
  bytesOut: 2048,
  peer: '127.0.0.1:50000',
};

test('access log: off is null; a file gets one JSON line per record', async (t) => {
  assert.equal(openAccessLog('off'), null);
  const dir = mkdtempSync(join(tmpdir(), 'trellis-access-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'access.log');
  const log = openAccessLog(file)!;
  try {
    log.record(ENTRY);
    log.record({ ...ENTRY, status: 0, error: 'connect-failed' });
  } finally {
    await log.close();
  }
  await log.close(); // idempotent
  log.record(ENTRY); // after close: dropped, no throw
  assert.equal(log.dropped, 1);
  const lines = readFileSync(file, 'utf8').split('\n');
  assert.equal(lines.at(-1), '');
  const [a, b] = lines.slice(0, -1).map((l) => JSON.parse(l));
  assert.equal(lines.length, 3);
  assert.deepEqual(a, { ...ENTRY, ts: '2030-01-02T03:04:05.678Z' });
  assert.equal(b.status, 0);
  assert.equal(b.error, 'connect-failed');
});

test('access log: lines are dropped, not buffered without bound, when the stream is behind', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'trellis-access-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'access.log');
  const warnings: string[] = [];
  const logger = createLogger({ level: 'warn', write: (l) => warnings.push(l) });
  const log = openAccessLog(file, { maxBufferedBytes: 1000, log: logger })!;
  try {
    for (let i = 0; i < 100; i++) log.record(ENTRY); // synchronously: nothing is flushed yet
  } finally {
    await log.close();
  }
  const written = readFileSync(file, 'utf8').split('\n').length - 1;
  assert.ok(log.dropped > 0, 'some lines dropped');
  assert.equal(written + log.dropped, 100);
  assert.ok(written > 0 && written < 100);
  assert.equal(warnings.length, 1);
  assert.match(warnings[0]!, /dropping lines/);
});

test('access log: a path that cannot be opened is a ConfigError naming log.access', () => {
  assert.throws(
    () => openAccessLog('/nonexistent-dir-for-trellis-test/access.log'),
    (err: unknown) =>
      err instanceof TrellisError && err.code === 'TRELLIS_ERR_CONFIG' && /log\.access/.test(err.message),
  );
});
