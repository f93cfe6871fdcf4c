// The exporter's transport when the collector is the control plane's own (trace-follow.ts): it
// moves with the control file's collector, and stays where it is when the file names a collector
// that is not the control plane's own (no token file) or the same one; the exporter's warnings name
// the collector its exports go to after a move.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeControlFile, type ControlFile } from '../../src/api/control-file.ts';
import { createLogger, silentLogger } from '../../src/core/log.ts';
import { ProxyMetrics } from '../../src/proxy/telemetry/metrics.ts';
import type { ControlPlaneLocator } from '../../src/proxy/resolve/control-plane-address.ts';
import { SpanExporter, type SpanTransport } from '../../src/proxy/telemetry/trace-export.ts';
import { TraceSpan, type FinishedSpan } from '../../src/proxy/telemetry/trace-span.ts';
import { FollowingTransport } from '../../src/proxy/telemetry/trace-follow.ts';
import { removeTempDir } from '../helpers/temp-dir.ts';

class FakeTransport implements SpanTransport {
  sent = 0;
  closed = false;
  readonly collector: string;
  readonly tokenFile: string;
  readonly answer: string | null;
  constructor(collector: string, tokenFile: string, answer: string | null = null) {
    this.collector = collector;
    this.tokenFile = tokenFile;
    this.answer = answer;
  }
  async send(): Promise<string | Error | null> {
    this.sent++;
    return this.answer;
  }
  close(): void {
    this.closed = true;
  }
}

function manualLocator(): ControlPlaneLocator & { move(): void; refreshes: number } {
  const listeners = new Set<() => void>();
  return {
    refreshes: 0,
    current: () => '',
    refresh() {
      this.refreshes++;
    },
    onMove: (l) => {
      listeners.add(l);
      return () => void listeners.delete(l);
    },
    move: () => listeners.forEach((l) => l()),
  };
}

const control = (http: string, tracing: ControlFile['tracing']): ControlFile => ({
  grpc: '127.0.0.1:1',
  http,
  pid: process.pid,
  ...(tracing === undefined ? {} : { tracing }),
});

test('the transport follows the control plane own collector named by the control file', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'trellis-trace-follow-'));
  t.after(() => removeTempDir(root));
  const file = join(root, 'control.json');
  const token = join(root, 'trace-token');
  const first = new FakeTransport('http://127.0.0.1:1000', token, 'HTTP 503');
  const made: FakeTransport[] = [];
  const locator = manualLocator();
  let moves = 0;
  const transport = new FollowingTransport({
    file,
    collector: first.collector,
    transport: first,
    transportFor: (collector, tokenFile) => {
      const next = new FakeTransport(collector, tokenFile);
      made.push(next);
      return next;
    },
    locator,
    onMove: () => moves++,
    log: silentLogger,
  });

  // A failed export makes the control file be looked at again.
  assert.equal(await transport.send(Buffer.alloc(1), 1000), 'HTTP 503');
  assert.equal(locator.refreshes, 1);

  // The control plane restarted elsewhere: the exports go there, with the file's token file.
  await writeControlFile(
    root,
    control('127.0.0.1:2000', { collector: 'http://127.0.0.1:2000', sampleRatio: 1, tokenFile: token }),
  );
  locator.move();
  assert.equal(transport.collector, 'http://127.0.0.1:2000');
  assert.equal(made.length, 1);
  assert.equal(made[0]!.tokenFile, token);
  assert.equal(first.closed, true);
  assert.equal(moves, 1);
  assert.equal(await transport.send(Buffer.alloc(1), 1000), null);
  assert.equal(made[0]!.sent, 1);

  // The same collector again (a restart on the same ports): nothing changes.
  locator.move();
  assert.equal(made.length, 1);

  // A control plane that now exports to a collector of the user's: not the one this proxy had.
  await writeControlFile(
    root,
    control('127.0.0.1:3000', { collector: 'http://collector:4318', sampleRatio: 1 }),
  );
  locator.move();
  assert.equal(transport.collector, 'http://127.0.0.1:2000');
  // No control file (the control plane is stopped): the last collector stays.
  await writeControlFile(root, control('127.0.0.1:3000', undefined));
  locator.move();
  assert.equal(transport.collector, 'http://127.0.0.1:2000');
  assert.equal(made.length, 1);

  transport.close();
  assert.equal(made[0]!.closed, true);
  locator.move(); // unsubscribed
  assert.equal(moves, 1);
});

/** A span to export (its content does not matter here). */
function aSpan(): FinishedSpan {
  const span = new TraceSpan(
    'server',
    '4bf92f3577b34da6a3ce929d0e0e4736',
    '00f067aa0ba902b7',
    null,
    '',
    1,
    '',
  );
  return { span, name: 'GET', endMs: 2, attributes: [], error: false, statusMessage: '' };
}

// The exporter's warnings named the collector it was created with, also after the transport had
// followed the control plane to another one: an operator was sent to the stopped control plane.
test("the exporter's warnings name the collector the failing export went to, after a move too", async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'trellis-trace-follow-'));
  t.after(() => removeTempDir(root));
  const token = join(root, 'trace-token');
  const warnings: Record<string, unknown>[] = [];
  let heard: (() => void) | null = null;
  const nextWarning = (): Promise<Record<string, unknown>> =>
    new Promise((resolve) => {
      const seen = warnings.length;
      heard = () => {
        if (warnings.length > seen) resolve(warnings[seen]!);
      };
      heard();
    });
  const log = createLogger({
    level: 'warn',
    rateLimit: null,
    write: (line) => {
      warnings.push(JSON.parse(line) as Record<string, unknown>);
      heard?.();
    },
  });
  const first = new FakeTransport('http://127.0.0.1:1000', token, 'HTTP 503');
  // The second collector holds its exports until released, then refuses them.
  let release: (() => void) | null = null;
  const second = new FakeTransport('http://127.0.0.1:2000', token, 'HTTP 500');
  const held = second.send.bind(second);
  second.send = async () => {
    await new Promise<void>((resolve) => (release = resolve));
    return held();
  };
  const locator = manualLocator();
  const transport = new FollowingTransport({
    file: join(root, 'control.json'),
    collector: first.collector,
    transport: first,
    transportFor: () => second,
    locator,
    onMove: () => exporter.collectorMoved(),
    log: silentLogger,
  });
  const exporter = new SpanExporter(
    {
      collector: first.collector,
      resource: { attributes: [], scopeName: 'trellis-proxy', scopeVersion: '' },
      maxQueuedSpans: 2,
      maxBatchSpans: 1,
      batchDelayMs: 1,
      exportTimeoutMs: 1000,
      metrics: new ProxyMetrics(),
      log,
      backoff: { initialMs: 1, maxMs: 1 },
    },
    transport,
  );
  t.after(() => exporter.close(0));

  let warning = nextWarning();
  exporter.add(aSpan());
  assert.deepEqual(pick(await warning), { msg: 'trace export failed', collector: 'http://127.0.0.1:1000' });

  await writeControlFile(
    root,
    control('127.0.0.1:2000', { collector: 'http://127.0.0.1:2000', sampleRatio: 1, tokenFile: token }),
  );
  locator.move();
  assert.equal(transport.collector, 'http://127.0.0.1:2000');

  // One export in flight to the new collector and two spans queued: the next is dropped, and the
  // warning names where the exports go now.
  warning = nextWarning();
  exporter.add(aSpan());
  exporter.add(aSpan());
  exporter.add(aSpan());
  exporter.add(aSpan());
  assert.deepEqual(pick(await warning), {
    msg: 'trace export queue is full; dropping spans',
    collector: 'http://127.0.0.1:2000',
  });

  // The new collector refuses the export: the warning names it, not the one the exporter started with.
  warning = nextWarning();
  await waitUntil(() => release !== null);
  release!();
  assert.deepEqual(pick(await warning), { msg: 'trace export failed', collector: 'http://127.0.0.1:2000' });
});

function pick(record: Record<string, unknown>): { msg: unknown; collector: unknown } {
  return { msg: record.msg, collector: record.collector };
}

/** Resolves once `ready()` holds (checked on every turn of the event loop, at most 5 s). */
async function waitUntil(ready: () => boolean): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!ready()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((resolve) => setImmediate(resolve));
  }
}
