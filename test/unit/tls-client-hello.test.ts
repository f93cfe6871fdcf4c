// Tests for the ClientHello parser: real hellos sent by Node's own TLS client, hellos built from
// random SNI/ALPN lists and split into random records, and fast-check properties that untrusted
// bytes never make it throw, read out of bounds or decide before the hello is complete.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseClientHello } from '../../src/proxy/detect/tls-client-hello.ts';
import { captureClientHello } from '../helpers/tls-hello.ts';

interface HelloSpec {
  sni: string | null;
  alpn: string[];
  sessionId?: Uint8Array;
  cipherSuites?: number[];
  /** Other extensions, sent before server_name and ALPN (types other than 0 and 16). */
  otherExtensions?: { type: number; data: Uint8Array }[];
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

function vector16(body: Buffer): Buffer {
  return Buffer.concat([u16(body.length), body]);
}

function extension(type: number, data: Buffer): Buffer {
  return Buffer.concat([u16(type), vector16(data)]);
}

/** A ClientHello handshake message (4-byte header included), laid out as RFC 8446 §4.1.2 says. */
function buildClientHello(spec: HelloSpec): Buffer {
  const sessionId = Buffer.from(spec.sessionId ?? new Uint8Array(32).fill(7));
  const suites = spec.cipherSuites ?? [0x1301, 0x1302, 0xc02f];
  const extensions: Buffer[] = (spec.otherExtensions ?? []).map((e) =>
    extension(e.type, Buffer.from(e.data)),
  );
  if (spec.sni !== null) {
    const name = Buffer.from(spec.sni, 'latin1');
    const entry = Buffer.concat([Buffer.from([0]), vector16(name)]);
    extensions.push(extension(0x0000, vector16(entry)));
  }
  if (spec.alpn.length > 0) {
    const names = spec.alpn.map((p) => {
      const name = Buffer.from(p, 'latin1');
      return Buffer.concat([Buffer.from([name.length]), name]);
    });
    extensions.push(extension(0x0010, vector16(Buffer.concat(names))));
  }
  const body = Buffer.concat([
    u16(0x0303),
    Buffer.alloc(32, 0xab),
    Buffer.from([sessionId.length]),
    sessionId,
    vector16(Buffer.concat(suites.map(u16))),
    Buffer.from([1, 0]),
    vector16(Buffer.concat(extensions)),
  ]);
  const header = Buffer.from([
    0x01,
    (body.length >>> 16) & 0xff,
    (body.length >>> 8) & 0xff,
    body.length & 0xff,
  ]);
  return Buffer.concat([header, body]);
}

/** Wraps a handshake message into handshake records carrying `sizes` bytes each (last: the rest). */
function frame(handshake: Buffer, sizes: number[] = [], version = 0x0301): Buffer {
  const records: Buffer[] = [];
  let offset = 0;
  for (let i = 0; offset < handshake.length; i++) {
    const size = Math.min(sizes[i] ?? 16384, handshake.length - offset, 16384);
    records.push(Buffer.from([0x16]), u16(version), u16(size), handshake.subarray(offset, offset + size));
    offset += size;
  }
  return Buffer.concat(records);
}

// Offsets inside a handshake message from buildClientHello (32-byte session id, 3 suites).
const CIPHER_SUITES_LENGTH_AT = 4 + 2 + 32 + 1 + 32;
const EXTENSIONS_LENGTH_AT = CIPHER_SUITES_LENGTH_AT + 2 + 6 + 2;

function patchU16(buf: Buffer, at: number, value: number): Buffer {
  const copy = Buffer.from(buf);
  copy.writeUInt16BE(value, at);
  return copy;
}

/** The handshake message inside a single-record hello (as Node sends it). */
function unframe(record: Buffer): Buffer {
  return record.subarray(5);
}

test('parses SNI and ALPN from a ClientHello sent by Node', async () => {
  const hello = await captureClientHello({ servername: 'svc.example', ALPNProtocols: ['h2', 'http/1.1'] });
  assert.deepEqual(parseClientHello(hello), {
    status: 'ok',
    sni: 'svc.example',
    alpn: ['h2', 'http/1.1'],
    bytes: hello.length,
  });
});

test('a Node ClientHello without servername or ALPN has neither', async () => {
  // Node sends no SNI when it connects to an IP address and no servername is given.
  const hello = await captureClientHello({});
  assert.deepEqual(parseClientHello(hello), { status: 'ok', sni: null, alpn: [], bytes: hello.length });
});

test('a Node ClientHello is need-more at every split point, and ok only when complete', async () => {
  const hello = await captureClientHello({ servername: 'api.svc.example', ALPNProtocols: ['h2'] });
  for (let cut = 0; cut < hello.length; cut++) {
    assert.deepEqual(parseClientHello(hello.subarray(0, cut)), { status: 'need-more' }, `cut at ${cut}`);
  }
  // Bytes after the hello (another record) do not change the answer.
  const withMore = Buffer.concat([hello, Buffer.from([0x14, 0x03, 0x03, 0x00, 0x01, 0x01])]);
  assert.deepEqual(parseClientHello(withMore), {
    status: 'ok',
    sni: 'api.svc.example',
    alpn: ['h2'],
    bytes: hello.length,
  });
});

test('a Node ClientHello split into records of any size reassembles', async () => {
  const handshake = unframe(
    await captureClientHello({ servername: 'svc.example', ALPNProtocols: ['h2', 'http/1.1'] }),
  );
  for (const size of [1, 2, 3, 4, 5, 7, 64, 100, 511, handshake.length - 1]) {
    const records = frame(handshake, new Array<number>(handshake.length).fill(size));
    const result = parseClientHello(records);
    assert.deepEqual(
      result,
      { status: 'ok', sni: 'svc.example', alpn: ['h2', 'http/1.1'], bytes: records.length },
      `records of ${size}`,
    );
  }
  // Fed byte by byte, a hello in one-byte records is need-more until its last byte.
  const tiny = frame(handshake, new Array<number>(handshake.length).fill(1));
  for (let cut = 0; cut < tiny.length; cut++) {
    assert.equal(parseClientHello(tiny.subarray(0, cut)).status, 'need-more', `cut at ${cut}`);
  }
});

test('a hello without extensions (TLS 1.0-1.2) and one with bytes after it in its record', () => {
  const bare = buildClientHello({ sni: null, alpn: [] });
  // Drop the empty extensions block (2 bytes) and fix up the handshake length.
  const noExtensions = Buffer.from(bare.subarray(0, bare.length - 2));
  noExtensions.writeUIntBE(noExtensions.length - 4, 1, 3);
  assert.deepEqual(parseClientHello(frame(noExtensions)), {
    status: 'ok',
    sni: null,
    alpn: [],
    bytes: noExtensions.length + 5,
  });

  const hello = buildClientHello({ sni: 'A.Example', alpn: ['h2'] });
  const trailing = Buffer.concat([hello, Buffer.from([0x0b, 0, 0, 0])]); // another handshake message
  assert.deepEqual(parseClientHello(frame(trailing)), {
    status: 'ok',
    sni: 'a.example',
    alpn: ['h2'],
    bytes: hello.length + 5,
  });
});

test('malformed hellos are errors, decided as soon as the bad byte is seen', () => {
  const good = frame(buildClientHello({ sni: 'svc.example', alpn: ['h2'] }));
  const patched = (at: number, bytes: number[]): Buffer => {
    const copy = Buffer.from(good);
    copy.set(bytes, at);
    return copy;
  };
  const cases: [string, Buffer][] = [
    ['alert record', patched(0, [0x15])],
    ['SSL 2 style', patched(0, [0x80])],
    ['record version 3.5', patched(2, [0x05])],
    ['record version 2.x', patched(1, [0x02])],
    ['zero-length record', Buffer.from([0x16, 0x03, 0x01, 0x00, 0x00])],
    ['record over 2^14', Buffer.from([0x16, 0x03, 0x01, 0x40, 0x01])],
    ['ServerHello', patched(5, [0x02])],
    ['hello too short', Buffer.from([0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x00, 0x00, 0x10])],
    ['hello version 2.0', patched(9, [0x02])],
  ];
  for (const [name, buf] of cases) {
    assert.equal(parseClientHello(buf).status, 'error', name);
  }
  // Record-level errors are decided from the prefix that holds the bad byte, without waiting.
  assert.equal(parseClientHello(Buffer.from([0x15])).status, 'error');
  assert.equal(parseClientHello(Buffer.from([0x16, 0x03, 0x09])).status, 'error');
  assert.equal(parseClientHello(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05, 0x02])).status, 'error');
  // A second record that is not a handshake record, while the hello is incomplete.
  const handshake = buildClientHello({ sni: 'svc.example', alpn: [] });
  const first = frame(handshake.subarray(0, 10));
  assert.equal(
    parseClientHello(Buffer.concat([first, Buffer.from([0x17, 0x03, 0x03, 0x00, 0x01])])).status,
    'error',
  );
});

test('malformed bodies and extensions are errors', () => {
  const withBody = (mutate: (hello: Buffer) => Buffer): Buffer =>
    frame(mutate(buildClientHello({ sni: 'svc.example', alpn: ['h2'] })));
  const rebuilt = (spec: Partial<HelloSpec>): Buffer =>
    frame(buildClientHello({ sni: null, alpn: [], ...spec }));
  const bad: [string, Buffer][] = [
    ['session id over 32', rebuilt({ sessionId: new Uint8Array(33) })],
    ['odd cipher suites length', withBody((h) => patchU16(h, CIPHER_SUITES_LENGTH_AT, 5))],
    ['no cipher suites', rebuilt({ cipherSuites: [] })],
    ['extensions length past the hello', withBody((h) => patchU16(h, EXTENSIONS_LENGTH_AT, 0xffff))],
    [
      'extensions length short of the hello',
      withBody((h) => patchU16(h, EXTENSIONS_LENGTH_AT, h.readUInt16BE(EXTENSIONS_LENGTH_AT) - 1)),
    ],
    [
      'duplicate extension',
      rebuilt({
        otherExtensions: [
          { type: 0x0a, data: new Uint8Array([0, 0]) },
          { type: 0x0a, data: new Uint8Array([0, 0]) },
        ],
      }),
    ],
    ['SNI with a trailing dot', rebuilt({ sni: 'svc.example.' })],
    ['SNI with a space', rebuilt({ sni: 'svc example' })],
    ['SNI with an empty label', rebuilt({ sni: 'svc..example' })],
    ['SNI that is empty', rebuilt({ sni: '' })],
    ['SNI label over 63', rebuilt({ sni: `${'a'.repeat(64)}.example` })],
    ['SNI with non-ASCII', rebuilt({ sni: 'sv\u00e9.example' })],
    [
      'two host names',
      rebuilt({
        otherExtensions: [
          { type: 0, data: new Uint8Array([0, 10, 0, 0, 3, 0x61, 0x2e, 0x62, 0, 0, 1, 0x63]) },
        ],
      }),
    ],
    ['empty ALPN list', rebuilt({ otherExtensions: [{ type: 16, data: new Uint8Array([0, 0]) }] })],
    [
      'empty ALPN name',
      rebuilt({ otherExtensions: [{ type: 16, data: new Uint8Array([0, 3, 0, 1, 0x61]) }] }),
    ],
    [
      'ALPN name past its list',
      rebuilt({ otherExtensions: [{ type: 16, data: new Uint8Array([0, 2, 5, 0x61]) }] }),
    ],
  ];
  for (const [name, buf] of bad) {
    const result = parseClientHello(buf);
    assert.equal(result.status, 'error', `${name}: ${JSON.stringify(result)}`);
  }
  // Unknown name types are skipped; unknown extensions are ignored.
  const skipped = rebuilt({
    otherExtensions: [
      { type: 0, data: new Uint8Array([0, 4, 1, 0, 1, 0x61]) },
      { type: 0x2a2a, data: new Uint8Array(0) },
    ],
  });
  assert.deepEqual(parseClientHello(skipped), { status: 'ok', sni: null, alpn: [], bytes: skipped.length });
});

test('a hello that announces more than the limit is an error before its bytes arrive', () => {
  const hello = frame(buildClientHello({ sni: 'svc.example', alpn: ['h2'] }));
  const announced = hello.readUIntBE(6, 3) + 4;
  assert.equal(parseClientHello(hello.subarray(0, 9), announced - 1).status, 'error');
  assert.equal(parseClientHello(hello.subarray(0, 9), announced).status, 'need-more');
  assert.equal(parseClientHello(hello, announced).status, 'ok');
});

const sniArb = fc.option(fc.domain(), { nil: null });
const alpnArb = fc.array(
  fc.uint8Array({ minLength: 1, maxLength: 40 }).map((bytes) => Buffer.from(bytes).toString('latin1')),
  { maxLength: 6 },
);
const specArb: fc.Arbitrary<HelloSpec> = fc.record({
  sni: sniArb,
  alpn: alpnArb,
  sessionId: fc.uint8Array({ maxLength: 32 }),
  cipherSuites: fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 1, maxLength: 40 }),
  otherExtensions: fc.uniqueArray(
    fc.record({
      type: fc.integer({ min: 1, max: 0xffff }).filter((t) => t !== 0x10),
      data: fc.uint8Array({ maxLength: 64 }),
    }),
    { selector: (e) => e.type, maxLength: 6 },
  ),
});
const framedArb = fc
  .tuple(specArb, fc.array(fc.integer({ min: 1, max: 600 }), { maxLength: 8 }))
  .map(([spec, sizes]) => ({
    spec,
    bytes: frame(buildClientHello(spec), sizes),
  }));

test('property: hellos built from random SNI/ALPN lists round-trip through any record split', () => {
  fc.assert(
    fc.property(framedArb, ({ spec, bytes }) => {
      assert.deepEqual(parseClientHello(bytes), {
        status: 'ok',
        sni: spec.sni?.toLowerCase() ?? null,
        alpn: spec.alpn,
        bytes: bytes.length,
      });
    }),
    { numRuns: 300 },
  );
});

test('property: every truncation of a valid hello is need-more', () => {
  fc.assert(
    fc.property(framedArb, fc.nat(), ({ bytes }, cut) => {
      assert.deepEqual(parseClientHello(bytes.subarray(0, cut % bytes.length)), { status: 'need-more' });
    }),
    { numRuns: 300 },
  );
});

function assertWellFormed(buf: Buffer): void {
  const result = parseClientHello(buf);
  if (result.status === 'ok') {
    assert.ok(result.bytes > 0 && result.bytes <= buf.length, `bytes ${result.bytes} of ${buf.length}`);
  } else if (result.status === 'error') {
    assert.equal(typeof result.reason, 'string');
  }
}

test('property: random bytes never throw and never claim more bytes than given', () => {
  const plausibleStart = fc
    .tuple(
      fc.integer({ min: 0, max: 4 }),
      fc.integer({ min: 1, max: 300 }),
      fc.uint8Array({ maxLength: 400 }),
    )
    .map(([minor, length, rest]) =>
      Buffer.concat([Buffer.from([0x16, 0x03, minor, length >> 8, length & 0xff, 0x01]), rest]),
    );
  fc.assert(
    fc.property(
      fc.oneof(
        fc.uint8Array({ maxLength: 600 }).map((b) => Buffer.from(b)),
        plausibleStart,
      ),
      (buf) => {
        assertWellFormed(buf);
      },
    ),
    { numRuns: 2000 },
  );
});

test('property: single-byte mutations of a valid hello never throw', () => {
  fc.assert(
    fc.property(framedArb, fc.nat(), fc.integer({ min: 0, max: 255 }), ({ bytes }, at, value) => {
      const mutated = Buffer.from(bytes);
      mutated[at % mutated.length] = value;
      assertWellFormed(mutated);
    }),
    { numRuns: 1000 },
  );
});

test('property: a decision never changes when more bytes arrive', () => {
  fc.assert(
    fc.property(
      framedArb,
      fc.nat(),
      fc.integer({ min: 0, max: 255 }),
      fc.uint8Array({ maxLength: 32 }),
      ({ bytes }, at, value, tail) => {
        const mutated = Buffer.from(bytes);
        mutated[at % mutated.length] = value;
        const extended = Buffer.concat([mutated, tail]);
        for (let cut = 0; cut <= extended.length; cut += 7) {
          const early = parseClientHello(extended.subarray(0, cut));
          if (early.status === 'need-more') continue;
          assert.deepEqual(parseClientHello(extended), early, `decided at ${cut}`);
          return;
        }
      },
    ),
    { numRuns: 300 },
  );
});
