// Unit and property tests of the chunked decoder (src/proxy/http/chunked.ts): generated chunked
// bodies (odd size spellings, extensions, trailers, bytes of the next message after them) decode to
// the same data and trailers whole or split at any points; encode/decode round-trips; every bad
// framing fails and stays failed; random bytes never throw; trailers sent a byte at a time stay
// linear.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  ChunkedDecoder,
  CRLF,
  encodeChunkHeader,
  LAST_CHUNK,
  validateFieldBlock,
} from '../../src/proxy/http/chunked.ts';
import type { H1Limits } from '../../src/proxy/http/h1-parser.ts';

const LIMITS: H1Limits = { maxRequestLineBytes: 8192, maxHeaderBytes: 64 * 1024, maxHeaders: 128 };
const bytes = (s: string) => Buffer.from(s, 'latin1');
type ValueOf<A> = A extends fc.Arbitrary<infer T> ? T : never;

interface Decoded {
  data: Buffer;
  trailers: Buffer | null;
  consumed: number;
  error: string | null;
}

/** Feeds the pieces one after another, as a socket would; stops at the first error. */
function decode(pieces: Buffer[], limits = LIMITS): Decoded {
  const d = new ChunkedDecoder(limits);
  const data: Buffer[] = [];
  let trailers: Buffer | null = null;
  let consumed = 0;
  const sink = {
    data: (c: Buffer) => {
      assert.ok(c.length > 0, 'never an empty data slice (it would encode as the last chunk)');
      data.push(Buffer.from(c));
    },
    end: (t: Buffer) => {
      assert.equal(trailers, null, 'end is called once');
      trailers = t;
    },
  };
  for (const p of pieces) {
    const used = d.write(p, sink);
    if (used < 0) return { data: Buffer.concat(data), trailers, consumed, error: d.error ?? 'no message' };
    assert.ok(used <= p.length);
    if (used < p.length) assert.ok(d.done, 'only a finished body leaves bytes unconsumed');
    consumed += used;
  }
  return { data: Buffer.concat(data), trailers, consumed, error: null };
}
const decodeString = (s: string) => decode([bytes(s)]);

function splitAt(buf: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (buf.length + 1)))].sort((a, b) => a - b);
  const pieces: Buffer[] = [];
  let prev = 0;
  for (const p of points) {
    pieces.push(buf.subarray(prev, p));
    prev = p;
  }
  pieces.push(buf.subarray(prev));
  return pieces;
}

// A chunked body as a sender may legally spell it.
const TCHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const token = fc.string({ unit: fc.constantFrom(...TCHARS), minLength: 1, maxLength: 8 });
const extension = fc.option(
  fc
    .tuple(
      token,
      fc.option(
        fc.oneof(
          token,
          token.map((t) => `"${t} x"`),
        ),
        { nil: null },
      ),
    )
    .map(([n, v]) => `;${n}${v === null ? '' : '=' + v}`),
  { nil: '' },
);
const trailerField = fc
  .tuple(
    token,
    fc.string({
      unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)),
      maxLength: 10,
    }),
  )
  .filter(([n]) => !['content-length', 'transfer-encoding', 'host', 'trailer'].includes(n.toLowerCase()))
  .map(([n, v]) => `${n}: ${v}\r\n`);
const chunkedArb = fc.record({
  chunks: fc.array(
    fc.record({
      data: fc.uint8Array({ minLength: 1, maxLength: 300 }),
      zeros: fc.nat(3),
      upper: fc.boolean(),
      ext: extension,
    }),
    { maxLength: 6 },
  ),
  lastZeros: fc.nat(3),
  lastExt: extension,
  trailers: fc.array(trailerField, { maxLength: 3 }),
  next: fc.uint8Array({ maxLength: 20 }),
});

function buildChunked(g: ValueOf<typeof chunkedArb>) {
  const parts: Buffer[] = [];
  for (const c of g.chunks) {
    let hex = c.data.length.toString(16);
    if (c.upper) hex = hex.toUpperCase();
    parts.push(bytes('0'.repeat(c.zeros) + hex + c.ext + '\r\n'), Buffer.from(c.data), CRLF);
  }
  const trailerBlock = g.trailers.join('');
  parts.push(bytes('0'.repeat(g.lastZeros + 1) + g.lastExt + '\r\n' + trailerBlock + '\r\n'));
  const wire = Buffer.concat(parts);
  return {
    wire,
    withNext: Buffer.concat([wire, g.next]),
    data: Buffer.concat(g.chunks.map((c) => Buffer.from(c.data))),
    trailers: bytes(trailerBlock),
  };
}

test('generated chunked bodies decode to their data and trailers, and stop where they end', () => {
  fc.assert(
    fc.property(chunkedArb, (g) => {
      const b = buildChunked(g);
      const r = decode([b.withNext]);
      assert.equal(r.error, null);
      assert.deepEqual(r.data, b.data);
      assert.deepEqual(r.trailers, b.trailers);
      assert.equal(r.consumed, b.wire.length);
    }),
    { numRuns: 300 },
  );
});

test('split at any points, the decoder gives the same data and trailers as fed whole', () => {
  fc.assert(
    fc.property(chunkedArb, fc.array(fc.nat(), { maxLength: 12 }), (g, cuts) => {
      const b = buildChunked(g);
      const whole = decode([b.withNext]);
      const pieces = decode(splitAt(b.withNext, cuts));
      assert.deepEqual(pieces, whole);
    }),
    { numRuns: 300 },
  );
  // And one byte at a time.
  fc.assert(
    fc.property(chunkedArb, (g) => {
      const b = buildChunked(g);
      const single = [...b.wire].map((x) => Buffer.from([x]));
      assert.deepEqual(decode(single), decode([b.wire]));
    }),
    { numRuns: 50 },
  );
});

test('encodeChunkHeader + LAST_CHUNK round-trip through the decoder', () => {
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ minLength: 1, maxLength: 2000 }), { maxLength: 8 }), (chunks) => {
      const wire = Buffer.concat([
        ...chunks.flatMap((c) => [encodeChunkHeader(c.length), Buffer.from(c), CRLF]),
        LAST_CHUNK,
      ]);
      const r = decode([wire]);
      assert.equal(r.error, null);
      assert.deepEqual(r.data, Buffer.concat(chunks));
      assert.deepEqual(r.trailers, Buffer.alloc(0));
      assert.equal(r.consumed, wire.length);
    }),
    { numRuns: 200 },
  );
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 2 ** 48 - 1 }), (n) => {
      const h = encodeChunkHeader(n).toString('latin1');
      assert.match(h, /^[0-9a-f]+\r\n$/);
      assert.equal(parseInt(h, 16), n);
    }),
  );
});

test('rejects every malformed framing', () => {
  const bad: [string, string][] = [
    ['negative size', '-5\r\nhello\r\n0\r\n\r\n'],
    ['0x prefix', '0x5\r\nhello\r\n0\r\n\r\n'],
    ['empty size line', '\r\nhello\r\n0\r\n\r\n'],
    ['space before the size', ' 5\r\nhello\r\n0\r\n\r\n'],
    ['space after the size', '5 \r\nhello\r\n0\r\n\r\n'],
    ['size overflow (13 hex digits)', '1000000000000\r\n'],
    ['13 significant digits', '1000000000000\r\nhello\r\n0\r\n\r\n'],
    ['a size line of 65 digits', '0'.repeat(64) + '5\r\nhello\r\n0\r\n\r\n'],
    ['non-hex digit', '5g\r\nhello\r\n0\r\n\r\n'],
    ['bare LF after the size', '5\nhello\r\n0\r\n\r\n'],
    ['bare CR after the size', '5\rhello\r\n0\r\n\r\n'],
    ['data longer than the size', '5\r\nhelloX\r\n0\r\n\r\n'],
    ['data without CRLF', '5\r\nhello0\r\n\r\n'],
    ['data followed by a bare LF', '5\r\nhello\n0\r\n\r\n'],
    ['data followed by CR and junk', '5\r\nhello\rX0\r\n\r\n'],
    ['LF in an extension', '5;a\nb\r\nhello\r\n0\r\n\r\n'],
    ['NUL in an extension', '5;a\0\r\nhello\r\n0\r\n\r\n'],
    ['an empty extension', '5;\r\nhello\r\n0\r\n\r\n'],
    ['a trailing ;', '5;a;\r\nhello\r\n0\r\n\r\n'],
    ['BWS before CRLF', '5;a=1 \r\nhello\r\n0\r\n\r\n'],
    ['BWS after a name before CRLF', '5;a \r\nhello\r\n0\r\n\r\n'],
    ['BWS after = before CRLF', '5;a= \r\nhello\r\n0\r\n\r\n'],
    ['an empty extension name', '5;=1\r\nhello\r\n0\r\n\r\n'],
    ['an empty extension value', '5;a=\r\nhello\r\n0\r\n\r\n'],
    ['two = in an extension', '5;a=b=c\r\nhello\r\n0\r\n\r\n'],
    ['text after a quoted value', '5;a="x"y\r\nhello\r\n0\r\n\r\n'],
    ['an unterminated quoted value', '5;a="x\r\nhello\r\n0\r\n\r\n'],
    ['obs-text in a token value', '5;a=\xe9\r\nhello\r\n0\r\n\r\n'],
    ['a tab in an extension name', '1;\t=1\r\nx\r\n0\r\n\r\n'],
    ['an extension too long', '5;' + 'a'.repeat(2000) + '\r\nhello\r\n0\r\n\r\n'],
    ['trailer with a bare LF', '0\r\nX: y\n\r\n'],
    ['trailer with a bare CR', '0\r\nX: y\rZ\r\n\r\n'],
    ['trailer obs-fold', '0\r\nX: y\r\n z\r\n\r\n'],
    ['trailer space before colon', '0\r\nX : y\r\n\r\n'],
    ['trailer without colon', '0\r\nXY\r\n\r\n'],
    ['trailer NUL', '0\r\nX: a\0b\r\n\r\n'],
    ['trailer Content-Length', '0\r\nContent-Length: 5\r\n\r\n'],
    ['trailer Transfer-Encoding', '0\r\ntransfer-encoding: chunked\r\n\r\n'],
    ['trailer Host', '0\r\nHost: evil\r\n\r\n'],
    ['last chunk then bare LF', '0\r\n\n'],
  ];
  for (const [name, wire] of bad) {
    const r = decodeString(wire);
    assert.notEqual(r.error, null, name);
    assert.equal(r.trailers, null, name);
    // Fed a byte at a time, it fails too (and never earlier claims the end).
    const single = decode([...bytes(wire)].map((x) => Buffer.from([x])));
    assert.notEqual(single.error, null, `${name} (byte at a time)`);
  }
  const d = new ChunkedDecoder(LIMITS);
  const sink = { data: () => {}, end: () => {} };
  assert.equal(d.write(bytes('zz'), sink), -1);
  assert.equal(d.write(bytes('0\r\n\r\n'), sink), -1, 'a failed decoder stays failed');
  assert.equal(d.done, false);
});

test('accepts legal odd spellings: upper-case hex, leading zeros, extensions, trailers', () => {
  for (const ext of [
    ';a',
    ';a=1',
    ';a="x y"',
    ';a="x\\"y"',
    ';a=1;b',
    ';a="\xe9\t"',
    ';a="";b=c',
    ' ;a',
    '; a = 1',
    ';a\t;b',
  ])
    assert.equal(decodeString(`1${ext}\r\nx\r\n0${ext}\r\n\r\n`).error, null, ext);
  const body = 'A;x=1;y="a b"\r\n0123456789\r\n00005\r\nhello\r\n000;z\r\nX-A: 1\r\nx-b:\r\n\r\n';
  const r = decodeString(body + 'NEXT');
  assert.equal(r.error, null);
  assert.equal(r.data.toString('latin1'), '0123456789hello');
  assert.equal(r.trailers!.toString('latin1'), 'X-A: 1\r\nx-b:\r\n');
  assert.equal(r.consumed, body.length); // NEXT is left for the next message
  assert.equal(decodeString('0\r\n\r\nNEXT').consumed, 5);
  assert.equal(decodeString('0\r\n\r\n').trailers!.length, 0);
  // Incomplete input is consumed and waits, without data that was not sent.
  const part = decodeString('5\r\nhel');
  assert.deepEqual([part.error, part.data.toString(), part.trailers, part.consumed], [null, 'hel', null, 6]);
});

test('trailer size limit, and trailers sent a byte at a time stay linear', () => {
  const small = { ...LIMITS, maxHeaderBytes: 64 };
  assert.equal(decode([bytes('0\r\nX: ' + 'a'.repeat(60) + '\r\n\r\n')], small).error, 'trailers too large');
  assert.equal(decode([bytes('0\r\nX: ' + 'a'.repeat(50) + '\r\n\r\n')], small).error, null);
  const d = new ChunkedDecoder(LIMITS);
  const sink = { data: () => {}, end: () => {} };
  d.write(bytes('0\r\n'), sink);
  const line = bytes('X-Pad: ' + 'a'.repeat(1000) + '\r\n');
  const t0 = performance.now();
  for (let k = 0; k < 60; k++)
    for (let i = 0; i < line.length; i++) assert.equal(d.write(line.subarray(i, i + 1), sink), 1);
  assert.equal(d.write(CRLF, sink), 2);
  assert.ok(d.done);
  const ms = performance.now() - t0;
  assert.ok(ms < 1500, `60 kB of trailers a byte at a time took ${ms.toFixed(0)} ms`);
});

test('random bytes never throw and never consume more than given', () => {
  const junk = fc.oneof(
    fc.uint8Array({ maxLength: 100 }),
    fc
      .array(fc.constantFrom(...'0123456789abcdefABX;= \t\r\n\0:'.split('')), { maxLength: 60 })
      .map((cs) => bytes(cs.join(''))),
  );
  fc.assert(
    fc.property(junk, fc.array(fc.nat(), { maxLength: 5 }), (x, cuts) => {
      const whole = decode([Buffer.from(x)]);
      assert.ok(whole.consumed <= x.length);
      // Splitting never changes the verdict, the data or the trailers.
      const split = decode(splitAt(Buffer.from(x), cuts));
      assert.deepEqual([split.error, split.data, split.trailers], [whole.error, whole.data, whole.trailers]);
      if (whole.error === null) assert.equal(split.consumed, whole.consumed);
    }),
    { numRuns: 1000 },
  );
});

test('validateFieldBlock', () => {
  assert.equal(validateFieldBlock(bytes('')), null);
  assert.equal(validateFieldBlock(bytes('A: b\r\nC:\td\xe9\r\n')), null);
  assert.equal(validateFieldBlock(bytes('A b: c\r\n')), 'invalid trailer field');
  assert.equal(validateFieldBlock(bytes('A: b\x7f\r\n')), 'invalid trailer field');
  assert.equal(validateFieldBlock(bytes('CONTENT-LENGTH: 1\r\n')), 'framing field in trailers');
});
