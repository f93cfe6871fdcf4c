// The proxy's one watch loop over the control plane (src/proxy/resolve/watch-stream.ts) and the
// retry under it (control-plane-retry.ts), in virtual time with fake streams and a fake locator:
// messages reach the owner; an ended or failed stream is opened again after the backoff, asking
// the locator to look again only when the status is not OK; the log says warn for the first
// failure, debug for repeats and info when it recovers; a control plane that moved is watched at
// once; close() leaves nothing pending and stale streams are ignored.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { FakeClock } from '../../src/core/clock.ts';
import { createLogger } from '../../src/core/log.ts';
import type { ControlPlaneLocator } from '../../src/proxy/resolve/control-plane-address.ts';
import { ControlPlaneRetry } from '../../src/proxy/resolve/control-plane-retry.ts';
import { type WatchEnd, watchStream } from '../../src/proxy/resolve/watch-stream.ts';

/** A server stream the test drives; cancel() ends it with CANCELLED at once, as grpc-js may. */
class FakeStream extends EventEmitter {
  cancelled = false;
  cancel(): void {
    this.cancelled = true;
    this.end(grpc.status.CANCELLED, 'Cancelled on client');
  }
  message(m: string): void {
    this.emit('data', m);
  }
  end(code: grpc.status, details = ''): void {
    if (code !== grpc.status.OK) this.emit('error', new Error(details));
    this.emit('status', { code, details, metadata: new grpc.Metadata() });
  }
}

function fakeLocator() {
  const listeners = new Set<() => void>();
  let address = '127.0.0.1:1000';
  const locator: ControlPlaneLocator & { refreshes: number; listeners: Set<() => void> } = {
    refreshes: 0,
    listeners,
    current: () => address,
    refresh() {
      locator.refreshes++;
    },
    onMove(listener) {
      listeners.add(listener);
      return () => void listeners.delete(listener);
    },
  };
  const move = (to: string) => {
    address = to;
    for (const listener of Array.from(listeners)) listener();
  };
  return { locator, move };
}

interface Line {
  level: string;
  msg: string;
  [field: string]: unknown;
}

/** A watch of fake streams: what it opened, delivered, reported and logged. */
function setup(options: { closeOnEnd?: boolean } = {}) {
  const clock = new FakeClock();
  const { locator, move } = fakeLocator();
  const streams: { at: number; address: string; stream: FakeStream }[] = [];
  const messages: string[] = [];
  const ends: WatchEnd[] = [];
  const lines: Line[] = [];
  const log = createLogger({ level: 'debug', write: (line) => lines.push(JSON.parse(line) as Line) });
  const client = {
    locator,
    get address() {
      return streams.at(-1)?.address ?? '';
    },
  };
  const watch = watchStream<string>({
    name: 'test watch',
    client,
    open: () => {
      const stream = new FakeStream();
      streams.push({ at: clock.now(), address: locator.current(), stream });
      return stream;
    },
    onMessage: (m) => messages.push(m),
    onEnd: (end) => {
      ends.push(end);
      if (options.closeOnEnd) watch.close();
    },
    keeps: 'the last answer',
    fields: { target: 'web.default:80' },
    backoff: { initialMs: 100, maxMs: 1000 },
    timers: clock,
    random: { next: () => 0 }, // the lower end of each window: ceiling / 2
    log,
  });
  const last = () => streams.at(-1)!.stream;
  return { clock, locator, move, streams, messages, ends, lines, watch, last };
}

test('messages reach the owner; an ended stream is opened again after the backoff, doubling to the cap', () => {
  const w = setup();
  assert.equal(w.streams.length, 1, 'opened at once');
  w.last().message('a');
  w.last().message('b');
  assert.deepEqual(w.messages, ['a', 'b']);

  w.last().end(grpc.status.UNAVAILABLE, 'connection refused');
  assert.equal(w.locator.refreshes, 1, 'a failure asks where the control plane is now');
  for (const delay of [50, 100, 200, 400, 500, 500]) {
    const before: number = w.streams.length;
    w.clock.advance(delay - 1);
    assert.equal(w.streams.length, before, `not before ${delay} ms`);
    w.clock.advance(1);
    assert.equal(w.streams.length, before + 1, `again after ${delay} ms`);
    w.last().end(grpc.status.UNAVAILABLE, 'connection refused');
  }
  assert.deepEqual(
    w.ends.map((e) => [e.reason, e.delayMs]),
    [
      ['UNAVAILABLE: connection refused', 50],
      ['UNAVAILABLE: connection refused', 100],
      ['UNAVAILABLE: connection refused', 200],
      ['UNAVAILABLE: connection refused', 400],
      ['UNAVAILABLE: connection refused', 500],
      ['UNAVAILABLE: connection refused', 500],
      ['UNAVAILABLE: connection refused', 500],
    ],
  );
  assert.equal(w.ends[0]!.status.code, grpc.status.UNAVAILABLE);

  // A message resets the backoff; an OK end is retried too, without looking for the control plane.
  w.clock.advance(500);
  w.last().message('c');
  const refreshes = w.locator.refreshes;
  w.last().end(grpc.status.OK);
  assert.equal(w.locator.refreshes, refreshes);
  assert.deepEqual(w.ends.at(-1), { reason: 'the stream ended', status: w.ends.at(-1)!.status, delayMs: 50 });
  w.clock.advance(50);
  assert.equal(w.streams.length, 9);
  w.watch.close();
});

test('one logging policy: the first failure warns, repeats are debug, the first message after says restored', () => {
  const w = setup();
  const failures = () =>
    w.lines.filter((l) => l.msg === 'test watch ended; keeping the last answer and retrying');
  w.last().message('a');
  w.last().end(grpc.status.UNAVAILABLE, 'down');
  w.clock.advance(50);
  w.last().end(grpc.status.UNAVAILABLE, 'down');
  w.clock.advance(100);
  w.last().end(grpc.status.INTERNAL, 'oops');
  w.clock.advance(200);
  assert.deepEqual(
    failures().map((l) => [l.level, l.reason, l.delayMs]),
    [
      ['warn', 'UNAVAILABLE: down', 50],
      ['debug', 'UNAVAILABLE: down', 100],
      ['debug', 'INTERNAL: oops', 200],
    ],
  );
  assert.equal(failures()[0]!.target, 'web.default:80', 'the owner fields are on every line');
  assert.equal(failures()[0]!.address, '127.0.0.1:1000');
  assert.equal(w.lines.filter((l) => l.msg === 'test watch restored').length, 0);
  w.last().message('b');
  w.last().message('c');
  const restored = w.lines.filter((l) => l.msg === 'test watch restored');
  assert.equal(restored.length, 1, 'one line when it recovers');
  assert.equal(restored[0]!.level, 'info');
  // The next outage warns again.
  w.last().end(grpc.status.UNAVAILABLE, 'down again');
  assert.equal(failures().at(-1)!.level, 'warn');
  w.watch.close();
});

test('a control plane that moved is watched at once, at its new address, with the backoff reset', () => {
  const w = setup();
  w.last().message('a');
  // Moved while streaming: the old stream is cancelled (its end is not a failure), a new one opened.
  const first = w.last();
  w.move('127.0.0.1:2000');
  assert.equal(first.cancelled, true);
  assert.equal(w.streams.length, 2);
  assert.equal(w.streams[1]!.address, '127.0.0.1:2000');
  assert.equal(w.ends.length, 0, 'a cancelled stream is not reported');
  first.message('stale');
  first.end(grpc.status.UNAVAILABLE, 'late');
  assert.deepEqual(w.messages, ['a'], 'the old stream is ignored');
  assert.equal(w.ends.length, 0);

  // Moved while waiting out a long backoff: watched at once, and the backoff starts over.
  for (let i = 0; i < 4; i++) {
    w.last().end(grpc.status.UNAVAILABLE, 'down');
    w.clock.advance(w.ends.at(-1)!.delayMs);
  }
  w.last().end(grpc.status.UNAVAILABLE, 'down');
  assert.equal(w.ends.at(-1)!.delayMs, 500);
  const opened = w.streams.length;
  w.move('127.0.0.1:3000');
  assert.equal(w.streams.length, opened + 1, 'at once, not after 500 ms');
  assert.equal(w.streams.at(-1)!.address, '127.0.0.1:3000');
  assert.equal(w.clock.pendingTimers, 0, 'the pending retry was dropped');
  w.last().end(grpc.status.UNAVAILABLE, 'down');
  assert.equal(w.ends.at(-1)!.delayMs, 50, 'the backoff starts over');
  assert.equal(
    w.lines.filter((l) => l.msg === 'test watch: the control plane moved; watching again').length,
    2,
  );
  w.watch.close();
});

test('close(): the stream is cancelled, no retry stays pending, moves are no longer followed', () => {
  const w = setup();
  w.last().end(grpc.status.UNAVAILABLE, 'down');
  assert.equal(w.clock.pendingTimers, 1);
  w.watch.close();
  w.watch.close(); // idempotent
  assert.equal(w.clock.pendingTimers, 0);
  assert.equal(w.locator.listeners.size, 0);
  w.clock.advance(10_000);
  w.move('127.0.0.1:2000');
  assert.equal(w.streams.length, 1);

  // Closed while streaming.
  const s = setup();
  s.watch.close();
  assert.equal(s.last().cancelled, true);
  s.last().message('late');
  assert.equal(s.messages.length, 0);
  assert.equal(s.ends.length, 0);

  // Closed by the owner when told of the end (a target the control plane refuses): no retry.
  const c = setup({ closeOnEnd: true });
  c.last().end(grpc.status.INVALID_ARGUMENT, 'not a service name');
  assert.equal(c.ends.length, 1);
  assert.equal(c.clock.pendingTimers, 0);
  c.clock.advance(10_000);
  assert.equal(c.streams.length, 1);
});

test('ControlPlaneRetry: by default a move makes a pending retry at once, and nothing when none is pending', () => {
  const clock = new FakeClock();
  const { locator, move } = fakeLocator();
  let runs = 0;
  const retry = new ControlPlaneRetry({
    locator,
    backoff: { initialMs: 100, maxMs: 1000 },
    run: () => runs++,
    timers: clock,
    random: { next: () => 0.5 },
  });
  move('127.0.0.1:2000');
  assert.equal(runs, 0, 'no retry pending: nothing to do');
  assert.equal(retry.failed(false), 75); // [50, 100] at 0.5
  assert.equal(locator.refreshes, 0);
  assert.equal(retry.failed(true), 150, 'one pending retry, the next delay');
  assert.equal(locator.refreshes, 1);
  assert.equal(clock.pendingTimers, 1);
  assert.equal(retry.waiting, true);
  move('127.0.0.1:3000');
  assert.equal(runs, 1);
  assert.equal(retry.waiting, false);
  assert.equal(retry.failures, 2, 'a move does not forget the failures');
  clock.advance(1000);
  assert.equal(runs, 1, 'the retry it replaced does not run');
  assert.equal(retry.succeeded(), true);
  assert.equal(retry.succeeded(), false);
  retry.failed(false);
  retry.close();
  clock.advance(1000);
  move('127.0.0.1:4000');
  assert.equal(runs, 1);
  assert.equal(locator.listeners.size, 0);
});
