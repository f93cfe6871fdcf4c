// One run at a time with requests coalesced (src/core/single-flight.ts), as the folder scanner and
// the control-file follower use it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SingleFlight } from '../../src/core/single-flight.ts';

/** A pass the test finishes by hand. */
function manualPass() {
  const pending: (() => void)[] = [];
  let passes = 0;
  const pass = () =>
    new Promise<void>((resolve) => {
      passes++;
      pending.push(resolve);
    });
  const finish = async () => {
    pending.shift()!();
    await new Promise((resolve) => setImmediate(resolve));
  };
  return { pass, finish, passes: () => passes };
}

test('a burst of requests during a run costs one more pass, and every caller waits for it', async () => {
  const m = manualPass();
  const flight = new SingleFlight(m.pass);
  const first = flight.run();
  assert.equal(m.passes(), 1);
  const during = [flight.run(), flight.run(), flight.run()];
  assert.ok(
    during.every((p) => p === first),
    'the promise of the run in progress',
  );
  await m.finish();
  assert.equal(m.passes(), 2, 'one more pass for the three requests');
  let settled = false;
  void first.then(() => (settled = true));
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(settled, false, 'not over before the extra pass');
  await m.finish();
  await Promise.all(during);
  assert.equal(m.passes(), 2);
  assert.equal(flight.running, null);
  // Idle: the next request runs at once.
  const next = flight.run();
  assert.equal(m.passes(), 3);
  await m.finish();
  await next;
});

test('no extra pass once stopped; a failing pass rejects its callers and the next run starts afresh', async () => {
  let stopped = false;
  const m = manualPass();
  const flight = new SingleFlight(m.pass, () => stopped);
  const run = flight.run();
  void flight.run();
  stopped = true;
  await m.finish();
  await run;
  assert.equal(m.passes(), 1);

  let calls = 0;
  const failing = new SingleFlight(async () => {
    calls++;
    if (calls === 1) throw new Error('unreadable');
  });
  await assert.rejects(failing.run(), /unreadable/);
  await failing.run();
  assert.equal(calls, 2);
});
