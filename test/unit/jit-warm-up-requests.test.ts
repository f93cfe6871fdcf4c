// How many JIT warm-up requests a proxy sends: its configuration, else TRELLIS_JIT_WARM_UP, else
// the default; a malformed variable is an error that names it (never read as 0 or NaN).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  DEFAULT_JIT_WARM_UP_REQUESTS,
  JIT_WARM_UP_ENV,
  jitWarmUpRequests,
} from '../../src/proxy/jit-warm-up.ts';
import { ConfigError } from '../../src/core/errors.ts';

test('the configuration wins, then the environment, then the default', () => {
  assert.equal(jitWarmUpRequests(7, { [JIT_WARM_UP_ENV]: '300' }), 7);
  assert.equal(jitWarmUpRequests(0, {}), 0);
  assert.equal(jitWarmUpRequests(undefined, { [JIT_WARM_UP_ENV]: '300' }), 300);
  assert.equal(jitWarmUpRequests(undefined, { [JIT_WARM_UP_ENV]: '0' }), 0);
  assert.equal(jitWarmUpRequests(undefined, { [JIT_WARM_UP_ENV]: ' 12 ' }), 12);
  assert.equal(jitWarmUpRequests(undefined, {}), DEFAULT_JIT_WARM_UP_REQUESTS);
  assert.equal(jitWarmUpRequests(undefined, { [JIT_WARM_UP_ENV]: '' }), DEFAULT_JIT_WARM_UP_REQUESTS);
});

test('property: any value of the variable is a whole number it spells, or an error naming it', () => {
  fc.assert(
    fc.property(fc.oneof(fc.string(), fc.nat().map(String), fc.double().map(String)), (raw) => {
      let got: number;
      try {
        got = jitWarmUpRequests(undefined, { [JIT_WARM_UP_ENV]: raw });
      } catch (err) {
        assert.ok(err instanceof ConfigError);
        assert.equal(err.field, JIT_WARM_UP_ENV);
        assert.ok(
          !/^\s*\d{1,6}\s*$/.test(raw) && raw !== '',
          `refused a valid value: ${JSON.stringify(raw)}`,
        );
        return;
      }
      assert.ok(Number.isSafeInteger(got) && got >= 0 && got <= 999_999);
      if (raw !== '') assert.equal(got, Number(raw.trim()));
    }),
    { numRuns: 2000 },
  );
});
