// `trellis run`'s restart rules (src/cli/run-restart.ts): which exits each policy restarts, and a
// crash-loop backoff that doubles from 1 s to its 30 s cap and starts over after a stable run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  describeExit,
  RESTART_BACKOFF,
  RestartBackoff,
  shouldRestart,
  STABLE_RUN_MS,
} from '../../src/cli/run-restart.ts';

test('restart policies: always, on-failure (a non-zero exit or a signal), never', () => {
  const ok = { code: 0, signal: null };
  const failed = { code: 3, signal: null };
  const killed = { code: null, signal: 'SIGSEGV' as const };
  assert.deepEqual(
    [ok, failed, killed].map((s) => shouldRestart('always', s)),
    [true, true, true],
  );
  assert.deepEqual(
    [ok, failed, killed].map((s) => shouldRestart('on-failure', s)),
    [false, true, true],
  );
  assert.deepEqual(
    [ok, failed, killed].map((s) => shouldRestart('never', s)),
    [false, false, false],
  );
  assert.equal(describeExit(failed), 'exited with code 3');
  assert.equal(describeExit(killed), 'was killed by SIGSEGV');
});

test('the backoff doubles up to its cap, and starts over after a stable run', () => {
  const top = new RestartBackoff({ random: { next: () => 0.999999 } });
  const ceilings = Array.from({ length: 8 }, () => Math.round(top.next(10)));
  assert.deepEqual(ceilings, [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
  assert.equal(top.restarts, 8);
  // Half the ceiling at the least (equal jitter).
  const low = new RestartBackoff({ random: { next: () => 0 } });
  assert.equal(low.next(0), RESTART_BACKOFF.initialMs / 2);
  // A process that ran for the stable period crashed once, not in a loop: back to the start.
  assert.equal(Math.round(top.next(STABLE_RUN_MS)), 1000);
  assert.equal(top.restarts, 1);
});
