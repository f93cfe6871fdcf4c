// LogThrottle (src/core/log-rate-limit.ts): one line per interval, with the count it left out.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LogThrottle } from '../../src/core/log-rate-limit.ts';

test('one line per interval, each saying how many occurrences it left out', () => {
  let now = 0;
  const throttle = new LogThrottle(1000, () => now);
  const lines: number[] = [];
  for (let i = 0; i < 5; i++) throttle.note((skipped) => lines.push(skipped));
  assert.deepEqual(lines, [0]);
  now = 999;
  throttle.note((skipped) => lines.push(skipped));
  assert.deepEqual(lines, [0]);
  now = 1000;
  throttle.note((skipped) => lines.push(skipped));
  assert.deepEqual(lines, [0, 5]);
  now = 5000;
  throttle.note((skipped) => lines.push(skipped));
  assert.deepEqual(lines, [0, 5, 0]);
});
