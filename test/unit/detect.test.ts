// Tests for protocol detection: a table of first bytes from real protocols, every prefix of the
// recognised ones, the maxBytes bound, and fast-check properties that detection never throws and
// never changes its mind once it has decided.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { detectProtocol, type Detection } from '../../src/proxy/detect/detect.ts';
import { captureClientHello } from '../helpers/tls-hello.ts';

const H2_PREFACE = 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n';

const helloPromise = captureClientHello({ servername: 'svc.example', ALPNProtocols: ['h2', 'http/1.1'] });

function bytes(input: string | number[]): Buffer {
  return typeof input === 'string' ? Buffer.from(input, 'latin1') : Buffer.from(input);
}

const HTTP1_LINES = [
  ...['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'].map(
    (m) => `${m} /a/b?c=d HTTP/1.1\r\n`,
  ),
  'CONNECT svc.example:443 HTTP/1.1\r\nHost: svc.example:443\r\n\r\n',
  'GET http://svc.example:8080/path?q=1 HTTP/1.1\r\nHost: svc.example:8080\r\n\r\n',
  'OPTIONS * HTTP/1.1\r\n',
  'GET / HTTP/1.0\n',
  'PRI * HTTP/1.1\r\n', // starts like the h2 preface, then is not
  'PROPFIND /dav HTTP/1.1\r\n',
  '\r\nGET / HTTP/1.1\r\n', // one leading empty line is allowed (RFC 9112 §2.2)
  'GET / HTTP/1.1\r\nbad header line\r\n\r\n', // the HTTP/1 parser answers 400 later
  'GET /caf\u00e9 HTTP/1.1\r\n', // raw non-ASCII in the target: malformed but meant as HTTP/1
];

test('detects each protocol from its first bytes', async () => {
  const hello = await helloPromise;
  const table: [string, Buffer, Detection][] = [
    ['empty', bytes(''), { kind: 'need-more' }],
    ['h2 preface', bytes(H2_PREFACE), { kind: 'h2' }],
    [
      'h2 preface and a SETTINGS frame',
      bytes(`${H2_PREFACE}\x00\x00\x00\x04\x00\x00\x00\x00\x00`),
      { kind: 'h2' },
    ],
    ['TLS ClientHello from Node', hello, { kind: 'tls', sni: 'svc.example', alpn: ['h2', 'http/1.1'] }],
    ['SSH banner', bytes('SSH-2.0-OpenSSH_9.6\r\n'), { kind: 'opaque' }],
    // 'SSH-2.0-' is all token characters: it could still be an HTTP method, so wait for more.
    ['SSH banner start', bytes('SSH-2.0-'), { kind: 'need-more' }],
    ['redis inline PING', bytes('PING\r\n'), { kind: 'opaque' }],
    ['redis RESP PING', bytes('*1\r\n$4\r\nPING\r\n'), { kind: 'opaque' }],
    ['binary garbage', bytes([0x00, 0xff, 0x13, 0x37, 0x80]), { kind: 'opaque' }],
    ['SSL 2 style hello', bytes([0x80, 0x2e, 0x01, 0x03, 0x01]), { kind: 'opaque' }],
    // A standard method and a space is HTTP/1: the HTTP/1 parser answers malformed lines (400/505).
    ['HTTP/0.9 request', bytes('GET /\r\n'), { kind: 'http1' }],
    ['HTTP/2 request line', bytes('GET / HTTP/2.0\r\n'), { kind: 'http1' }],
    ['HTTP/2 request line, other method', bytes('FOO / HTTP/2.0\r\n'), { kind: 'http1' }],
    [
      'h2 preface with a wrong tail (the HTTP/1 parser answers 505)',
      bytes('PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n'),
      { kind: 'http1' },
    ],
    ['two spaces after the method', bytes('GET  / HTTP/1.1\r\n'), { kind: 'http1' }],
    // Another token and whitespace: HTTP/1 when the line names an HTTP version (lenient servers
    // read it as a request), else another protocol's line; undecided until the line ends.
    ['two spaces after another method', bytes('FOO  / HTTP/1.1\r\n'), { kind: 'http1' }],
    ['CR without LF, line not ended', bytes('FOO / HTTP/1.1\rX'), { kind: 'need-more' }],
    ['lower-case version', bytes('FOO / http/1.1\r\n'), { kind: 'http1' }],
    ['another method, no version', bytes('PURGEX /x\r\n'), { kind: 'opaque' }],
    ['memcached get', bytes('get key\r\n'), { kind: 'opaque' }],
    ['memcached set', bytes('set k 0 0 5\r\nhello\r\n'), { kind: 'opaque' }],
    ['redis inline SET', bytes('SET k v\r\n'), { kind: 'opaque' }],
    ['non-token byte in the method', bytes('GE(T / HTTP/1.1\r\n'), { kind: 'opaque' }],
    ['TLS byte then not TLS', bytes([0x16, 0x04]), { kind: 'opaque' }],
    ['TLS version 3.5', bytes([0x16, 0x03, 0x05]), { kind: 'opaque' }],
    ['TLS zero-length record', bytes([0x16, 0x03, 0x01, 0x00, 0x00, 0x01]), { kind: 'opaque' }],
    ['TLS record over 2^14', bytes([0x16, 0x03, 0x01, 0x40, 0x01, 0x01]), { kind: 'opaque' }],
    [
      'TLS record holding no ClientHello',
      bytes([0x16, 0x03, 0x03, 0x00, 0x30, 0x02]),
      { kind: 'tls', sni: null, alpn: [] },
    ],
    ['one TLS byte', bytes([0x16]), { kind: 'need-more' }],
    ['TLS record header only', bytes([0x16, 0x03, 0x01, 0x02, 0x00]), { kind: 'need-more' }],
  ];
  for (const line of HTTP1_LINES) table.push([JSON.stringify(line), bytes(line), { kind: 'http1' }]);
  for (const [name, input, expected] of table) {
    assert.deepEqual(detectProtocol(input), expected, name);
  }
});

test('every prefix of a recognised input is need-more or the final answer', async () => {
  const hello = await helloPromise;
  const inputs = [...HTTP1_LINES.map((l) => bytes(l)), bytes(H2_PREFACE), hello];
  for (const input of inputs) {
    const final = detectProtocol(input);
    let decidedAt = -1;
    for (let cut = 0; cut <= input.length; cut++) {
      const result = detectProtocol(input.subarray(0, cut));
      if (result.kind === 'need-more') {
        assert.equal(decidedAt, -1, `need-more at ${cut} after deciding at ${decidedAt}`);
      } else {
        assert.deepEqual(
          result,
          final,
          `prefix of ${cut} bytes of ${JSON.stringify(input.toString('latin1').slice(0, 30))}`,
        );
        if (decidedAt < 0) decidedAt = cut;
      }
    }
    assert.notEqual(decidedAt, -1);
  }
  // Decided as soon as possible: at the end of the request line, at the 24th preface byte.
  assert.equal(detectProtocol(bytes('GET')).kind, 'need-more');
  assert.equal(detectProtocol(bytes('GET ')).kind, 'http1');
  assert.equal(detectProtocol(bytes('FOO / HTTP/1.1\r')).kind, 'need-more');
  assert.equal(detectProtocol(bytes('FOO / HTTP/1.1\r\n')).kind, 'http1');
  assert.equal(detectProtocol(bytes(H2_PREFACE.slice(0, 23))).kind, 'need-more');
  assert.equal(detectProtocol(hello.subarray(0, hello.length - 1)).kind, 'need-more');
});

test('decides opaque at the first byte that rules HTTP/1 out', () => {
  assert.deepEqual(detectProtocol(bytes('G\x00')), { kind: 'opaque' });
  assert.deepEqual(detectProtocol(bytes(' GET')), { kind: 'opaque' });
  assert.deepEqual(detectProtocol(bytes('FOO / X\n')), { kind: 'opaque' });
  assert.deepEqual(detectProtocol(bytes('FOO / HTTPS\r\n')), { kind: 'opaque' });
  assert.deepEqual(detectProtocol(bytes('FOO(')), { kind: 'opaque' });
  assert.deepEqual(detectProtocol(bytes('\r\r\x00')), { kind: 'opaque' });
  assert.deepEqual(detectProtocol(bytes('\n\n\x00')), { kind: 'opaque' });
});

// Regressions (issue 9, the red team): request lines the grammar forbids but lenient servers read
// (a tab or two spaces after the method, an extension method, no version) went through as opaque
// bytes, their client-identity header with them. They go to the HTTP/1 parser now (which answers
// 400); other protocols' lines stay opaque.
test('a line a lenient server would read as a request is HTTP/1 (the parser refuses it)', () => {
  for (const ws of ['\t', '\x0b', '\x0c', '  ']) {
    assert.deepEqual(detectProtocol(bytes(`GET${ws}/ HTTP/1.1\r\n`)), { kind: 'http1' });
    assert.deepEqual(detectProtocol(bytes(`FOO${ws}/ HTTP/1.1\r\n`)), { kind: 'http1' });
  }
  for (const line of [
    'PURGE  /x HTTP/1.1\r\n',
    'PROPFIND /x  HTTP/1.1\r\n',
    'PURGE /x\r\n',
    'M-SEARCH * HTTP/1.1\r\n',
  ]) {
    assert.deepEqual(detectProtocol(bytes(line)), { kind: 'http1' }, line);
  }
  // The fuzz campaign's third run: a request line after a bare CR reached the app as opaque bytes,
  // a forged trellis-client-id with it (a lenient server skips the CR).
  assert.deepEqual(detectProtocol(bytes('\rET //x HTTP/1.1\r\n')), { kind: 'http1' });
  assert.deepEqual(detectProtocol(bytes('\r\rGET / HTTP/1.1\r\n')), { kind: 'http1' });
  assert.deepEqual(detectProtocol(bytes('\n\rPOST /')), { kind: 'http1' });
  assert.deepEqual(detectProtocol(bytes('get key\r\n')), { kind: 'opaque' });
  assert.deepEqual(detectProtocol(bytes('EHLO mail.example\r\n')), { kind: 'opaque' });
});

test('never looks past maxBytes', async () => {
  const longTarget = `FOO /${'a'.repeat(100)}`;
  assert.deepEqual(detectProtocol(bytes(longTarget), 200), { kind: 'need-more' });
  // A request line still being read at maxBytes goes to the HTTP/1 parser (which refuses it).
  assert.deepEqual(detectProtocol(bytes(longTarget), longTarget.length), { kind: 'http1' });
  // A line end beyond maxBytes is not seen.
  assert.deepEqual(detectProtocol(bytes(`${longTarget} HTTP/1.1\r\n`), 64), { kind: 'http1' });
  assert.deepEqual(detectProtocol(bytes(`${longTarget} HTTP/1.1\r\n`), 200), { kind: 'http1' });
  const longMethod = bytes('A'.repeat(16 * 1024));
  assert.deepEqual(detectProtocol(longMethod.subarray(0, 16 * 1024 - 1)), { kind: 'need-more' });
  assert.deepEqual(detectProtocol(longMethod), { kind: 'http1' }, 'the default maxBytes is 16 KiB');
  // Regression (issue 9): 16 KiB of empty lines were forwarded as opaque bytes, and a request
  // after them reached the app unparsed, its client-identity header with it.
  assert.deepEqual(detectProtocol(bytes('\r\n'.repeat(8 * 1024 + 16))), { kind: 'http1' });
  assert.deepEqual(detectProtocol(bytes('\n'.repeat(16 * 1024))), { kind: 'http1' });
  // A ClientHello larger than maxBytes: TLS without SNI/ALPN, decided from its header alone.
  const hello = await helloPromise;
  assert.deepEqual(detectProtocol(hello.subarray(0, 9), 64), { kind: 'tls', sni: null, alpn: [] });
  assert.deepEqual(detectProtocol(hello, hello.length), {
    kind: 'tls',
    sni: 'svc.example',
    alpn: ['h2', 'http/1.1'],
  });
  // Nonsense limits fall back to the default instead of throwing.
  for (const max of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
    assert.deepEqual(detectProtocol(bytes('GET / HTTP/1.1\r\n'), max), { kind: 'http1' });
  }
});

/** Bytes that go deep into the recognisers: valid inputs, cut, mutated and extended at random. */
function interestingBytes(hello: Buffer): fc.Arbitrary<Buffer> {
  const seeds = [...HTTP1_LINES.map((l) => bytes(l)), bytes(H2_PREFACE), hello, bytes('SSH-2.0-x\r\n')];
  const requestLine = fc
    .tuple(
      fc.stringMatching(/^[A-Za-z!#*~-]{0,8}$/),
      fc.constantFrom(' ', '  ', '\t', ''),
      fc.stringMatching(/^[/a-z:*]{0,10}$/),
      fc.constantFrom(' HTTP/1.1', ' HTTP/1.0', ' HTTP/2.0', ' HTTP/1.', ' http/1.1', 'HTTP/1.1', ''),
      fc.constantFrom('\r\n', '\n', '\r', '\rx', ''),
    )
    .map((parts) => bytes(parts.join('')));
  const mutatedSeed = fc
    .tuple(fc.constantFrom(...seeds), fc.nat(), fc.integer({ min: 0, max: 255 }), fc.boolean())
    .map(([seed, at, value, mutate]) => {
      const copy = Buffer.from(seed);
      if (mutate) copy[at % copy.length] = value;
      return copy;
    });
  return fc
    .tuple(
      fc.oneof(
        mutatedSeed,
        requestLine,
        fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b)),
      ),
      fc.uint8Array({ maxLength: 16 }),
    )
    .map(([head, tail]) => Buffer.concat([head, tail]));
}

test('property: never throws, whatever the bytes and maxBytes', () => {
  const kinds = new Set(['need-more', 'http1', 'h2', 'tls', 'opaque']);
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 2048 }),
      fc.option(fc.integer({ min: -5, max: 4096 })),
      (raw, max) => {
        const result = detectProtocol(Buffer.from(raw), max ?? undefined);
        assert.ok(kinds.has(result.kind));
      },
    ),
    { numRuns: 2000 },
  );
});

test('property: once decided, a longer buffer with the same prefix gives the same answer', async () => {
  const hello = await helloPromise;
  fc.assert(
    fc.property(interestingBytes(hello), fc.option(fc.integer({ min: 1, max: 128 })), (input, max) => {
      const maxBytes = max ?? undefined;
      // Walk the prefixes (every one for short inputs, in steps for a ClientHello).
      const step = input.length > 256 ? 13 : 1;
      let decided: Detection | null = null;
      for (let cut = 0; cut <= input.length; cut += step) {
        const result = detectProtocol(input.subarray(0, cut), maxBytes);
        if (decided !== null) assert.deepEqual(result, decided, `changed at ${cut}`);
        else if (result.kind !== 'need-more') decided = result;
      }
      if (decided !== null) assert.deepEqual(detectProtocol(input, maxBytes), decided);
    }),
    { numRuns: 1000 },
  );
});
