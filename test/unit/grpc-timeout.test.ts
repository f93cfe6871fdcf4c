// grpc-timeout values (src/core/grpc-timeout.ts): parsed strictly, formatted so they parse back.
import assert from 'node:assert/strict';
import test from 'node:test';
import fc from 'fast-check';
import { formatGrpcTimeout, parseGrpcTimeout } from '../../src/core/grpc-timeout.ts';

test('grpc-timeout values of every unit, and what is not one', () => {
  assert.equal(parseGrpcTimeout('1H'), 3_600_000);
  assert.equal(parseGrpcTimeout('2M'), 120_000);
  assert.equal(parseGrpcTimeout('3S'), 3000);
  assert.equal(parseGrpcTimeout('250m'), 250);
  assert.equal(parseGrpcTimeout('1500u'), 1.5);
  assert.equal(parseGrpcTimeout('2000000n'), 2);
  for (const bad of [undefined, '', 'm', '10', '123456789m', '-1m', '1.5S', '10s', ' 1m', ['1m']])
    assert.equal(parseGrpcTimeout(bad as string | undefined), null, String(bad));
});

test('property: any string parses to null or a finite non-negative value; formatted values parse back', () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 12 }), (text) => {
      const ms = parseGrpcTimeout(text);
      if (ms !== null) assert.ok(Number.isFinite(ms) && ms >= 0);
    }),
  );
  fc.assert(
    fc.property(fc.double({ min: 0, max: 9e10, noNaN: true }), (ms) => {
      const back = parseGrpcTimeout(formatGrpcTimeout(ms));
      assert.ok(back !== null && back >= ms - 1e-9 && back - ms <= (ms > 99_999_999 ? 1000 : 1));
    }),
  );
});
