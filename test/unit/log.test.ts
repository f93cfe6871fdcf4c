// Unit tests for the JSON logger (src/core/log.ts) and the access log
// (src/proxy/telemetry/access-log.ts): level filtering, record shape, children, unserializable
// fields, and access-log lines, drops and bad paths.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TrellisError } from '../../src/core/errors.ts';
import { createLogger, type LogLevelSetting } from '../../src/core/log.ts';
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
