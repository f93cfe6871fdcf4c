// Regression: Reader.skip of a length-delimited field must land after the field's bytes. It was
// written `this.pos += this.length()`, which reads pos before length() moves it past the length
// prefix, so it landed one prefix short (inside the skipped field), and an unknown field followed
// by another failed to decode (found by the embedded trace collector, src/control/traces/).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Reader, Writer, LENGTH_DELIMITED } from '../../src/api/wire.ts';

test('skipping an unknown length-delimited field lands on the next field', () => {
  for (const size of [3, 200]) {
    const w = new Writer();
    w.string(7, 's'.repeat(size)); // unknown to the reader
    w.uint32(2, 42);
    const r = new Reader(w.finish());
    const tag = r.tag();
    assert.equal(tag & 7, LENGTH_DELIMITED);
    r.skip(tag & 7);
    assert.equal(r.tag() >>> 3, 2, `after a ${size}-byte field`);
    assert.equal(r.uint32(), 42);
    assert.equal(r.pos, r.end);
  }
});
