// The protobuf writer's fast paths (src/api/wire-writer.ts) write what the general ones wrote:
// strings in place (ASCII by a loop, the rest by Buffer#write) as Buffer.from's UTF-8 bytes, with
// lone surrogates as U+FFFD; small non-negative int64s without a BigInt; fixed64 from 32-bit halves;
// hex ids decoded in place.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Writer } from '../../src/api/wire-writer.ts';

/** The bytes of a varint, written the long way. */
function varint(n: bigint): number[] {
  const out: number[] = [];
  let v = BigInt.asUintN(64, n);
  while (v > 0x7fn) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
  return out;
}

const anyText = fc.string({
  unit: fc.oneof(
    fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 1 }),
    fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)),
    fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 }),
  ),
  maxLength: 400,
});

test('string: the tag, the UTF-8 length and the UTF-8 bytes, after whatever came before', () => {
  fc.assert(
    fc.property(fc.array(anyText, { maxLength: 5 }), (strings) => {
      const w = new Writer();
      const want: number[] = [];
      for (const s of strings) {
        w.string(7, s);
        const bytes = Buffer.from(s, 'utf8');
        want.push(0x3a, ...varint(BigInt(bytes.length)), ...bytes);
      }
      assert.deepEqual([...w.finish()], want);
    }),
    { numRuns: 500 },
  );
});

test('int64 and fixed64Parts: the same bytes as the BigInt paths', () => {
  fc.assert(
    fc.property(
      fc.oneof(fc.integer(), fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), fc.constant(0xffffffff)),
      fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
      (n, big) => {
        const w = new Writer();
        w.int64(3, n, 'n');
        w.fixed64Parts(8, Number(big & 0xffffffffn), Number(big >> 32n));
        const fixed = Buffer.alloc(8);
        fixed.writeBigUInt64LE(big);
        assert.deepEqual([...w.finish()], [0x18, ...varint(BigInt(n)), 0x41, ...fixed]);
      },
    ),
    { numRuns: 500 },
  );
});

test('hexBytes: the decoded bytes; a value that is not hex is an error', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 40 }), (bytes) => {
      const w = new Writer();
      w.hexBytes(2, Buffer.from(bytes).toString('hex'));
      assert.deepEqual([...w.finish()], [0x12, bytes.length, ...bytes]);
    }),
  );
  assert.throws(() => new Writer().hexBytes(2, '00zz'));
});

test('fixed32: the little-endian bytes of any 32-bit value, signed or not', () => {
  fc.assert(
    fc.property(fc.oneof(fc.integer(), fc.integer({ min: 0, max: 0xffffffff })), (n) => {
      const w = new Writer();
      w.fixed32(16, n);
      const want = Buffer.alloc(4);
      want.writeUInt32LE(n >>> 0);
      assert.deepEqual([...w.finish()], [0x85, 0x01, ...want]);
    }),
    { numRuns: 500 },
  );
});

test('hexBytes: upper-case digits as Buffer decodes them; a bad digit anywhere is an error', () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 1, maxLength: 40 }), fc.nat(), (bytes, at) => {
      const hex = Buffer.from(bytes).toString('hex');
      const w = new Writer();
      w.hexBytes(2, hex.toUpperCase());
      assert.deepEqual([...w.finish()], [0x12, bytes.length, ...bytes]);
      const i = at % hex.length;
      for (const bad of ['g', 'G', '/', ':', '@', '`', ' '])
        assert.throws(() => new Writer().hexBytes(2, hex.slice(0, i) + bad + hex.slice(i + 1)));
    }),
  );
});

test('raw: the bytes as they are, short or long, after whatever came before', () => {
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 6 }), (parts) => {
      const w = new Writer(1);
      for (const p of parts) w.raw(p);
      assert.deepEqual(
        [...w.finish()],
        parts.flatMap((p) => [...p]),
      );
    }),
  );
});
