// X-Forwarded-For as the inbound paths write it (src/proxy/inbound/forwarded-for.ts and the HTTP/1
// serializer): by property, over random field lists with the field in random spellings, the
// HTTP/2 field list, the node:http2 header object and the HTTP/1 head all end with exactly one
// field an app reads as X-Forwarded-For, holding what the client sent, in order, then the address;
// every other field is kept as it was.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  forwardedAddress,
  forwardFieldsFor,
  forwardHeadersFor,
  isForwardedForField,
} from '../../src/proxy/inbound/forwarded-for.ts';
import { serializeRequestHead } from '../../src/proxy/http/h1-serialize.ts';
import { parseRequestHead } from '../../src/proxy/http/h1-parser.ts';

const LIMITS = { maxRequestLineBytes: 8192, maxHeaderBytes: 64 * 1024, maxHeaders: 128 };

/** X-Forwarded-For in a random spelling an app reads the same: case, '_' or '-' at each separator. */
const forwardedSpelling = fc
  .tuple(fc.array(fc.boolean(), { minLength: 15, maxLength: 15 }), fc.boolean(), fc.boolean())
  .map(([upper, u1, u2]) =>
    [...'x-forwarded-for']
      .map((c, i) => (c === '-' ? ((i === 1 ? u1 : u2) ? '_' : '-') : upper[i] ? c.toUpperCase() : c))
      .join(''),
  );
const otherName = fc
  .stringMatching(/^[a-z][a-z0-9-]{0,14}$/)
  .filter((n) => !isForwardedForField(n) && n !== 'host');
const value = fc.stringMatching(/^[0-9a-f.:]{1,15}$/);
const field = fc.oneof(fc.tuple(forwardedSpelling, value), fc.tuple(otherName, value));
const address = fc.oneof(fc.ipV4(), fc.ipV6());

function expected(fields: [string, string][], addr: string) {
  const sent = fields.filter(([n]) => isForwardedForField(n)).map(([, v]) => v);
  return {
    others: fields.filter(([n]) => !isForwardedForField(n)),
    list: [...sent, addr].join(', '),
  };
}

test('property: the HTTP/2 field list ends with one X-Forwarded-For: what was sent, then the address', () => {
  fc.assert(
    fc.property(fc.array(field, { maxLength: 8 }), address, (fields, addr) => {
      const flat = fields.flat();
      forwardFieldsFor(flat, addr);
      const { others, list } = expected(fields, addr);
      assert.deepEqual(flat, [...others.flat(), 'x-forwarded-for', list]);
    }),
  );
});

test('property: the node:http2 header object gets the same list', () => {
  fc.assert(
    fc.property(fc.uniqueArray(field, { selector: ([n]) => n, maxLength: 8 }), address, (fields, addr) => {
      const headers: Record<string, unknown> = Object.fromEntries(fields);
      forwardHeadersFor(headers, addr);
      const { others, list } = expected(fields, addr);
      assert.deepEqual(headers, { ...Object.fromEntries(others), 'x-forwarded-for': list });
    }),
  );
});

test('property: the HTTP/1 head the app receives carries the same list, once', () => {
  fc.assert(
    fc.property(fc.array(field, { maxLength: 8 }), address, (fields, addr) => {
      const text = `GET / HTTP/1.1\r\nHost: a\r\n${fields.map(([n, v]) => `${n}: ${v}\r\n`).join('')}\r\n`;
      const parsed = parseRequestHead(Buffer.from(text, 'latin1'), 0, text.length, LIMITS);
      assert.equal(parsed.kind, 'ok');
      if (parsed.kind !== 'ok') return;
      const out = serializeRequestHead(
        parsed.head,
        { method: 'GET', path: '/', host: null, forwardedFor: addr },
        false,
      );
      const lines = out.split('\r\n').slice(1, -2);
      const { others, list } = expected(fields, addr);
      assert.deepEqual(lines, [
        'Host: a',
        ...others.map(([n, v]) => `${n}: ${v}`),
        `X-Forwarded-For: ${list}`,
      ]);
    }),
  );
});

test('the address as the list carries it', () => {
  assert.equal(forwardedAddress('::ffff:198.18.0.7'), '198.18.0.7');
  assert.equal(forwardedAddress('2001:db8::1'), '2001:db8::1');
  assert.equal(forwardedAddress('127.0.0.1'), '127.0.0.1');
  assert.equal(forwardedAddress(undefined), 'unknown');
});
