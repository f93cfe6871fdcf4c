// corkForTick (src/proxy/transport/cork.ts): a socket corked for the rest of a tick is uncorked
// once, after the synchronous code that wrote to it and before any I/O; the sockets of one tick
// share one process.nextTick callback; a socket corked while those are uncorked gets its own.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type net from 'node:net';
import { corkForTick } from '../../src/proxy/transport/cork.ts';

/** Records cork/uncork calls into a shared log; `onUncork` runs inside uncork. */
function fakeSocket(name: string, log: string[], onUncork: () => void = () => {}) {
  return {
    cork: () => log.push(`cork ${name}`),
    uncork: () => {
      log.push(`uncork ${name}`);
      onUncork();
    },
  } as unknown as net.Socket;
}

test('sockets corked in one tick are uncorked once each, after the tick and before I/O', async () => {
  const log: string[] = [];
  const a = fakeSocket('a', log);
  const b = fakeSocket('b', log);
  corkForTick(a);
  log.push('write a');
  corkForTick(b);
  log.push('write b');
  log.push('end of sync code');
  await new Promise<void>((resolve) => setImmediate(resolve));
  assert.deepEqual(log, [
    'cork a',
    'write a',
    'cork b',
    'write b',
    'end of sync code',
    'uncork a',
    'uncork b',
  ]);
});

test('a socket corked while others are uncorked is uncorked too, in a tick of its own', async () => {
  const log: string[] = [];
  const late = fakeSocket('late', log);
  const first = fakeSocket('first', log, () => corkForTick(late));
  corkForTick(first);
  await new Promise<void>((resolve) => setImmediate(resolve));
  assert.deepEqual(log, ['cork first', 'uncork first', 'cork late', 'uncork late']);
});

test('a throwing uncork leaves no other socket corked, and its error is thrown', async () => {
  const log: string[] = [];
  const bad = {
    cork: () => {},
    uncork: () => {
      throw new Error('boom');
    },
  } as unknown as net.Socket;
  const good = fakeSocket('good', log);
  const errors: unknown[] = [];
  const onError = (err: unknown) => errors.push(err);
  process.prependListener('uncaughtException', onError);
  const listeners = process.listeners('uncaughtException').filter((l) => l !== onError);
  for (const l of listeners) process.removeListener('uncaughtException', l);
  try {
    corkForTick(bad);
    corkForTick(good);
    await new Promise<void>((resolve) => setImmediate(resolve));
  } finally {
    process.removeListener('uncaughtException', onError);
    for (const l of listeners) process.on('uncaughtException', l);
  }
  assert.equal(errors.length, 1, 'the error is not swallowed');
  assert.deepEqual(log, ['cork good', 'uncork good']);
});
