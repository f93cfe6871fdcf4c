// Tests of HPACK (src/proxy/h2/hpack.ts, huffman.ts, hpack-tables.ts): the Huffman table against
// RFC 7541 Appendix B (complete, prefix-free, spot-checked codes); the Appendix C examples with
// their dynamic table state; properties (encode/decode round trips, a reference encoder that uses
// every representation, Huffman and eviction, random and mutated input failing only with
// HpackError); the limits; and interop with node:http2 (nghttp2) in both directions on loopback.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http2 from 'node:http2';
import net from 'node:net';
import fc from 'fast-check';
import { HpackDecoder, HpackEncoder, HpackError } from '../../src/proxy/h2/hpack.ts';
import { STATIC_NAMES, STATIC_VALUES } from '../../src/proxy/h2/hpack-tables.ts';
import {
  HUFFMAN_CODE_LENGTHS,
  HUFFMAN_CODES,
  HUFFMAN_ERR_EOS,
  HUFFMAN_ERR_PADDING,
  huffmanDecode,
  huffmanEncode,
  huffmanEncodedLength,
  huffmanMaxDecodedLength,
} from '../../src/proxy/h2/huffman.ts';

const RUNS = { numRuns: 300 };
const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const pairs = (flat: string[]) =>
  Array.from({ length: flat.length / 2 }, (_, i) => [flat[2 * i], flat[2 * i + 1]]);

function huffman(bytes: Uint8Array): Buffer {
  const out = Buffer.alloc(huffmanEncodedLength(bytes));
  assert.equal(huffmanEncode(bytes, out, 0), out.length);
  return out;
}
function unhuffman(bytes: Uint8Array): Buffer | number {
  const out = Buffer.alloc(huffmanMaxDecodedLength(bytes.length));
  const n = huffmanDecode(bytes, 0, bytes.length, out);
  return n < 0 ? n : out.subarray(0, n);
}

// ---- the Huffman code ------------------------------------------------------------------------

test('Huffman table: 257 codes, complete (Kraft sum exactly 1) and prefix-free', () => {
  assert.equal(HUFFMAN_CODE_LENGTHS.length, 257);
  // Sum of 2^-len, scaled by 2^30 (the longest code) to stay in exact integers.
  const kraft = HUFFMAN_CODE_LENGTHS.reduce((sum, len) => sum + 2 ** (30 - len), 0);
  assert.equal(kraft, 2 ** 30);
  const bits = HUFFMAN_CODE_LENGTHS.map((len, s) => HUFFMAN_CODES[s]!.toString(2).padStart(len, '0'));
  for (let a = 0; a < bits.length; a++) {
    assert.ok(HUFFMAN_CODES[a]! < 2 ** HUFFMAN_CODE_LENGTHS[a]!, `code of ${a} fits its length`);
    for (let b = 0; b < bits.length; b++) {
      if (a !== b) assert.ok(!bits[b]!.startsWith(bits[a]!), `code of ${a} is a prefix of ${b}'s`);
    }
  }
});

test('Huffman table: codes as printed in RFC 7541 Appendix B', () => {
  const expected: [number, number, number][] = [
    [0, 0x1ff8, 13],
    [1, 0x7fffd8, 23],
    [10, 0x3ffffffc, 30],
    [32, 0x14, 6], // ' '
    [48, 0x0, 5], // '0'
    [58, 0x5c, 7], // ':'
    [92, 0x7fff0, 19], // '\'
    [97, 0x3, 5], // 'a'
    [123, 0x7ffe, 15], // '{'
    [127, 0xffffffc, 28],
    [128, 0xfffe6, 20],
    [200, 0x3ffffe2, 26],
    [255, 0x3ffffee, 26],
    [256, 0x3fffffff, 30], // EOS
  ];
  for (const [symbol, code, length] of expected) {
    assert.deepEqual(
      [HUFFMAN_CODES[symbol], HUFFMAN_CODE_LENGTHS[symbol]],
      [code, length],
      `symbol ${symbol}`,
    );
  }
});

test('Huffman: the strings of Appendix C.4 and C.6 encode to the printed bytes', () => {
  const cases: [string, string][] = [
    ['www.example.com', 'f1e3c2e5f23a6ba0ab90f4ff'],
    ['no-cache', 'a8eb10649cbf'],
    ['custom-key', '25a849e95ba97d7f'],
    ['custom-value', '25a849e95bb8e8b4bf'],
    ['302', '6402'],
    ['private', 'aec3771a4b'],
    ['Mon, 21 Oct 2013 20:13:21 GMT', 'd07abe941054d444a8200595040b8166e082a62d1bff'],
    ['https://www.example.com', '9d29ad171863c78f0b97c8e9ae82ae43d3'],
  ];
  for (const [text, code] of cases) {
    assert.equal(huffman(Buffer.from(text, 'latin1')).toString('hex'), code, text);
    assert.deepEqual(unhuffman(hex(code)), Buffer.from(text, 'latin1'));
  }
});

test('Huffman property: encode then decode gives back any byte string', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
      assert.deepEqual(unhuffman(huffman(bytes)), Buffer.from(bytes));
    }),
    RUNS,
  );
});

test('Huffman property: whatever random bytes decode to re-encodes to exactly those bytes', () => {
  // A successful decode means codes then 0..7 one-bits of padding: exactly what the encoder writes.
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
      const decoded = unhuffman(bytes);
      if (typeof decoded === 'number')
        assert.ok(decoded === HUFFMAN_ERR_EOS || decoded === HUFFMAN_ERR_PADDING);
      else assert.deepEqual(huffman(decoded), Buffer.from(bytes));
    }),
    { numRuns: 2000 },
  );
});

test('Huffman: EOS inside a string, padding over 7 bits, padding with a zero bit are errors', () => {
  assert.deepEqual(unhuffman(hex('1f')), Buffer.from('a')); // 00011 + 111
  assert.deepEqual(unhuffman(hex('')), Buffer.alloc(0));
  assert.equal(unhuffman(hex('18')), HUFFMAN_ERR_PADDING); // 00011 + 000
  assert.equal(unhuffman(hex('1e')), HUFFMAN_ERR_PADDING); // 00011 + 110
  assert.equal(unhuffman(hex('1fff')), HUFFMAN_ERR_PADDING); // 00011 + 11 one-bits
  assert.equal(unhuffman(hex('ff')), HUFFMAN_ERR_PADDING); // 8 one-bits, no symbol
  assert.equal(unhuffman(hex('ffffffff')), HUFFMAN_ERR_EOS); // EOS (30 ones) + 2 ones
  assert.equal(unhuffman(hex('1fffffffff')), HUFFMAN_ERR_EOS); // 'a', then EOS
});

// ---- RFC 7541 Appendix C ---------------------------------------------------------------------

/** Decodes a sequence of blocks on one decoder, checking fields and table state after each. */
function decodeSequence(
  tableSize: number,
  steps: { block: string; fields: string[][]; entries: number; size: number }[],
): void {
  const decoder = new HpackDecoder(tableSize);
  for (const [i, step] of steps.entries()) {
    assert.deepEqual(pairs(decoder.decode(hex(step.block))), step.fields, `block ${i + 1}`);
    assert.deepEqual(
      [decoder.tableLength, decoder.tableSize],
      [step.entries, step.size],
      `table after ${i + 1}`,
    );
  }
}

test('Appendix C.2: literal with/without indexing, never indexed, indexed', () => {
  decodeSequence(4096, [
    {
      block: '400a637573746f6d2d6b65790d637573746f6d2d686561646572',
      fields: [['custom-key', 'custom-header']],
      entries: 1,
      size: 55,
    },
  ]);
  decodeSequence(4096, [
    { block: '040c2f73616d706c652f70617468', fields: [[':path', '/sample/path']], entries: 0, size: 0 },
  ]);
  decodeSequence(4096, [
    { block: '100870617373776f726406736563726574', fields: [['password', 'secret']], entries: 0, size: 0 },
  ]);
  decodeSequence(4096, [{ block: '82', fields: [[':method', 'GET']], entries: 0, size: 0 }]);
});

const REQUEST_1 = [
  [':method', 'GET'],
  [':scheme', 'http'],
  [':path', '/'],
  [':authority', 'www.example.com'],
];
const REQUEST_2 = [...REQUEST_1, ['cache-control', 'no-cache']];
const REQUEST_3 = [
  [':method', 'GET'],
  [':scheme', 'https'],
  [':path', '/index.html'],
  [':authority', 'www.example.com'],
  ['custom-key', 'custom-value'],
];

test('Appendix C.3 and C.4: three requests on one connection, without and with Huffman', () => {
  decodeSequence(4096, [
    { block: '828684410f7777772e6578616d706c652e636f6d', fields: REQUEST_1, entries: 1, size: 57 },
    { block: '828684be58086e6f2d6361636865', fields: REQUEST_2, entries: 2, size: 110 },
    {
      block: '828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565',
      fields: REQUEST_3,
      entries: 3,
      size: 164,
    },
  ]);
  decodeSequence(4096, [
    { block: '828684418cf1e3c2e5f23a6ba0ab90f4ff', fields: REQUEST_1, entries: 1, size: 57 },
    { block: '828684be5886a8eb10649cbf', fields: REQUEST_2, entries: 2, size: 110 },
    { block: '828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf', fields: REQUEST_3, entries: 3, size: 164 },
  ]);
});

const DATE_1 = 'Mon, 21 Oct 2013 20:13:21 GMT';
const COOKIE = 'foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1';
const response = (status: string, date: string, extra: string[][] = []) => [
  [':status', status],
  ['cache-control', 'private'],
  ['date', date],
  ['location', 'https://www.example.com'],
  ...extra,
];
const RESPONSE_3 = response('200', 'Mon, 21 Oct 2013 20:13:22 GMT', [
  ['content-encoding', 'gzip'],
  ['set-cookie', COOKIE],
]);

test('Appendix C.5 and C.6: three responses with a 256-byte table (eviction), without and with Huffman', () => {
  decodeSequence(256, [
    {
      block:
        '4803333032580770726976617465611d4d6f6e2c203231204f637420323031332032303a31333a323120474d54' +
        '6e1768747470733a2f2f7777772e6578616d706c652e636f6d',
      fields: response('302', DATE_1),
      entries: 4,
      size: 222,
    },
    { block: '4803333037c1c0bf', fields: response('307', DATE_1), entries: 4, size: 222 },
    {
      block:
        '88c1611d4d6f6e2c203231204f637420323031332032303a31333a323220474d54c05a04677a69707738666f6f3d' +
        '4153444a4b48514b425a584f5157454f50495541585157454f49553b206d61782d6167653d333630303b207665' +
        '7273696f6e3d31',
      fields: RESPONSE_3,
      entries: 3,
      size: 215,
    },
  ]);
  decodeSequence(256, [
    {
      block:
        '488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29ad171863c78f0b' +
        '97c8e9ae82ae43d3',
      fields: response('302', DATE_1),
      entries: 4,
      size: 222,
    },
    { block: '4883640effc1c0bf', fields: response('307', DATE_1), entries: 4, size: 222 },
    {
      block:
        '88c16196d07abe941054d444a8200595040b8166e084a62d1bffc05a839bd9ab77ad94e7821dd7f2e6c7b335dfdf' +
        'cd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007',
      fields: RESPONSE_3,
      entries: 3,
      size: 215,
    },
  ]);
});

// ---- the encoder -----------------------------------------------------------------------------

const PSEUDO = [':method', ':scheme', ':path', ':authority', ':status', ':protocol'];
const TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-_.!#$%&'*+^`|~";
const token = fc.string({ unit: fc.constantFrom(...TOKEN_CHARS), minLength: 1, maxLength: 20 });
const fieldName = fc.oneof(fc.constantFrom(...PSEUDO), fc.constantFrom(...STATIC_NAMES.slice(1)), token);
/** Latin1 without NUL, CR, LF; long enough at times for multi-byte length prefixes. */
const latin1Char = fc
  .integer({ min: 1, max: 0xff })
  .filter((c) => c !== 0x0a && c !== 0x0d)
  .map((c) => String.fromCharCode(c));
const fieldValue = fc.oneof(
  fc.constantFrom(...STATIC_VALUES),
  fc.string({ unit: latin1Char, maxLength: 30 }),
  fc.string({ unit: latin1Char, maxLength: 400 }),
);
const fieldList = fc.array(fc.tuple(fieldName, fieldValue), { maxLength: 20 });

test('encoder: static matches are one indexed byte, other fields literals without indexing or Huffman', () => {
  const block = new HpackEncoder().encode([
    ...[':method', 'GET', ':scheme', 'http', ':path', '/', ':status', '200'],
    ...['content-type', 'text/plain', 'x-id', 'é1', ':method', 'PATCH'],
  ]);
  const expected =
    '82 86 84 88' + // indexed 2, 6, 4, 8
    '0f10 0a 746578742f706c61696e' + // static name 31 (4-bit prefix 15 + 16), raw 'text/plain'
    '00 04 782d6964 02 e931' + // literal name 'x-id', raw latin1 value 'é1'
    '02 05 5041544348'; // static name 2 (:method), raw 'PATCH'
  assert.equal(block.toString('hex'), expected.replace(/\s+/g, ''));
});

test('encoder: after peerHeaderTableSizeChanged the next block (only) starts with a size update to 0', () => {
  const encoder = new HpackEncoder();
  encoder.peerHeaderTableSizeChanged();
  assert.equal(encoder.encode([':method', 'GET']).toString('hex'), '2082');
  assert.equal(encoder.encode([':method', 'GET']).toString('hex'), '82');
  assert.throws(() => encoder.encode([':method']), /odd length 1/);
});

test('property: encode then decode gives the same fields, block after block', () => {
  const encoder = new HpackEncoder();
  const decoder = new HpackDecoder(4096, 1 << 20);
  fc.assert(
    fc.property(fieldList, (list) => {
      const flat = list.flat();
      assert.deepEqual(decoder.decode(encoder.encode(flat)), flat);
      assert.equal(decoder.tableLength, 0); // the encoder never inserts
    }),
    RUNS,
  );
});

/**
 * A second, deliberately simple encoder for tests: it can use every representation, Huffman or
 * raw strings, and dynamic table size updates, and it models the dynamic table (with eviction) on
 * its own, so the decoder's table must agree with it after every block.
 */
class ReferenceEncoder {
  table: [string, string][] = []; // newest first
  size = 0;
  capacity: number;
  constructor(capacity: number) {
    this.capacity = capacity;
  }

  private evict(limit: number) {
    while (this.size > limit) {
      const [n, v] = this.table.pop()!;
      this.size -= n.length + v.length + 32;
    }
  }
  private find(name: string, value?: string): number {
    for (let i = 1; i < STATIC_NAMES.length; i++) {
      if (STATIC_NAMES[i] === name && (value === undefined || STATIC_VALUES[i] === value)) return i;
    }
    const i = this.table.findIndex(([n, v]) => n === name && (value === undefined || v === value));
    return i < 0 ? 0 : 62 + i;
  }
  private int(out: number[], value: number, prefixBits: number, pattern: number) {
    const max = 2 ** prefixBits - 1;
    if (value < max) return out.push(pattern | value);
    out.push(pattern | max);
    for (value -= max; value >= 128; value = Math.floor(value / 128)) out.push(128 + (value % 128));
    out.push(value);
  }
  private str(out: number[], s: string, useHuffman: boolean) {
    const raw = Buffer.from(s, 'latin1');
    const bytes = useHuffman ? huffman(raw) : raw;
    this.int(out, bytes.length, 7, useHuffman ? 0x80 : 0);
    out.push(...bytes);
  }

  encode(fields: Op[], sizeUpdates: number[]): Buffer {
    const out: number[] = [];
    for (const size of sizeUpdates) {
      this.int(out, size, 5, 0x20);
      this.capacity = size;
      this.evict(size);
    }
    for (const { name, value, kind, huffman: h, nameRef } of fields) {
      const full = kind === 'indexed' ? this.find(name, value) : 0;
      if (full > 0) {
        this.int(out, full, 7, 0x80);
        continue;
      }
      const nameIndex = nameRef ? this.find(name) : 0;
      const [prefix, pattern] = kind === 'without' ? [4, 0x00] : kind === 'never' ? [4, 0x10] : [6, 0x40];
      this.int(out, nameIndex, prefix, pattern);
      if (nameIndex === 0) this.str(out, name, h);
      this.str(out, value, h);
      if (pattern !== 0x40) continue;
      const entrySize = name.length + value.length + 32;
      this.evict(Math.max(0, this.capacity - entrySize));
      if (entrySize <= this.capacity) {
        this.table.unshift([name, value]);
        this.size += entrySize;
      }
    }
    return Buffer.from(out);
  }
}
type Op = {
  name: string;
  value: string;
  kind: 'indexed' | 'incremental' | 'without' | 'never';
  huffman: boolean;
  nameRef: boolean;
};

// Names and values drawn mostly from small sets, so that later fields find earlier ones in the table.
const op: fc.Arbitrary<Op> = fc.record({
  name: fc.oneof({ arbitrary: fc.constantFrom('x-a', 'x-b', 'cookie', ':path'), weight: 3 }, fieldName),
  value: fc.oneof(
    { arbitrary: fc.constantFrom('a', 'bb', 'ccc', '/'), weight: 3 },
    fc.constantFrom(...STATIC_VALUES),
    fc.string({ unit: latin1Char, maxLength: 120 }),
  ),
  kind: fc.constantFrom('indexed', 'incremental', 'without', 'never'),
  huffman: fc.boolean(),
  nameRef: fc.boolean(),
});
const blocks = fc.array(
  fc.record({
    ops: fc.array(op, { maxLength: 12 }),
    sizeUpdates: fc.array(fc.integer({ min: 0, max: 512 }), { maxLength: 2 }),
  }),
  { minLength: 1, maxLength: 8 },
);

test('property: blocks from a reference encoder (all representations, Huffman, eviction) decode right', () => {
  fc.assert(
    fc.property(blocks, (seq) => {
      const reference = new ReferenceEncoder(512);
      const decoder = new HpackDecoder(512, 1 << 20);
      for (const { ops, sizeUpdates } of seq) {
        const block = reference.encode(ops, sizeUpdates);
        assert.deepEqual(
          pairs(decoder.decode(block)),
          ops.map((o) => [o.name, o.value]),
        );
        assert.deepEqual([decoder.tableLength, decoder.tableSize], [reference.table.length, reference.size]);
      }
    }),
    RUNS,
  );
});

test('property: random and mutated blocks fail only with HpackError, and never hang', () => {
  const decodeOrHpackError = (decoder: HpackDecoder, block: Buffer) => {
    try {
      decoder.decode(block);
      return true;
    } catch (err) {
      assert.ok(err instanceof HpackError, `not an HpackError: ${err}`);
      return false;
    }
  };
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ maxLength: 120 }), { minLength: 1, maxLength: 5 }), (arrays) => {
      const decoder = new HpackDecoder(4096, 4096);
      for (const bytes of arrays) if (!decodeOrHpackError(decoder, Buffer.from(bytes))) break;
    }),
    { numRuns: 3000 },
  );
  // Valid blocks with a few bytes overwritten reach deeper than random bytes do.
  const mutations = fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), {
    minLength: 1,
    maxLength: 4,
  });
  fc.assert(
    fc.property(blocks, mutations, (seq, changes) => {
      const reference = new ReferenceEncoder(512);
      const decoder = new HpackDecoder(512, 1 << 20);
      for (const { ops, sizeUpdates } of seq) {
        const block = reference.encode(ops, sizeUpdates);
        for (const [at, byte] of changes) if (block.length > 0) block[at % block.length] = byte;
        if (!decodeOrHpackError(decoder, block)) break;
      }
    }),
    RUNS,
  );
});

// ---- limits and malformed input --------------------------------------------------------------

function rejects(block: string, message: RegExp, decoder = new HpackDecoder()): void {
  assert.throws(
    () => decoder.decode(hex(block)),
    (err) => err instanceof HpackError && message.test(err.message),
  );
}

test('limits: the header list size (name + value + 32 per field) is enforced exactly', () => {
  const field = (valueLength: number) => new HpackEncoder().encode(['a', 'v'.repeat(valueLength)]);
  assert.deepEqual(new HpackDecoder(4096, 100).decode(field(67)), ['a', 'v'.repeat(67)]); // 1 + 67 + 32
  rejects(field(68).toString('hex'), /header list size over 100 bytes/, new HpackDecoder(4096, 100));
  // Counted across fields, and for indexed fields too (':method' 'GET' is 7 + 3 + 32 = 42).
  rejects('828282', /header list size over 100 bytes/, new HpackDecoder(4096, 100));
  assert.throws(() => new HpackDecoder(-1), /maxTableSize must be an integer/);
  assert.throws(() => new HpackDecoder(4096, 1.5), /maxListSize must be an integer/);
});

test('limits: dynamic table size updates only at block start and at most the announced size', () => {
  const decoder = new HpackDecoder(256);
  assert.deepEqual(decoder.decode(hex('3fe101 3fe101 82')), [':method', 'GET']); // 31 + 97 + 128 = 256, twice
  rejects('3fe201', /size update to 257 exceeds the maximum 256/, new HpackDecoder(256));
  rejects('82 20', /size update after a header field/);
  // An update evicts: after shrinking to 0 the entry C.3.1 inserted is gone.
  const shrinking = new HpackDecoder();
  shrinking.decode(hex('828684410f7777772e6578616d706c652e636f6d'));
  assert.equal(shrinking.tableLength, 1);
  assert.deepEqual(shrinking.decode(hex('20')), []);
  assert.deepEqual([shrinking.tableLength, shrinking.tableSize], [0, 0]);
  rejects('be', /index 62 out of range \(61 static \+ 0 dynamic entries\)/, shrinking);
});

test('limits: an entry larger than the table empties it but is still a field (4.4)', () => {
  const decoder = new HpackDecoder(64);
  decoder.decode(hex('40 0161 0162')); // 'a: b', 34 bytes
  assert.equal(decoder.tableLength, 1);
  const big = 'x'.repeat(40); // 1 + 40 + 32 = 73 > 64
  assert.deepEqual(decoder.decode(hex(`40 0178 28${Buffer.from(big).toString('hex')}`)), ['x', big]);
  assert.deepEqual([decoder.tableLength, decoder.tableSize], [0, 0]);
});

test('malformed: bad indexes, integers, truncation and Huffman strings are HpackErrors', () => {
  rejects('80', /indexed field with index 0/);
  rejects('be', /index 62 out of range/);
  rejects('7e 0161', /index 62 out of range/); // literal with a dynamic name index, empty table
  assert.deepEqual(new HpackDecoder().decode(hex('bd')), ['www-authenticate', '']); // 61 is the last static
  rejects('ff ffffffff0f', /integer in header block exceeds 2147483647/);
  rejects('ff 8080808080 00', /longer than 5 continuation bytes/);
  rejects('ff 80', /ends inside an integer/);
  rejects('40', /ends where a string literal should start/);
  rejects('00 05 61', /string literal of 5 bytes runs past the end/);
  rejects('00 81 18 01 61', /padding is longer than 7 bits or not all ones/);
  rejects('00 01 61 81 ff', /padding is longer than 7 bits or not all ones/);
  rejects('00 84 ffffffff 01 61', /contains the EOS symbol/);
});

// ---- interop with node:http2 (nghttp2) over raw loopback sockets -----------------------------

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const HEADERS = 0x1;
const SETTINGS = 0x4;
const CONTINUATION = 0x9;
const END_STREAM = 0x1;
const END_HEADERS = 0x4;

function frame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(streamId, 5);
  return Buffer.concat([head, payload]);
}

/**
 * Reads frames from a socket (a server's socket first loses the client preface): ACKs the peer's
 * SETTINGS (after `onSettings` saw them), joins HEADERS + CONTINUATION payloads (minus padding and
 * priority) into blocks, and resolves with the first `count` blocks in arrival order. Rejects on
 * close, on a wrong preface, or after a generous 10 s.
 */
function readHeaderBlocks(
  socket: net.Socket,
  count: number,
  options: { serverSide?: boolean; onSettings?: (payload: Buffer) => void } = {},
): Promise<{ streamId: number; block: Buffer }[]> {
  return new Promise((resolve, reject) => {
    const blocks: { streamId: number; block: Buffer }[] = [];
    let pending = Buffer.alloc(0);
    let prefaceLeft = options.serverSide ? PREFACE.length : 0;
    let parts: Buffer[] = [];
    const timer = setTimeout(
      () => reject(new Error(`only ${blocks.length} of ${count} header blocks`)),
      10_000,
    );
    socket.on('close', () => reject(new Error(`socket closed after ${blocks.length} of ${count} blocks`)));
    socket.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      if (prefaceLeft > 0) {
        if (pending.length < prefaceLeft) return;
        if (!pending.subarray(0, prefaceLeft).equals(PREFACE)) reject(new Error('not an HTTP/2 preface'));
        pending = pending.subarray(prefaceLeft);
        prefaceLeft = 0;
      }
      while (pending.length >= 9 && pending.length >= 9 + pending.readUIntBE(0, 3)) {
        const [type, flags, streamId] = [pending[3]!, pending[4]!, pending.readUInt32BE(5) & 0x7fff_ffff];
        let payload = pending.subarray(9, 9 + pending.readUIntBE(0, 3));
        pending = pending.subarray(9 + payload.length);
        if (type === SETTINGS && (flags & 1) === 0) {
          options.onSettings?.(payload);
          socket.write(frame(SETTINGS, 1, 0));
        }
        if (type !== HEADERS && type !== CONTINUATION) continue;
        if (type === HEADERS) {
          if (flags & 0x8) payload = payload.subarray(1, payload.length - payload[0]!); // PADDED
          if (flags & 0x20) payload = payload.subarray(5); // PRIORITY
          parts = [];
        }
        parts.push(payload);
        if ((flags & END_HEADERS) === 0) continue;
        blocks.push({ streamId, block: Buffer.concat(parts) });
        if (blocks.length === count) {
          clearTimeout(timer);
          resolve(blocks);
        }
      }
    });
  });
}

async function listen(server: net.Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as net.AddressInfo).port;
}

/** Fields of a decoded block as name -> values. */
function byName(flat: string[]): Map<string, string[]> {
  const map = new Map<string, string[]>();
  for (const [name, value] of pairs(flat)) map.set(name!, [...(map.get(name!) ?? []), value!]);
  return map;
}

test('interop: node:http2 server reads our blocks, and we decode its (Huffman, indexed) responses', async (t) => {
  const seen: http2.IncomingHttpHeaders[] = [];
  const server = http2.createServer();
  server.on('stream', (stream, headers) => {
    seen.push(headers);
    stream.respond(
      {
        ':status': 200,
        'content-type': 'text/plain; charset=utf-8',
        'cache-control': 'no-cache',
        'x-served-path': headers[':path'],
        'set-cookie': ['session=abcdef0123456789', 'theme=dark'],
        'x-long': 'v'.repeat(300),
      },
      { endStream: true },
    );
  });
  const port = await listen(server);
  const socket = net.connect(port, '127.0.0.1');
  t.after(() => (socket.destroy(), server.close()));
  await once(socket, 'connect');

  const encoder = new HpackEncoder();
  const request = (path: string) => [
    ...[':method', 'GET', ':scheme', 'http', ':authority', `127.0.0.1:${port}`, ':path', path],
    ...['accept-encoding', 'gzip, deflate', 'user-agent', 'trellis-test', 'x-latin1', 'caf\u00e9 \u00ff'],
    ...['x-big', 'y'.repeat(5000)],
  ];
  const paths = ['/one', '/two?q=1', '/three'];
  const responses = readHeaderBlocks(socket, paths.length);
  socket.write(
    Buffer.concat([
      PREFACE,
      frame(SETTINGS, 0, 0),
      ...paths.map((p, i) => frame(HEADERS, END_STREAM | END_HEADERS, 2 * i + 1, encoder.encode(request(p)))),
    ]),
  );

  const decoder = new HpackDecoder();
  for (const [i, { streamId, block }] of (await responses).entries()) {
    const flat = decoder.decode(block);
    // Even the first block (no dynamic entries yet) beats our raw encoding: nghttp2 used Huffman.
    assert.ok(block.length < encoder.encode(flat).length, 'nghttp2 compressed more than raw literals');
    const fields = byName(flat);
    assert.equal(streamId, 2 * i + 1);
    assert.deepEqual(fields.get(':status'), ['200']);
    assert.deepEqual(fields.get('x-served-path'), [paths[i]]);
    assert.deepEqual(fields.get('content-type'), ['text/plain; charset=utf-8']);
    assert.deepEqual(fields.get('set-cookie'), ['session=abcdef0123456789', 'theme=dark']);
    assert.deepEqual(fields.get('x-long'), ['v'.repeat(300)]);
    assert.equal(fields.get('date')?.length, 1);
  }
  assert.ok(decoder.tableLength > 0, 'nghttp2 inserted fields into the dynamic table');

  assert.equal(seen.length, paths.length);
  for (const [i, headers] of seen.entries()) {
    assert.equal(headers[':path'], paths[i]);
    assert.equal(headers[':authority'], `127.0.0.1:${port}`);
    assert.equal(headers['accept-encoding'], 'gzip, deflate');
    assert.equal(headers['user-agent'], 'trellis-test');
    assert.equal(headers['x-latin1'], 'caf\u00e9 \u00ff');
    assert.equal(headers['x-big'], 'y'.repeat(5000));
  }
});

test('interop: we decode the request blocks of a node:http2 client, dynamic table and CONTINUATION included', async (t) => {
  const captured = Promise.withResolvers<{ streamId: number; block: Buffer }[]>();
  const sockets = new Set<net.Socket>();
  const raw = net.createServer((socket) => {
    sockets.add(socket);
    socket.write(frame(SETTINGS, 0, 0));
    readHeaderBlocks(socket, 4, { serverSide: true }).then(captured.resolve, captured.reject);
  });
  const port = await listen(raw);
  const client = http2.connect(`http://127.0.0.1:${port}`);
  client.on('error', () => {}); // the raw server never answers; the client is destroyed below
  t.after(() => {
    client.destroy();
    for (const s of sockets) s.destroy();
    raw.close();
  });

  const common = { 'x-trace': 'trace-id-0123456789abcdef', 'user-agent': 'node-test/1.0', cookie: 'id=42' };
  const requests: http2.OutgoingHttpHeaders[] = [
    { ':path': '/a', ...common, authorization: 'Bearer secret-token' },
    { ':path': '/b?x=\u00e9', ...common, 'x-count': '2' },
    { ':path': '/c', ':method': 'POST', ...common, 'content-type': 'application/json' },
    { ':path': '/d', ...common, 'x-big': 'x'.repeat(30_000) }, // > 16 KiB even Huffman-coded
  ];
  for (const headers of requests) client.request(headers, { endStream: true }).on('error', () => {});

  const blocks = await captured.promise;
  const decoder = new HpackDecoder();
  for (const [i, { block }] of blocks.entries()) {
    const fields = byName(decoder.decode(block));
    const expected = {
      ':method': 'GET',
      ':scheme': 'http',
      ':authority': `127.0.0.1:${port}`,
      ...requests[i],
    };
    for (const [name, value] of Object.entries(expected)) assert.deepEqual(fields.get(name), [value], name);
  }
  assert.ok(blocks[3]!.block.length > 16_384, 'the last block needed CONTINUATION frames');
  // The repeated fields came from the dynamic table: the second block is far smaller than the first.
  assert.ok(blocks[1]!.block.length < blocks[0]!.block.length / 2, 'later blocks reuse indexed fields');
  assert.ok(decoder.tableLength > 0);
});

test('interop: a node:http2 server announcing a 0-byte table accepts us after peerHeaderTableSizeChanged', async (t) => {
  let path: string | undefined;
  const server = http2.createServer({ settings: { headerTableSize: 0 } });
  server.on('stream', (stream, headers) => {
    path = headers[':path'];
    stream.respond({ ':status': 204 }, { endStream: true });
  });
  const port = await listen(server);
  const socket = net.connect(port, '127.0.0.1');
  t.after(() => (socket.destroy(), server.close()));
  await once(socket, 'connect');

  const encoder = new HpackEncoder();
  const request = [':method', 'GET', ':scheme', 'http', ':authority', 'example', ':path', '/sized'];
  const onSettings = (settings: Buffer) => {
    // SETTINGS_HEADER_TABLE_SIZE (id 1) is in the server's first SETTINGS; it is ACKed right after.
    for (let i = 0; i + 6 <= settings.length; i += 6) {
      if (settings.readUInt16BE(i) === 1) encoder.peerHeaderTableSizeChanged();
    }
    setImmediate(() => socket.write(frame(HEADERS, END_STREAM | END_HEADERS, 1, encoder.encode(request))));
  };
  const response = readHeaderBlocks(socket, 1, { onSettings });
  socket.write(Buffer.concat([PREFACE, frame(SETTINGS, 0, 0)]));
  const [first] = await response;
  assert.deepEqual(new HpackDecoder().decode(first!.block).slice(0, 2), [':status', '204']);
  assert.equal(path, '/sized');
});
