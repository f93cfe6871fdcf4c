// WaitQueue (src/proxy/transport/wait-queue.ts), the bounded wait of the upstream pools: refused
// past its bound, served oldest first, each waiter leaving on its own deadline (and only then told),
// and nothing told after it was taken.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WaitQueue } from '../../src/proxy/transport/wait-queue.ts';

test('WaitQueue: bounded, oldest first, takeAll empties it', () => {
  const q = new WaitQueue<string>(2);
  const timedOut: string[] = [];
  assert.equal(
    q.add('a', 60_000, (v) => timedOut.push(v)),
    true,
  );
  assert.equal(
    q.add('b', 60_000, (v) => timedOut.push(v)),
    true,
  );
  assert.equal(
    q.add('c', 60_000, (v) => timedOut.push(v)),
    false,
    'past the bound',
  );
  assert.equal(q.size, 2);
  assert.equal(q.shift(), 'a');
  assert.equal(
    q.add('c', 60_000, (v) => timedOut.push(v)),
    true,
    'room again',
  );
  assert.deepEqual(q.takeAll(), ['b', 'c']);
  assert.equal(q.size, 0);
  assert.equal(q.shift(), undefined);
  assert.deepEqual(timedOut, []);
});

test('WaitQueue: a waiter leaves on its deadline and is told; one taken before is not', async () => {
  const q = new WaitQueue<string>(4);
  const timedOut: string[] = [];
  q.add('served', 20, (v) => timedOut.push(v));
  q.add('taken', 20, (v) => timedOut.push(v));
  q.add('waits', 200, (v) => timedOut.push(v));
  assert.equal(q.shift(), 'served');
  assert.equal(q.shift(), 'taken');
  await new Promise((r) => setTimeout(r, 60));
  assert.deepEqual(timedOut, [], 'the taken ones are not told');
  assert.equal(q.size, 1);
  await new Promise((r) => setTimeout(r, 200));
  assert.deepEqual(timedOut, ['waits']);
  assert.equal(q.size, 0, 'it left the queue');
});
