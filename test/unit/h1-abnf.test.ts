// Property tests of the HTTP/1 parser, the chunked decoder and the head serializer against the ABNF
// of RFC 9110 / RFC 9112, with the generators of test/fixtures/h1-abnf.ts: every valid head parses
// to the head the grammar says (and every strict prefix of it waits for more); every near miss
// (one production broken) is refused with its status, and no prefix of it is ever accepted, so
// nothing of it can be forwarded; the serializer's output of an accepted head parses back to the
// same head; valid chunked bodies decode whole or split, near misses fail and never end the body.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { isIPv6 } from 'node:net';
import { parseRequestHead, type ParseResult } from '../../src/proxy/http/h1-parser.ts';
import { serializeRequestHead } from '../../src/proxy/http/h1-serialize.ts';
import { ChunkedDecoder } from '../../src/proxy/http/chunked.ts';
import { checkRequestTarget, isIPv6 as isIPv6Address } from '../../src/proxy/http/h1-uri.ts';
import {
  ABNF_LIMITS,
  nearMissChunkedBody,
  nearMissRequest,
  validChunkedBody,
  validRequest,
  type ExpectedHead,
} from '../fixtures/h1-abnf.ts';

const bytes = (s: string) => Buffer.from(s, 'latin1');
const parse = (buf: Buffer, end = buf.length) => parseRequestHead(buf, 0, end, ABNF_LIMITS);
const verdict = (r: ParseResult) => (r.kind === 'error' ? r.status : r.kind);

function headOf(r: ParseResult): ExpectedHead {
  assert.equal(r.kind, 'ok', r.kind === 'error' ? `${r.status} ${r.message}` : r.kind);
  const h = (r as Extract<ParseResult, { kind: 'ok' }>).head;
  return {
    method: h.method,
    target: h.target,
    versionMinor: h.versionMinor,
    headers: h.headers,
    bodyKind: h.bodyKind as ExpectedHead['bodyKind'],
    contentLength: h.contentLength,
    connectionClose: h.connectionClose,
    connectionTokens: h.connectionTokens,
    upgrade: h.upgrade,
    expectContinue: h.expectContinue,
    host: h.host,
  };
}

test('every valid head parses to the head the grammar gives, and ends where it ends', () => {
  fc.assert(
    fc.property(validRequest, fc.uint8Array({ maxLength: 16 }), (v, body) => {
      const buf = Buffer.concat([bytes(v.wire), body]);
      const r = parse(buf);
      assert.deepEqual(headOf(r), v.expected, JSON.stringify(v.wire));
      assert.equal((r as { end: number }).end, v.wire.length);
    }),
    { numRuns: 1000 },
  );
});

test('every strict prefix of a valid head waits for more', () => {
  fc.assert(
    fc.property(validRequest, (v) => {
      const buf = bytes(v.wire);
      for (let k = 0; k < buf.length; k++) assert.equal(verdict(parse(buf, k)), 'incomplete', `prefix ${k}`);
    }),
    { numRuns: 150 },
  );
});

test('every near miss is refused with its status, and no prefix of it is ever accepted', () => {
  const seen = new Map<string, number>();
  fc.assert(
    fc.property(nearMissRequest, (m) => {
      seen.set(m.production, (seen.get(m.production) ?? 0) + 1);
      const buf = bytes(m.wire);
      const show = `${m.production}: ${JSON.stringify(m.wire)}`;
      const r = parse(buf);
      assert.equal(verdict(r), m.status, `${show} (${r.kind === 'error' ? r.message : r.kind})`);
      // Byte by byte, as a slow client sends it: the parser waits or refuses, with the same status.
      for (let k = 1; k < buf.length; k++) {
        const s = verdict(parse(buf, k));
        if (s !== 'incomplete') assert.equal(s, m.status, `prefix ${k} of ${show}`);
      }
    }),
    { numRuns: 2000 },
  );
  // The generator reaches every production it knows of (a breaker that stopped producing would
  // silently weaken this test).
  assert.ok(seen.size >= 35, `only ${seen.size} productions broken: ${[...seen.keys()].join(', ')}`);
});

/** Hop-by-hop fields (RFC 9110 7.6.1): the fixed ones and those the Connection field names. */
const HOP_BY_HOP = new Set(['te', 'keep-alive', 'proxy-connection', 'proxy-authenticate']);

test("the serializer's output of an accepted head parses back to the same head", () => {
  fc.assert(
    fc.property(validRequest, (v) => {
      const head = (parse(bytes(v.wire)) as Extract<ParseResult, { kind: 'ok' }>).head;
      const chunked = head.bodyKind === 'chunked';
      // As the session forwards it: the proxy names the host when the client did not.
      const host = head.host === null ? 'a.test' : null;
      const out = serializeRequestHead(head, { method: head.method, path: head.target, host }, chunked);
      const again = headOf(parse(bytes(out)));
      const dropped = new Set([...HOP_BY_HOP, ...(head.connectionTokens ?? [])]);
      // The fields in order, hop-by-hop ones dropped, a Host added after them, and the one
      // canonical Content-Length last (where the parser puts it).
      const own = head.bodyKind === 'length' ? head.headers.slice(0, -2) : head.headers;
      const headers: string[] = [];
      for (let i = 0; i < own.length; i += 2)
        if (!dropped.has(own[i]!.toLowerCase())) headers.push(own[i]!, own[i + 1]!);
      if (host !== null) headers.push('Host', host);
      if (head.bodyKind === 'length') headers.push('Content-Length', String(head.contentLength));
      assert.deepEqual(
        again,
        {
          ...v.expected,
          versionMinor: 1, // the proxy speaks HTTP/1.1 upstream
          headers,
          host: host ?? head.host,
          connectionClose: false, // Connection is hop-by-hop: the session decides for its own hop
          connectionTokens: null,
        },
        JSON.stringify(out),
      );
    }),
    { numRuns: 1000 },
  );
});

function decodeChunked(pieces: Buffer[]) {
  const d = new ChunkedDecoder(ABNF_LIMITS);
  let data = '';
  let trailers: string | null = null;
  let consumed = 0;
  const sink = {
    data: (c: Buffer) => (data += c.toString('latin1')),
    end: (t: Buffer) => (trailers = t.toString('latin1')),
  };
  for (const p of pieces) {
    const used = d.write(p, sink);
    if (used < 0) return { error: d.error, data, trailers, consumed };
    consumed += used;
  }
  return { error: null, data, trailers, consumed };
}

test('every valid chunked body decodes to its data and trailers, whole or a byte at a time', () => {
  fc.assert(
    fc.property(validChunkedBody, (b) => {
      const wire = bytes(b.wire + 'NEXT');
      const whole = decodeChunked([wire]);
      assert.deepEqual(whole, { error: null, data: b.data, trailers: b.trailers, consumed: b.wire.length });
      const single = decodeChunked([...wire].map((x) => Buffer.from([x])));
      assert.deepEqual(single, whole);
    }),
    { numRuns: 500 },
  );
});

test('every chunked near miss fails, whole or a byte at a time, and never ends the body', () => {
  fc.assert(
    fc.property(nearMissChunkedBody, (m) => {
      const wire = bytes(m.wire);
      for (const pieces of [[wire], [...wire].map((x) => Buffer.from([x]))]) {
        const r = decodeChunked(pieces);
        assert.notEqual(r.error, null, `${m.production}: ${JSON.stringify(m.wire)}`);
        assert.equal(r.trailers, null, `${m.production}: the body was ended`);
      }
    }),
    { numRuns: 1000 },
  );
});

test("IPv6address (RFC 3986 3.2.2) agrees with node's net.isIPv6", () => {
  const hex = fc.string({ unit: fc.constantFrom(...'0123456789abcdefABCDEF'.split('')), maxLength: 5 });
  const piece = fc.oneof(hex, fc.constantFrom('', '1.2.3.4', '255.255.255.255', '01.2.3.4', '1.2.3', 'g'));
  const pieces = fc.array(piece, { maxLength: 10 }).map((a) => a.join(':'));
  let valid = 0;
  fc.assert(
    fc.property(
      fc.oneof(
        pieces,
        pieces.map((s) => s.replace(':', '::')),
        // Valid addresses for certain (the arms above produce some by chance, too few on some seeds).
        fc.ipV6(),
      ),
      (s) => {
        if (isIPv6(s)) valid++;
        assert.equal(isIPv6Address(s, 0, s.length), isIPv6(s), JSON.stringify(s));
      },
    ),
    { numRuns: 20_000 },
  );
  assert.ok(valid > 3000, `only ${valid} valid addresses generated`);
});

test('checkRequestTarget (for targets that do not come through the parser) agrees with the parser', () => {
  const targets = fc.oneof(
    validRequest.map((v) => [v.parts.method, v.parts.target] as const),
    fc.tuple(
      fc.constantFrom('GET', 'OPTIONS', 'CONNECT'),
      fc
        .array(
          fc.oneof(
            fc.constantFrom(...'/?#%[]:@*.{}|\\"x0aF'.split('')),
            fc.integer({ min: 0x21, max: 0xff }),
          ),
          {
            maxLength: 12,
          },
        )
        .map((cs) => cs.map((c) => (typeof c === 'number' ? String.fromCharCode(c) : c)).join('')),
    ),
  );
  fc.assert(
    fc.property(targets, ([method, target]) => {
      const r = parse(bytes(`${method} ${target} HTTP/1.1\r\nHost: a\r\n\r\n`));
      assert.equal(
        checkRequestTarget(method, target) === null,
        r.kind === 'ok',
        JSON.stringify([method, target]),
      );
    }),
    { numRuns: 3000 },
  );
});
