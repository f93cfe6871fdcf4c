// Regression tests for the mismatches found when the HTTP/1 parser, the chunked decoder and the
// head serializer were checked production by production against RFC 9110 / RFC 9112 (issue 9,
// item 1.5): one case per mismatch, with the production it breaks or follows. Each case failed
// before its fix.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseRequestHead, parseResponseHead, type H1Limits } from '../../src/proxy/http/h1-parser.ts';
import { ChunkedDecoder } from '../../src/proxy/http/chunked.ts';
import { serializeRequestHead, serializeResponseHead } from '../../src/proxy/http/h1-serialize.ts';

const LIMITS: H1Limits = { maxRequestLineBytes: 8192, maxHeaderBytes: 64 * 1024, maxHeaders: 128 };
const H = 'Host: a.test\r\n';

function verdict(wire: string): number | 'ok' | 'incomplete' {
  const b = Buffer.from(wire, 'latin1');
  const r = parseRequestHead(b, 0, b.length, LIMITS);
  return r.kind === 'error' ? r.status : r.kind;
}

/** [production, request head, expected verdict after the fix] */
const REQUEST_CASES: [string, string, number | 'ok'][] = [
  // request-target: origin-form = absolute-path [ "?" query ] (RFC 9112 3.2.1): no fragment.
  ['origin-form: no "#" (fragment)', `GET /a#b HTTP/1.1\r\n${H}\r\n`, 400],
  ['origin-form: no "#" in the query', `GET /a?b#c HTTP/1.1\r\n${H}\r\n`, 400],
  // pct-encoded = "%" HEXDIG HEXDIG (RFC 3986 2.1)
  ['pct-encoded: "%" needs two HEXDIG', `GET /a%zz HTTP/1.1\r\n${H}\r\n`, 400],
  ['pct-encoded: "%" at the end', `GET /a% HTTP/1.1\r\n${H}\r\n`, 400],
  ['pct-encoded: one HEXDIG', `GET /a%4 HTTP/1.1\r\n${H}\r\n`, 400],
  // pchar = unreserved / pct-encoded / sub-delims / ":" / "@" (RFC 3986 3.3)
  ['pchar: no DQUOTE', `GET /a"b HTTP/1.1\r\n${H}\r\n`, 400],
  ['pchar: no "<"', `GET /a<b HTTP/1.1\r\n${H}\r\n`, 400],
  ['pchar: no ">"', `GET /a>b HTTP/1.1\r\n${H}\r\n`, 400],
  ['pchar: no "\\"', `GET /a\\b HTTP/1.1\r\n${H}\r\n`, 400],
  ['pchar: no "^"', `GET /a^b HTTP/1.1\r\n${H}\r\n`, 400],
  ['pchar: no "`"', `GET /a\`b HTTP/1.1\r\n${H}\r\n`, 400],
  ['pchar: no "{"', `GET /a{b HTTP/1.1\r\n${H}\r\n`, 400],
  ['pchar: no "|"', `GET /a|b HTTP/1.1\r\n${H}\r\n`, 400],
  // ...but the query takes what browsers send raw there (not checked by policy).
  ["query: browsers' raw bytes", `GET /?q={a}|^[1]\`\\%zz HTTP/1.1\r\n${H}\r\n`, 'ok'],
  ['pchar: no "}"', `GET /a}b HTTP/1.1\r\n${H}\r\n`, 400],
  ['pchar: no "[" or "]" in a path', `GET /a[1] HTTP/1.1\r\n${H}\r\n`, 400],
  // absolute-form = absolute-URI (RFC 9112 3.2.2), for http: an authority with a host.
  ['absolute-form: no fragment', `GET http://a.test#/x HTTP/1.1\r\n${H}\r\n`, 400],
  ['absolute-form: no userinfo (RFC 9110 4.2.4)', `GET http://u@a.test/ HTTP/1.1\r\n${H}\r\n`, 400],
  ['absolute-form: a host (RFC 9110 4.2.1)', `GET http:///x HTTP/1.1\r\n${H}\r\n`, 400],
  ['absolute-form: an empty host before a port', `GET http://:80/x HTTP/1.1\r\n${H}\r\n`, 400],
  ['absolute-form: IP-literal is IPv6', `GET http://[zz]/ HTTP/1.1\r\n${H}\r\n`, 400],
  ['absolute-form: IPv6 of eight groups', `GET http://[1:2]/ HTTP/1.1\r\n${H}\r\n`, 400],
  ['absolute-form: port = *DIGIT', `GET http://a.test:8o/ HTTP/1.1\r\n${H}\r\n`, 400],
  ['absolute-form: no "[" in the path', `GET http://a.test/[x] HTTP/1.1\r\n${H}\r\n`, 400],
  // authority-form = uri-host ":" port, CONNECT only (RFC 9112 3.2.3, RFC 9110 9.3.6).
  ['authority-form: uri-host', 'CONNECT ::80 HTTP/1.1\r\nHost: a\r\n\r\n', 400],
  ['authority-form: no DQUOTE in the host', 'CONNECT a"b:80 HTTP/1.1\r\nHost: a\r\n\r\n', 400],
  ['authority-form: a closed IP-literal', 'CONNECT [::1:80 HTTP/1.1\r\nHost: a\r\n\r\n', 400],
  ['authority-form: an IPv6 address', 'CONNECT [1::2::3]:80 HTTP/1.1\r\nHost: a\r\n\r\n', 400],
  ['authority-form: a port (RFC 9110 9.3.6)', 'CONNECT a.test: HTTP/1.1\r\nHost: a\r\n\r\n', 400],
  // Host = uri-host [ ":" port ] (RFC 9112 3.2): reg-name's pct-encoded, IP-literal.
  ['Host: pct-encoded', 'GET / HTTP/1.1\r\nHost: a%zz\r\n\r\n', 400],
  ['Host: IP-literal of one group', 'GET / HTTP/1.1\r\nHost: [1]\r\n\r\n', 400],
  ['Host: IP-literal ":"', 'GET / HTTP/1.1\r\nHost: [:]:80\r\n\r\n', 400],
  ['Host: IPv6 with two "::"', 'GET / HTTP/1.1\r\nHost: [1::2::3]\r\n\r\n', 400],
  ['Host: IPv6 with an embedded IPv4 out of range', 'GET / HTTP/1.1\r\nHost: [::1.2.3.256]\r\n\r\n', 400],
  // OWS = *( SP / HTAB ) around a field value (RFC 9112 5.1, RFC 9110 5.6.3).
  ['OWS: HTAB before Transfer-Encoding', `POST / HTTP/1.1\r\n${H}Transfer-Encoding:\tchunked\r\n\r\n`, 'ok'],
  ['OWS: HTAB after Transfer-Encoding', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\t\r\n\r\n`, 'ok'],
  ['OWS: HTAB inside a coding list', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: ,\tchunked\r\n\r\n`, 'ok'],
  // Strict choices kept (each with its section in the parser), so that the fixes above stay narrow.
  [
    'still valid: pct-encoded, sub-delims, ":" "@" "/" "?"',
    `GET /%41b;c=d@e:f/?g?h/i!$&'()*+,= HTTP/1.1\r\n${H}\r\n`,
    'ok',
  ],
  [
    'still valid: absolute-form with IPv6 and a port',
    `GET http://[::ffff:1.2.3.4]:8080/x?y HTTP/1.1\r\n${H}\r\n`,
    'ok',
  ],
  ['still valid: absolute-form without a path', `GET http://a.test HTTP/1.1\r\n${H}\r\n`, 'ok'],
  [
    'still valid: CONNECT to IPv6',
    'CONNECT [2001:db8::7]:443 HTTP/1.1\r\nHost: [2001:db8::7]:443\r\n\r\n',
    'ok',
  ],
  [
    'still valid: Host IPv6 with an embedded IPv4',
    'GET / HTTP/1.1\r\nHost: [::ffff:10.0.0.1]:80\r\n\r\n',
    'ok',
  ],
  [
    'strict: a second Transfer-Encoding line (RFC 9110 5.3)',
    `POST / HTTP/1.1\r\n${H}Transfer-Encoding: \r\nTransfer-Encoding: chunked\r\n\r\n`,
    400,
  ],
];

test('request heads: every production mismatch found, before → after', () => {
  const wrong: string[] = [];
  for (const [production, wire, expected] of REQUEST_CASES) {
    const got = verdict(wire);
    if (got !== expected) wrong.push(`${production}: ${JSON.stringify(wire)} gave ${got}, want ${expected}`);
  }
  assert.deepEqual(wrong, []);
});

test('a request line the grammar forbids is refused as soon as its line is in', () => {
  // Not only once the head is complete: the client hears 400 without sending its fields.
  assert.equal(verdict('GET http://u@a.test/ HTTP/1.1\r\nHos'), 400);
  assert.equal(verdict('GET /a#b HTTP/1.1\r\nHos'), 400);
});

test('response heads: HTAB is OWS in Transfer-Encoding', () => {
  for (const te of ['\tchunked', 'chunked\t', ' \tchunked \t']) {
    const b = Buffer.from(`HTTP/1.1 200 OK\r\nTransfer-Encoding:${te}\r\n\r\n`, 'latin1');
    const r = parseResponseHead(b, 0, b.length, LIMITS);
    assert.equal(r.kind, 'ok', JSON.stringify(te));
    assert.equal(r.kind === 'ok' && r.head.bodyKind, 'chunked');
  }
});

test('Connection naming a framing field never strips the framing the proxy forwards (RFC 9110 7.6.1)', () => {
  // Before: "Connection: content-length" made the serializer drop the canonical Content-Length as
  // hop-by-hop, so the upstream read the body as the next request (request smuggling).
  const wire =
    'POST / HTTP/1.1\r\nHost: a\r\nConnection: content-length, Host, x-hop\r\nX-Hop: 1\r\nContent-Length: 5\r\n\r\n';
  const b = Buffer.from(wire, 'latin1');
  const r = parseRequestHead(b, 0, b.length, LIMITS);
  assert.equal(r.kind, 'ok');
  if (r.kind !== 'ok') return;
  const out = serializeRequestHead(r.head, { method: 'POST', path: '/', host: null }, false);
  assert.equal(out, 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n');
  const rb = Buffer.from(
    'HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 2\r\n\r\n',
    'latin1',
  );
  const res = parseResponseHead(rb, 0, rb.length, LIMITS);
  assert.equal(res.kind, 'ok');
  if (res.kind !== 'ok') return;
  assert.equal(
    serializeResponseHead(res.head, 'as-is', null),
    'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n',
  );
});

function decode(body: string, limits = LIMITS): { error: string | null; data: string; done: boolean } {
  const d = new ChunkedDecoder(limits);
  let data = '';
  d.write(Buffer.from(body, 'latin1'), { data: (c) => (data += c.toString('latin1')), end: () => {} });
  return { error: d.error, data, done: d.done };
}

test('chunked: BWS around ";" and "=" in chunk-ext is parsed and removed (RFC 9112 7.1.1, RFC 9110 5.6.3)', () => {
  for (const ext of [' ;a=b', '\t;a', '; a=b', ';a =b', ';a= b', ';a = "q"', ';a=b ;c', ';a \t; b'])
    assert.deepEqual(
      decode(`5${ext}\r\nhello\r\n0${ext}\r\n\r\n`),
      { error: null, data: 'hello', done: true },
      ext,
    );
  // BWS is only "bad whitespace" before ";" or "=", never before the line's CRLF.
  for (const ext of [' ', ';a ', ';a=b ', ';a="q" ', '; ', ';a= '])
    assert.notEqual(decode(`5${ext}\r\nhello\r\n0\r\n\r\n`).error, null, JSON.stringify(ext));
});

test('chunked: chunk-size = 1*HEXDIG, leading zeros do not count towards the size cap', () => {
  assert.deepEqual(decode('00000000000000005\r\nhello\r\n0000000000000000\r\n\r\n'), {
    error: null,
    data: 'hello',
    done: true,
  });
  assert.equal(decode('1000000000000\r\n').error, 'chunk size too large'); // 13 significant digits
});

test('chunked: trailer fields count towards maxHeaders, as header fields do', () => {
  const limits = { ...LIMITS, maxHeaders: 3 };
  assert.equal(decode('0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n', limits).error, null);
  assert.equal(decode('0\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n', limits).error, 'too many trailer fields');
});
