// A watch stream whose reader does not keep up (src/control/watch-streams.ts): Policy.WatchInbound
// and Routes.Watch send whole snapshots, so a stream holds at most the message being written and,
// once that is out, gets the newest one. Before, every change was written to every stream whatever
// it had not yet taken: a client that opens watches and never reads (anyone who reaches the gRPC
// port may) made the control plane keep each change of the state, for each of its streams, until
// memory ran out.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type * as grpc from '@grpc/grpc-js';
import { loadRouteApi } from '../../src/api/load.ts';
import { WatchStreams, withSharedEncoding, type WatchedSource } from '../../src/control/watch-streams.ts';
import { silentLogger } from '../../src/core/log.ts';

/** A source whose change the test triggers. */
function source(): WatchedSource & { change(): void } {
  const listeners = new Set<() => void>();
  return {
    ready: () => Promise.resolve(),
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    change() {
      for (const l of listeners) l();
    },
  };
}

/** A server stream whose reader takes a message only when the test says so. */
class SlowCall extends EventEmitter {
  readonly written: unknown[] = [];
  readonly pending: (() => void)[] = [];
  cancelled = false;
  getPeer(): string {
    return 'ipv4:127.0.0.1:5555';
  }
  write(message: unknown, callback?: () => void): boolean {
    this.written.push(message);
    if (callback !== undefined) this.pending.push(callback);
    return false;
  }
  /** The reader takes the oldest message still being written. */
  take(): void {
    this.pending.shift()?.();
  }
}

test('a slow reader holds one message at a time, and gets the newest once it took it', async () => {
  const s = source();
  const streams = new WatchStreams<{ version: number }>(s, silentLogger, 'route');
  let version = 0;
  const call = new SlowCall();
  streams.serve(call as unknown as grpc.ServerWritableStream<unknown, { version: number }>, () => ({
    version,
  }));
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(call.written, [{ version: 0 }]);

  for (let i = 1; i <= 1000; i++) {
    version = i;
    s.change();
  }
  // The first is still being written: nothing more is queued behind it.
  assert.equal(call.written.length, 1, `${call.written.length} messages queued for a reader that took none`);

  call.take();
  assert.deepEqual(call.written, [{ version: 0 }, { version: 1000 }], 'then the newest, once');
  call.take();
  assert.equal(call.written.length, 2, 'nothing changed since: nothing more');

  // A reader that keeps up gets every change.
  version = 1001;
  s.change();
  call.take();
  version = 1002;
  s.change();
  assert.deepEqual(call.written.slice(2), [{ version: 1001 }, { version: 1002 }]);
});

test('streams of one share key build one message a change between them', async () => {
  // 10,000 watches of one route set (anyone may open them) built, serialized and digested the
  // set 10,000 times a change: ~15 ms a stream for a 1 MB set, minutes of a blocked event loop.
  const s = source();
  const streams = new WatchStreams<{ version: number }>(s, silentLogger, 'route');
  let version = 0;
  let builds = 0;
  const build = () => (builds++, { version });
  const calls = Array.from({ length: 50 }, () => new SlowCall());
  for (const call of calls)
    streams.serve(
      call as unknown as grpc.ServerWritableStream<unknown, { version: number }>,
      build,
      'web:80',
    );
  const other = new SlowCall();
  streams.serve(other as unknown as grpc.ServerWritableStream<unknown, { version: number }>, build, 'api:80');
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(builds, 2);
  for (const call of [...calls, other]) call.take();
  version = 1;
  s.change();
  assert.equal(builds, 4, 'one build per share key');
  for (const call of [...calls, other]) {
    assert.deepEqual(call.written.at(-1), { version: 1 });
    call.take();
  }
  // Once every stream of a key ended, its message is not kept.
  for (const call of calls) call.emit('cancelled');
  version = 2;
  s.change();
  assert.equal(builds, 5);
  assert.equal(calls[0]!.written.length, 2, 'an ended stream gets nothing');
});

test('streamed responses are encoded once per message object, however many streams write it', () => {
  let encodes = 0;
  const original = loadRouteApi().Routes.service;
  const methods: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const [name, m] of Object.entries(original))
    methods[name] = {
      ...m,
      responseSerialize: (message: unknown) => (encodes++, m.responseSerialize(message)),
    };
  const counted: grpc.ServiceDefinition = methods;
  const shared = withSharedEncoding(counted);
  const watch = shared['Watch']!;
  assert.equal(watch.requestSerialize, counted['Watch']!.requestSerialize, 'requests are left alone');
  const message = { routes: [{ name: 'r', namespace: 'shop' }] };
  const once = counted['Watch']!.responseSerialize(message);
  encodes = 0;
  for (let i = 0; i < 100; i++) assert.deepEqual(watch.responseSerialize(message), once);
  assert.equal(encodes, 1, 'one message written to 100 streams is encoded once');
  watch.responseSerialize({ routes: [] });
  assert.equal(encodes, 2, 'another message is encoded on its own');
});
