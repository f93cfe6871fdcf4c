// h1RequestHead (src/proxy/mesh/h1-fields.ts): an HTTP/2 stream's fields written as an HTTP/1.1
// request head for the app. What it writes must be exactly what the HTTP/1 parser accepts, or the
// app would read another request than the one policy checked.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { h1RequestHead } from '../../src/proxy/mesh/h1-fields.ts';
import { parseRequestHead } from '../../src/proxy/http/h1-parser.ts';

const LIMITS = { maxRequestLineBytes: 8192, maxHeaderBytes: 65536, maxHeaders: 128 };
const fields = (method: string, path: string, authority: string) => [
  ':method',
  method,
  ':path',
  path,
  ':authority',
  authority,
  'accept',
  '*/*',
];

// Regression (issue 9, found by the parser review): ":path: /public /admin" was written as
// "GET /public /admin HTTP/1.1": policy checked /public, a whitespace-splitting app served /admin.
test('a method, :path or :authority the HTTP/1 grammar refuses is never written', () => {
  for (const [m, p, a] of [
    ['GET', '/public /admin', 'app'],
    ['GET', '/a#b', 'app'],
    ['GET', '/a%zz', 'app'],
    ['GE T', '/', 'app'],
    ['GET', '/', 'a b'],
    ['GET', '/', 'a/b'],
    ['GET', 'http://elsewhere/', 'app'],
  ]) {
    assert.equal(h1RequestHead(fields(m!, p!, a!), true), null, `${m} ${p} ${a}`);
  }
  const ok = h1RequestHead(fields('GET', '/x?q=1', 'app:8080'), true);
  assert.ok(ok !== null && ok.text.startsWith('GET /x?q=1 HTTP/1.1\r\nHost: app:8080\r\n'));
});

test('property: what h1RequestHead writes parses back to the same method, target and host', () => {
  const anyString = fc.string({
    unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)),
    maxLength: 12,
  });
  fc.assert(
    fc.property(
      fc.oneof(fc.constantFrom('GET', 'POST', 'PUT'), anyString),
      fc.oneof(
        fc.constantFrom('/', '/a/b?c=d', '/x%20y'),
        anyString.map((s) => '/' + s),
      ),
      fc.oneof(fc.constantFrom('app', 'app:8080', '[::1]:9'), anyString),
      (method, path, authority) => {
        const head = h1RequestHead(fields(method, path, authority), true);
        if (head === null) return;
        const wire = Buffer.from(head.text, 'latin1');
        const r = parseRequestHead(wire, 0, wire.length, LIMITS);
        assert.equal(r.kind, 'ok', head.text);
        if (r.kind !== 'ok') return;
        assert.equal(r.head.method, method);
        assert.equal(r.head.target, path);
        assert.equal(r.head.host, authority);
        assert.equal(r.end, wire.length);
      },
    ),
  );
});
