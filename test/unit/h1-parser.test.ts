// Unit and property tests of the strict HTTP/1 head parser (src/proxy/http/h1-parser.ts): every
// rejection class by example, and by property: random bytes never throw or overrun, generated
// valid requests and responses round-trip field for field, every strict prefix of a valid head is
// 'incomplete', the verdict never depends on bytes outside [start, end), and the size limits
// answer 414 / 431 exactly when a limit is crossed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { isIPv6 } from 'node:net';
import {
  getHeader,
  isValidHost,
  parseContentLength,
  parseRequestHead,
  parseResponseHead,
  switchesToOffered,
  type H1Limits,
  type ParseResult,
} from '../../src/proxy/http/h1-parser.ts';

const LIMITS: H1Limits = { maxRequestLineBytes: 8192, maxHeaderBytes: 64 * 1024, maxHeaders: 128 };
const RUNS = { numRuns: 300 };

const bytes = (s: string) => Buffer.from(s, 'latin1');
const req = (s: string, limits = LIMITS) => parseRequestHead(bytes(s), 0, s.length, limits);
const res = (s: string, limits = LIMITS) => parseResponseHead(bytes(s), 0, s.length, limits);

function okHead(r: ParseResult) {
  assert.equal(r.kind, 'ok', r.kind === 'error' ? r.message : 'incomplete');
  return (r as Extract<ParseResult, { kind: 'ok' }>).head;
}
function status(r: ParseResult): number | string {
  return r.kind === 'error' ? r.status : r.kind;
}

// ---- generators of valid messages ------------------------------------------------------------

const TCHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const HOST_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=";
/** pchar / "/" / "?" (RFC 3986 3.3-3.4) without pct-encoded: what an origin-form target is made of. */
const TARGET_CHARS = HOST_CHARS + ':@/?';
const charRange = (lo: number, hi: number) =>
  fc.integer({ min: lo, max: hi }).map((c) => String.fromCharCode(c));
const token = (max = 12) => fc.string({ unit: fc.constantFrom(...TCHARS), minLength: 1, maxLength: max });
const ows = fc.string({ unit: fc.constantFrom(' ', '\t'), maxLength: 3 });
const FRAMING_NAMES = new Set(['content-length', 'transfer-encoding', 'connection', 'upgrade', 'host']);
const fieldName = token(16).filter((n) => !FRAMING_NAMES.has(n.toLowerCase()));
/** A field value as the parser returns it: VCHAR / obs-text, inner SP / HTAB, no outer whitespace. */
const fieldValue = fc
  .array(fc.oneof(charRange(0x21, 0x7e), charRange(0x80, 0xff), fc.constantFrom(' ', '\t')), {
    maxLength: 24,
  })
  .map((cs) => cs.join('').replace(/^[ \t]+|[ \t]+$/g, ''));
const host = fc
  .oneof(
    fc.string({ unit: fc.constantFrom(...HOST_CHARS), maxLength: 20 }),
    fc.constantFrom('[::1]', '[2001:db8::7]', '127.0.0.1'),
  )
  .chain((h) =>
    fc
      .option(fc.integer({ min: 0, max: 65535 }), { nil: undefined })
      .map((p) => (p === undefined ? h : `${h}:${p}`)),
  );
const randomCase = (s: string) =>
  fc
    .array(fc.boolean(), { minLength: s.length, maxLength: s.length })
    .map((up) => [...s].map((c, i) => (up[i] ? c.toUpperCase() : c.toLowerCase())).join(''));

interface GeneratedRequest {
  wire: string; // the head only
  method: string;
  target: string;
  minor: number;
  host: string | null;
  headers: string[]; // as the parser must return them
  bodyKind: 'none' | 'length' | 'chunked';
  contentLength: number;
  connectionClose: boolean;
  connectionTokens: string[] | null;
  headLength: number;
  requestLineBytes: number;
  fieldsStart: number;
  fieldLines: number;
}

const requestArb: fc.Arbitrary<GeneratedRequest> = fc
  .record({
    leadingEmptyLines: fc.integer({ min: 0, max: 2 }),
    method: token(10),
    target: fc.oneof(
      fc.string({ unit: fc.constantFrom(...TARGET_CHARS), maxLength: 30 }).map((p) => '/' + p),
      fc
        .string({ unit: fc.constantFrom(...HOST_CHARS), minLength: 1, maxLength: 10 })
        .map((h) => `http://${h}/x`),
    ),
    minor: fc.integer({ min: 0, max: 1 }),
    host: fc.option(host, { nil: null }),
    fields: fc.array(fc.tuple(fieldName, fieldValue, ows, ows), { maxLength: 8 }),
    framing: fc.oneof(
      fc.constant({ kind: 'none' as const }),
      fc.record({
        kind: fc.constant('length' as const),
        n: fc.nat(1e12),
        zeros: fc.nat(2),
        name: randomCase('content-length'),
      }),
      fc.record({
        kind: fc.constant('chunked' as const),
        name: randomCase('transfer-encoding'),
        value: randomCase('chunked'),
      }),
    ),
    connection: fc.option(
      fc.array(fc.oneof(fc.constantFrom('close', 'keep-alive', 'Close'), token(8)), {
        minLength: 1,
        maxLength: 3,
      }),
      { nil: null },
    ),
    hostAt: fc.nat(8),
  })
  .map((g) => {
    const minor = g.framing.kind === 'chunked' ? 1 : g.minor;
    const host = g.host ?? (minor === 1 ? 'example.test' : null);
    const line = `${g.method} ${g.target} HTTP/1.${minor}\r\n`;
    const lines: string[] = [];
    const headers: string[] = [];
    for (const [n, v, a, b] of g.fields) {
      lines.push(`${n}:${a}${v}${b}\r\n`);
      headers.push(n, v);
    }
    if (host !== null) {
      const at = Math.min(g.hostAt, g.fields.length);
      lines.splice(at, 0, `Host: ${host}\r\n`);
      headers.splice(at * 2, 0, 'Host', host);
    }
    let contentLength = 0;
    if (g.framing.kind === 'length') {
      contentLength = g.framing.n;
      lines.push(`${g.framing.name}: ${'0'.repeat(g.framing.zeros)}${g.framing.n}\r\n`);
    } else if (g.framing.kind === 'chunked') lines.push(`${g.framing.name}: ${g.framing.value}\r\n`);
    let connectionClose = minor === 0;
    let tokens: string[] | null = null;
    if (g.connection !== null) {
      lines.splice(0, 0, `Connection: ${g.connection.join(', ')}\r\n`);
      const lower = g.connection.map((t) => t.toLowerCase());
      if (lower.includes('close')) connectionClose = true;
      else if (lower.includes('keep-alive') && minor === 0) connectionClose = false;
      const other = lower.filter((t) => t !== 'close' && t !== 'keep-alive' && t !== 'upgrade');
      tokens = other.length > 0 ? other : null;
    }
    if (g.framing.kind === 'length') headers.push('Content-Length', String(contentLength));
    const wire = '\r\n'.repeat(g.leadingEmptyLines) + line + lines.join('') + '\r\n';
    return {
      wire,
      method: g.method,
      target: g.target,
      minor,
      host,
      headers,
      bodyKind: g.framing.kind,
      contentLength,
      connectionClose,
      connectionTokens: tokens,
      headLength: wire.length,
      requestLineBytes: line.length,
      fieldsStart: 2 * g.leadingEmptyLines + line.length,
      fieldLines: lines.length,
    };
  })
  .filter((g) => !(g.method === 'CONNECT' || (g.target === '*' && g.method !== 'OPTIONS')));

// ---- properties ------------------------------------------------------------------------------

test('random bytes never throw, never claim a head past the end, and stay within [start, end)', () => {
  const junk = fc.oneof(
    fc.uint8Array({ maxLength: 200 }),
    // Mostly-HTTP bytes reach deeper into the parser than uniform noise.
    fc
      .array(
        fc.oneof(
          fc.constantFrom(...'GET / HTTP/1.1\r\n\r\nHost: a:\t ,chunked'.split('')),
          charRange(0, 255),
        ),
        { maxLength: 120 },
      )
      .map((cs) => bytes(cs.join(''))),
  );
  fc.assert(
    fc.property(
      junk,
      fc.uint8Array({ maxLength: 16 }),
      fc.uint8Array({ maxLength: 16 }),
      (body, pre, post) => {
        const x = Buffer.from(body);
        for (const parse of [parseRequestHead, parseResponseHead]) {
          const r = parse(x, 0, x.length, LIMITS);
          if (r.kind === 'ok') assert.ok(r.end > 0 && r.end <= x.length);
          // The same bytes between other bytes give the same answer, shifted by the offset.
          const framed = Buffer.concat([pre, x, post]);
          const r2 = parse(framed, pre.length, pre.length + x.length, LIMITS);
          if (r.kind === 'ok' && r2.kind === 'ok') {
            assert.equal(r2.end, r.end + pre.length);
            assert.deepEqual(r2.head, r.head);
          } else assert.deepEqual(r2, r);
        }
      },
    ),
    { numRuns: 1000 },
  );
});

test('generated valid requests round-trip field for field', () => {
  fc.assert(
    fc.property(requestArb, fc.uint8Array({ maxLength: 20 }), (g, body) => {
      const buf = Buffer.concat([bytes(g.wire), body]);
      const r = parseRequestHead(buf, 0, buf.length, LIMITS);
      const head = okHead(r);
      assert.equal((r as { end: number }).end, g.headLength);
      assert.equal(head.method, g.method);
      assert.equal(head.target, g.target);
      assert.equal(head.versionMinor, g.minor);
      assert.equal(head.host, g.host);
      assert.deepEqual(head.headers, g.headers);
      assert.equal(head.bodyKind, g.bodyKind);
      assert.equal(head.contentLength, g.contentLength);
      assert.equal(head.connectionClose, g.connectionClose);
      assert.deepEqual(head.connectionTokens, g.connectionTokens);
      if (g.host !== null) assert.equal(getHeader(head.headers, 'host'), g.host);
    }),
    RUNS,
  );
});

test('every strict prefix of a valid head is incomplete', () => {
  fc.assert(
    fc.property(requestArb, (g) => {
      const buf = bytes(g.wire);
      for (let k = 0; k < buf.length; k++)
        assert.equal(status(parseRequestHead(buf, 0, k, LIMITS)), 'incomplete', `prefix ${k}`);
    }),
    { numRuns: 150 },
  );
});

test('limits: 414 exactly past maxRequestLineBytes, 431 past maxHeaderBytes or maxHeaders; prefixes agree', () => {
  const limitsArb = fc.record({
    maxRequestLineBytes: fc.integer({ min: 10, max: 80 }),
    maxHeaderBytes: fc.integer({ min: 2, max: 200 }),
    maxHeaders: fc.integer({ min: 1, max: 8 }),
  });
  fc.assert(
    fc.property(requestArb, limitsArb, (g, limits) => {
      const headerBytes = g.headLength - g.fieldsStart;
      const expected =
        g.requestLineBytes > limits.maxRequestLineBytes
          ? 414
          : headerBytes > limits.maxHeaderBytes || g.fieldLines > limits.maxHeaders
            ? 431
            : 'ok';
      assert.equal(status(req(g.wire, limits)), expected);
      const buf = bytes(g.wire);
      for (let k = 0; k < buf.length; k++) {
        const s = status(parseRequestHead(buf, 0, k, limits));
        if (s !== 'incomplete') assert.equal(s, expected, `prefix ${k}`);
      }
    }),
    { numRuns: 200 },
  );
});

test('generated valid responses round-trip; their prefixes are incomplete', () => {
  const responseArb = fc.record({
    minor: fc.integer({ min: 0, max: 1 }),
    status: fc.integer({ min: 100, max: 999 }),
    reason: fieldValue,
    fields: fc.array(fc.tuple(fieldName, fieldValue), { maxLength: 6 }),
    framing: fc.oneof(fc.constant('close' as const), fc.nat(1e9), fc.constant('chunked' as const)),
    repeatLength: fc.boolean(),
  });
  fc.assert(
    fc.property(responseArb, (g) => {
      const minor = g.framing === 'chunked' ? 1 : g.minor;
      let wire = `HTTP/1.${minor} ${g.status} ${g.reason}\r\n`;
      const headers = g.fields.flat();
      for (const [n, v] of g.fields) wire += `${n}: ${v}\r\n`;
      if (g.framing === 'chunked') wire += 'Transfer-Encoding: chunked\r\n';
      else if (typeof g.framing === 'number') {
        // Identical repeated lengths are merged in responses (RFC 9110 8.6).
        wire += `Content-Length: ${g.framing}\r\n`.repeat(g.repeatLength ? 2 : 1);
        headers.push('Content-Length', String(g.framing));
      }
      wire += '\r\n';
      const head = okHead(res(wire));
      assert.equal(head.status, g.status);
      assert.equal(head.reason, g.reason);
      assert.equal(head.versionMinor, minor);
      assert.deepEqual(head.headers, headers);
      assert.equal(head.bodyKind, typeof g.framing === 'number' ? 'length' : g.framing);
      const buf = bytes(wire);
      for (let k = 0; k < buf.length; k++)
        assert.equal(status(parseResponseHead(buf, 0, k, LIMITS)), 'incomplete');
    }),
    { numRuns: 150 },
  );
});

// ---- examples --------------------------------------------------------------------------------

const H = 'Host: a\r\n';
const REJECTED_REQUESTS: [string, string, number][] = [
  ['bare LF ending the request line', 'GET / HTTP/1.1\n' + H + '\r\n', 400],
  ['bare LF ending a field', 'GET / HTTP/1.1\r\nHost: a\n\r\n', 400],
  ['bare CR inside a field', 'GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n', 400],
  ['bare CR in the request line', 'GET /\r HTTP/1.1\r\n' + H + '\r\n', 400],
  ['obs-fold', 'GET / HTTP/1.1\r\n' + H + 'X: a\r\n b\r\n\r\n', 400],
  ['obs-fold with a tab', 'GET / HTTP/1.1\r\n' + H + 'X: a\r\n\tb\r\n\r\n', 400],
  ['space before the colon', 'GET / HTTP/1.1\r\n' + H + 'X : a\r\n\r\n', 400],
  ['NUL in a value', 'GET / HTTP/1.1\r\n' + H + 'X: a\0b\r\n\r\n', 400],
  ['DEL in a value', 'GET / HTTP/1.1\r\n' + H + 'X: a\x7fb\r\n\r\n', 400],
  ['vertical tab in a value', 'GET / HTTP/1.1\r\n' + H + 'X: a\x0bb\r\n\r\n', 400],
  ['a slash in a name', 'GET / HTTP/1.1\r\n' + H + 'X/Y: a\r\n\r\n', 400],
  ['an empty name', 'GET / HTTP/1.1\r\n' + H + ': a\r\n\r\n', 400],
  ['a line without colon', 'GET / HTTP/1.1\r\n' + H + 'X\r\n\r\n', 400],
  ['missing Host in HTTP/1.1', 'GET / HTTP/1.1\r\n\r\n', 400],
  ['two Host fields', 'GET / HTTP/1.1\r\n' + H + H + '\r\n', 400],
  ['an invalid Host', 'GET / HTTP/1.1\r\nHost: a b\r\n\r\n', 400],
  ['a Host with userinfo', 'GET / HTTP/1.1\r\nHost: u@a\r\n\r\n', 400],
  ['a Host with a long port', 'GET / HTTP/1.1\r\nHost: a:123456\r\n\r\n', 400],
  ['HTTP/2.0', 'GET / HTTP/2.0\r\n' + H + '\r\n', 505],
  ['HTTP/1.2', 'GET / HTTP/1.2\r\n' + H + '\r\n', 505],
  ['HTTP/0.9 request line', 'GET /\r\n\r\n', 400],
  ['HTTP/1.10', 'GET / HTTP/1.10\r\n' + H + '\r\n', 400],
  ['lower-case version', 'GET / http/1.1\r\n' + H + '\r\n', 400],
  ['method with a bad char', 'G@T / HTTP/1.1\r\n' + H + '\r\n', 400],
  ['two spaces after the method', 'GET  / HTTP/1.1\r\n' + H + '\r\n', 400],
  ['space in the target', 'GET /a b HTTP/1.1\r\n' + H + '\r\n', 400],
  ['tab in the target', 'GET /a\tb HTTP/1.1\r\n' + H + '\r\n', 400],
  ['obs-text in the target', 'GET /\xe9 HTTP/1.1\r\n' + H + '\r\n', 400],
  ['asterisk-form for GET', 'GET * HTTP/1.1\r\n' + H + '\r\n', 400],
  ['CONNECT without port', 'CONNECT a HTTP/1.1\r\n' + H + '\r\n', 400],
  ['a relative target', 'GET a/b HTTP/1.1\r\n' + H + '\r\n', 400],
  ['CL and TE', 'POST / HTTP/1.1\r\n' + H + 'Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n', 400],
  ['TE and CL', 'POST / HTTP/1.1\r\n' + H + 'Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n', 400],
  ['differing CLs', 'POST / HTTP/1.1\r\n' + H + 'Content-Length: 3\r\nContent-Length: 4\r\n\r\n', 400],
  [
    'identical CLs in a request',
    'POST / HTTP/1.1\r\n' + H + 'Content-Length: 3\r\nContent-Length: 3\r\n\r\n',
    400,
  ],
  ['a CL list', 'POST / HTTP/1.1\r\n' + H + 'Content-Length: 3, 3\r\n\r\n', 400],
  ['CL with +', 'POST / HTTP/1.1\r\n' + H + 'Content-Length: +3\r\n\r\n', 400],
  ['CL with -', 'POST / HTTP/1.1\r\n' + H + 'Content-Length: -3\r\n\r\n', 400],
  ['CL in hex', 'POST / HTTP/1.1\r\n' + H + 'Content-Length: 0x3\r\n\r\n', 400],
  ['CL with an inner space', 'POST / HTTP/1.1\r\n' + H + 'Content-Length: 1 0\r\n\r\n', 400],
  ['CL with NBSP', 'POST / HTTP/1.1\r\n' + H + 'Content-Length: 3\xa0\r\n\r\n', 400],
  ['empty CL', 'POST / HTTP/1.1\r\n' + H + 'Content-Length:\r\n\r\n', 400],
  ['CL too long', 'POST / HTTP/1.1\r\n' + H + 'Content-Length: 1234567890123456\r\n\r\n', 400],
  ['TE chunked, chunked', 'POST / HTTP/1.1\r\n' + H + 'Transfer-Encoding: chunked, chunked\r\n\r\n', 501],
  ['TE xchunked', 'POST / HTTP/1.1\r\n' + H + 'Transfer-Encoding: xchunked\r\n\r\n', 501],
  ['TE chunked;foo', 'POST / HTTP/1.1\r\n' + H + 'Transfer-Encoding: chunked;foo\r\n\r\n', 501],
  ['TE gzip, chunked', 'POST / HTTP/1.1\r\n' + H + 'Transfer-Encoding: gzip, chunked\r\n\r\n', 501],
  ['TE chunked with NBSP', 'POST / HTTP/1.1\r\n' + H + 'Transfer-Encoding: chunked\xa0\r\n\r\n', 501],
  [
    'TE twice',
    'POST / HTTP/1.1\r\n' + H + 'Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n',
    400,
  ],
  ['empty TE', 'POST / HTTP/1.1\r\n' + H + 'Transfer-Encoding: \r\n\r\n', 400],
  ['TE folded', 'POST / HTTP/1.1\r\n' + H + 'Transfer-Encoding:\r\n chunked\r\n\r\n', 400],
  ['TE in HTTP/1.0', 'POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n', 400],
  ['three leading empty lines', '\r\n\r\n\r\nGET / HTTP/1.1\r\n' + H + '\r\n', 400],
  ['a leading bare LF', '\nGET / HTTP/1.1\r\n' + H + '\r\n', 400],
];

test('rejects every ambiguous or malformed request with the right status', () => {
  for (const [name, wire, expected] of REJECTED_REQUESTS) assert.equal(status(req(wire)), expected, name);
});

test('accepts what the RFC allows: leading empty lines, OWS, extension methods, forms', () => {
  const cases = [
    '\r\nGET / HTTP/1.1\r\n' + H + '\r\n',
    '\r\n\r\nGET / HTTP/1.1\r\n' + H + '\r\n',
    'PURGE /x?y=1 HTTP/1.1\r\n' + H + 'X:\t v \t\r\n\r\n',
    'OPTIONS * HTTP/1.1\r\n' + H + '\r\n',
    'CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n',
    'CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n',
    'GET http://a.example/p HTTP/1.1\r\n' + H + '\r\n',
    'GET / HTTP/1.0\r\n\r\n',
    'GET / HTTP/1.1\r\nHost:\r\n\r\n',
    'POST / HTTP/1.1\r\n' + H + 'Transfer-Encoding: , Chunked\r\n\r\n',
    'POST / HTTP/1.1\r\n' + H + 'Content-Length:  007 \r\n\r\n',
    'GET / HTTP/1.1\r\n' + H + 'X: caf\xe9\r\n\r\n',
  ];
  for (const wire of cases) okHead(req(wire));
  const h = okHead(
    req('POST / HTTP/1.1\r\n' + H + 'Content-Length:  007 \r\nConnection: close, X-Hop\r\n\r\n'),
  );
  assert.deepEqual(
    [h.bodyKind, h.contentLength, h.connectionClose, h.connectionTokens],
    ['length', 7, true, ['x-hop']],
  );
  assert.deepEqual(h.headers, ['Host', 'a', 'Content-Length', '7']);
  const up = okHead(
    req(
      'GET / HTTP/1.1\r\n' + H + 'Connection: Upgrade\r\nUpgrade: websocket\r\nExpect: 100-Continue\r\n\r\n',
    ),
  );
  assert.deepEqual([up.upgrade, up.expectContinue], ['websocket', true]);
  assert.equal(okHead(req('GET / HTTP/1.1\r\n' + H + 'Upgrade: websocket\r\n\r\n')).upgrade, null);
  // HTTP/1.0: keep-alive keeps the connection unless close is also named, in any order.
  assert.equal(okHead(req('GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n')).connectionClose, false);
  assert.equal(okHead(req('GET / HTTP/1.0\r\nConnection: close, keep-alive\r\n\r\n')).connectionClose, true);
});

test('answers at once when the bytes so far can never become a valid head', () => {
  assert.equal(status(req('GET / HTTP/2.0\r\n')), 505); // request line complete, headers not yet
  assert.equal(status(req('GET /a b HTTP/1.1\r\nHost')), 400);
  assert.equal(status(req('GET / HTTP/1.1\r\nHost: a\nX')), 400);
  assert.equal(status(req('GET / HTT\rP')), 400);
  assert.equal(status(req('GET / HTTP/1.1\r\nHost: a\r')), 'incomplete');
  const small = { maxRequestLineBytes: 64, maxHeaderBytes: 256, maxHeaders: 4 };
  assert.equal(status(req('GET /' + 'a'.repeat(100), small)), 414);
  assert.equal(status(req('GET / HTTP/1.1\r\nX: ' + 'a'.repeat(300), small)), 431);
  const five = 'GET / HTTP/1.1\r\n' + H + 'A: 1\r\nB: 2\r\nContent-Length: 0\r\nConnection: x\r\n\r\n';
  assert.equal(status(req(five, small)), 431); // framing lines count towards maxHeaders too
});

test('responses: status line, bare CR, framing', () => {
  const h = okHead(res('HTTP/1.1 204 No Content\r\nX: y\r\n\r\n'));
  assert.deepEqual([h.status, h.reason, h.headers], [204, 'No Content', ['X', 'y']]);
  assert.equal(okHead(res('HTTP/1.1 200\r\n\r\n')).reason, '');
  assert.equal(okHead(res('HTTP/1.0 200 OK\r\n\r\n')).connectionClose, true);
  assert.equal(okHead(res('HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n')).contentLength, 5);
  const bad = [
    'HTTP/1.1 200 OK\rXContent-Length: 5\r\n\r\n', // a bare CR must not swallow the next byte
    'HTTP/1.1 200 OK\nContent-Length: 5\r\n\r\n',
    'HTTP/2.0 200 OK\r\n\r\n',
    'HTTP/1.1 99 OK\r\n\r\n',
    'HTTP/1.1 2000 OK\r\n\r\n',
    'HTTP/1.1 200 O\x01K\r\n\r\n',
    'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n',
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n',
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n',
    'HTTP/1.1 200 OK\r\nX : y\r\n\r\n',
  ];
  for (const wire of bad) assert.equal(status(res(wire)), 502, JSON.stringify(wire));
});

test('parseContentLength: digits only, OWS, identical lists', () => {
  assert.equal(parseContentLength('0'), 0);
  assert.equal(parseContentLength(' 42\t'), 42);
  assert.equal(parseContentLength('5, 5,5'), 5);
  for (const bad of [
    '',
    ' ',
    '+1',
    '-1',
    '1.0',
    '0x1',
    '1e3',
    '5, 6',
    '5,',
    '1 2',
    '5\xa0',
    '\xa05',
    '1234567890123456',
  ])
    assert.equal(parseContentLength(bad), -1, JSON.stringify(bad));
  fc.assert(
    fc.property(fc.nat(999_999_999_999_999), ows, ows, (n, a, b) => parseContentLength(a + n + b) === n),
    RUNS,
  );
  fc.assert(
    fc.property(fc.string({ maxLength: 12 }), (s) => {
      const r = parseContentLength(s);
      assert.ok(r === -1 || (Number.isSafeInteger(r) && r >= 0 && /^[\d \t,]+$/.test(s)));
    }),
    { numRuns: 1000 },
  );
});

test('isValidHost agrees with the RFC 9112 Host grammar (regex oracle, net.isIPv6 for literals)', () => {
  const oracle = (s: string) => {
    const m = /^(?:\[([0-9A-Fa-f:.]+)\]|(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*)(?::\d{0,5})?$/.exec(
      s,
    );
    return m !== null && (m[1] === undefined || isIPv6(m[1]));
  };
  for (const good of [
    '',
    'a',
    'a.b:80',
    'a:',
    '127.0.0.1:8080',
    '[::1]',
    '[::1]:443',
    '[::1]:',
    'x_y~z',
    'a%41',
  ])
    assert.equal(isValidHost(good), true, good);
  for (const bad of [
    'a b',
    'u@a',
    'a:123456',
    '[::1',
    '[]',
    '[::1]x',
    'a:8o',
    'a/b',
    'caf\xe9',
    'a\u0100',
    'a%4',
    'a%zz',
    '[1]',
    '[v1.x]',
  ])
    assert.equal(isValidHost(bad), false, bad);
  const hostish = fc.string({ unit: fc.constantFrom(...'ab09.-:[]@% _~\xe9'.split('')), maxLength: 12 });
  const ipv6ish = fc
    .string({ unit: fc.constantFrom(...'0123456789abcdefABCDEF:.'.split('')), maxLength: 40 })
    .map((s) => `[${s}]`);
  fc.assert(
    fc.property(
      fc.oneof(hostish, ipv6ish, fc.string({ maxLength: 12 })),
      (s) => isValidHost(s) === oracle(s),
    ),
    { numRuns: 4000 },
  );
});

test('getHeader looks names up case-insensitively, first match wins', () => {
  const h = ['Host', 'a', 'X-Thing', '1', 'x-thing', '2'];
  assert.equal(getHeader(h, 'x-thing'), '1');
  assert.equal(getHeader(h, 'host'), 'a');
  assert.equal(getHeader(h, 'x-thin'), undefined);
  assert.equal(getHeader([], 'host'), undefined);
});

test('a 101 may switch only to a protocol the request offered (RFC 9110 7.8)', () => {
  assert.equal(switchesToOffered('websocket', 'websocket'), true);
  assert.equal(switchesToOffered('WebSocket', 'websocket'), true, 'names compare case-insensitively');
  assert.equal(switchesToOffered('foo/2, websocket', ' websocket '), true);
  assert.equal(switchesToOffered('foo', 'foo/2'), true, 'an offer without a version admits any');
  assert.equal(switchesToOffered('foo/1', 'foo/2'), false, 'another version than offered');
  assert.equal(switchesToOffered('websocket', 'h2c'), false, 'the unasked h2c');
  assert.equal(switchesToOffered('websocket', 'websocket, h2c'), false, 'one unoffered protocol is enough');
  assert.equal(switchesToOffered('websocket', null), false, 'a 101 that names no protocol');
  assert.equal(switchesToOffered('websocket', ','), false, 'an empty list');
  assert.equal(switchesToOffered('websocket', 'web socket'), false, 'not a token');
});

const upgradeToken = fc.stringMatching(/^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,8}$/);
const upgradeProtocol = fc.tuple(upgradeToken, fc.option(upgradeToken, { nil: undefined }));
const spell = ([name, version]: [string, string | undefined]) =>
  version === undefined ? name : `${name}/${version}`;

test('property: a 101 choosing offered protocols passes; one it was not offered fails', () => {
  fc.assert(
    fc.property(
      fc.array(upgradeProtocol, { minLength: 1, maxLength: 5 }),
      fc.array(fc.nat(), { minLength: 1, maxLength: 3 }),
      upgradeProtocol,
      fc.boolean(),
      (offers, picks, stranger, flipCase) => {
        const offered = offers.map(spell).join(', ');
        const chosen = picks.map((i) => spell(offers[i % offers.length]!)).join(',');
        assert.equal(
          switchesToOffered(offered, flipCase ? chosen.toUpperCase() : chosen),
          true,
          `${offered} / ${chosen}`,
        );
        const lower = offers.map(([n, v]) => [n.toLowerCase(), v?.toLowerCase()]);
        const [sn, sv] = [stranger[0].toLowerCase(), stranger[1]?.toLowerCase()];
        const offeredToo = lower.some(([n, v]) => n === sn && (v === undefined || v === sv));
        assert.equal(
          switchesToOffered(offered, `${chosen}, ${spell(stranger)}`),
          offeredToo,
          `${offered} / +${spell(stranger)}`,
        );
      },
    ),
  );
});
