// keepRepeatedLines (src/proxy/http/h2-headers.ts): a field sent on several lines is forwarded
// as those lines, not as node's one joined value; nothing is built when no name repeats.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import type { IncomingHttpHeaders } from 'node:http2';
import { keepRepeatedLines } from '../../src/proxy/http/h2-headers.ts';

/** What node:http2 makes of a raw list: repeated lines joined with ", " (cookie with "; "). */
function nodeJoined(raw: string[]): IncomingHttpHeaders {
  const out: Record<string, string> = {};
  for (let i = 0; i < raw.length; i += 2) {
    const [name, value] = [raw[i]!, raw[i + 1]!];
    out[name] = out[name] === undefined ? value : `${out[name]}${name === 'cookie' ? '; ' : ', '}${value}`;
  }
  return out;
}

test('repeated lines come back as lists, in order; single ones, pseudo-headers and cookie as node made them', () => {
  const raw = [
    ':method',
    'GET',
    ':path',
    '/',
    'x-a',
    '1',
    'cookie',
    'a=1',
    'x-a',
    '2',
    'cookie',
    'b=2',
    'x-b',
    'z',
  ];
  const out = keepRepeatedLines(nodeJoined(raw), raw);
  assert.deepEqual(out['x-a'], ['1', '2']);
  assert.equal(out['x-b'], 'z');
  assert.equal(out.cookie, 'a=1; b=2');
  assert.equal(out[':path'], '/');
});

test('property: every name maps to its lines; the same object when nothing repeats', () => {
  const name = fc.constantFrom('x-a', 'x-b', 'x-c', 'cookie', 'accept');
  fc.assert(
    fc.property(fc.array(fc.tuple(name, fc.string({ maxLength: 5 })), { maxLength: 12 }), (pairs) => {
      const raw = [':method', 'GET', ...pairs.flat()];
      const joined = nodeJoined(raw);
      const out = keepRepeatedLines(joined, raw);
      const names = pairs.map(([n]) => n);
      const repeats = names.some((n, i) => n !== 'cookie' && names.indexOf(n) !== i);
      if (!repeats) assert.equal(out, joined);
      for (const n of new Set(names)) {
        const lines = pairs.filter(([m]) => m === n).map(([, v]) => v);
        if (n === 'cookie' || lines.length === 1) assert.equal(out[n], joined[n]);
        else assert.deepEqual(out[n], lines);
      }
    }),
  );
});
