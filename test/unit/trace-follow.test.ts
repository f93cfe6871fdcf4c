// The exporter's transport when the collector is the control plane's own (trace-follow.ts): it
// moves with the control file's collector, and stays where it is when the file names a collector
// that is not the control plane's own (no token file) or the same one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeControlFile, type ControlFile } from '../../src/api/control-file.ts';
import { silentLogger } from '../../src/core/log.ts';
import type { ControlPlaneLocator } from '../../src/proxy/resolve/control-plane-address.ts';
import type { SpanTransport } from '../../src/proxy/telemetry/trace-export.ts';
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
