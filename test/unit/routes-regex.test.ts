// Route regular expressions and durations (src/core/routes/regex.ts, duration.ts): what is
// refused and why, whole-value matching, and that a pattern built to backtrack exponentially
// runs in linear time once enableLinearRegexFallback has been called (without it the match below
// takes longer than the test's timeout: ~10 s for 28 characters, doubling with each one more).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  compileFullMatch,
  enableLinearRegexFallback,
  MAX_REGEX_PROGRAM_SIZE,
  regexProblem,
  regexProgramSize,
} from '../../src/core/routes/regex.ts';
import { parseGatewayDuration } from '../../src/core/routes/duration.ts';

test('regexProblem refuses backreferences, lookaround, named groups, flags, bad syntax and long patterns', () => {
  for (const bad of [
    '(a)\\1',
    '(?<n>a)\\k<n>',
    'a(?=b)',
    'a(?!b)',
    '(?<=a)b',
    '(?<!a)b',
    '(?<n>a)',
    '(?i:a)',
    '(',
    '[',
    'x'.repeat(1025),
    '',
  ])
    assert.notEqual(regexProblem(bad), null, bad);
  for (const good of ['/v[0-9]+/.*', '(?:a|b)+', '\\\\1', '\\(?=', '.*', '[^/]+\\.json', 'x'.repeat(100)])
    assert.equal(regexProblem(good), null, good);
});

test('regexProblem refuses a pattern of more states than the bound, which every caller would pay per request', () => {
  // 200 optional atoms under a star: accepted before the bound, and 145 ms per match of an 8 KB
  // path on the linear engine (the cost grows with states times the value's length).
  const hostile = '(?:' + 'a?'.repeat(200) + ')*b';
  assert.match(regexProblem(hostile) ?? 'accepted', /too complex: about 403 states, at most 100/);
  for (const bad of ['x'.repeat(101), 'x{1,16}'.repeat(6), '(?:ab|cd){16}'.repeat(3)])
    assert.match(regexProblem(bad) ?? 'accepted', /too complex/, bad);
  for (const good of [
    '(?:' + 'a?'.repeat(45) + ')*b',
    'x{1,16}'.repeat(5),
    '/api/v[0-9]+/(?:users|orders)/[a-z0-9-]+/.*',
  ])
    assert.equal(regexProblem(good), null, good);
});

/** A pattern as a tree, rendered to text, with the size regexProgramSize should find for it. */
type Node =
  | { readonly kind: 'char'; readonly text: string }
  | { readonly kind: 'seq' | 'alt'; readonly parts: readonly Node[] }
  | { readonly kind: 'group'; readonly inner: Node; readonly capturing: boolean }
  | { readonly kind: 'quant'; readonly inner: Node; readonly q: string; readonly copies: number };

function render(n: Node): string {
  switch (n.kind) {
    case 'char':
      return n.text;
    case 'seq':
      return n.parts.map(render).join('');
    case 'alt':
      return n.parts.map(render).join('|');
    case 'group':
      return `(${n.capturing ? '' : '?:'}${render(n.inner)})`;
    case 'quant':
      return `${render(n.inner)}${n.q}`;
  }
}

function expected(n: Node): number {
  switch (n.kind) {
    case 'char':
      return 1;
    case 'seq':
      return n.parts.reduce((a, p) => a + expected(p), 0);
    case 'alt':
      return n.parts.reduce((a, p) => a + expected(p), 0) + n.parts.length - 1;
    case 'group':
      return expected(n.inner) + 1;
    case 'quant':
      return n.copies === 0 ? expected(n.inner) + 1 : expected(n.inner) * n.copies + 1;
  }
}

test('regexProgramSize counts characters, classes, escapes, alternatives, groups and repetitions (property)', () => {
  const atoms = ['a', 'b', '.', '\\d', '\\.', '\\x41', '\\u0041', '[a-z]', '[^/\\]]', '[]'];
  const char = fc.constantFrom(...atoms, '^', '$').map((text): Node => ({ kind: 'char', text }));
  const repeatable = fc.constantFrom(...atoms).map((text): Node => ({ kind: 'char', text }));
  const quantifier = fc.constantFrom<[string, number]>(
    ['*', 0],
    ['+', 0],
    ['?', 0],
    ['*?', 0],
    ['{3}', 3],
    ['{2,}', 3],
    ['{1,4}', 4],
    ['{0,2}?', 2],
  );
  // An alternation appears only inside a group (or as the whole pattern), as in a pattern's text.
  const { node } = fc.letrec<{ node: Node; group: Node }>((tie) => ({
    node: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      char,
      fc.array(tie('node'), { minLength: 2, maxLength: 4 }).map((parts): Node => ({ kind: 'seq', parts })),
      tie('group'),
      fc
        .record({ inner: fc.oneof(repeatable, tie('group')), q: quantifier })
        .map(({ inner, q }): Node => ({ kind: 'quant', inner, q: q[0], copies: q[1] })),
    ),
    group: fc
      .record({
        inner: fc.oneof(
          tie('node'),
          fc
            .array(tie('node'), { minLength: 2, maxLength: 3 })
            .map((parts): Node => ({ kind: 'alt', parts })),
        ),
        capturing: fc.boolean(),
      })
      .map(({ inner, capturing }): Node => ({ kind: 'group', inner, capturing })),
  }));
  fc.assert(
    fc.property(node, (tree) => {
      const text = render(tree);
      assert.doesNotThrow(() => new RegExp(text), text);
      assert.equal(regexProgramSize(text), expected(tree), text);
    }),
  );
  assert.equal(MAX_REGEX_PROGRAM_SIZE, 100);
});

test('regexProblem refuses what V8 cannot run in linear time: a bounded repetition above 16, nested bounded repetitions', () => {
  for (const bad of ['(a{1,20})+', 'a{1,17}', '((a{1,10}){1,10})+'])
    assert.match(regexProblem(bad) ?? 'accepted', /linear time/, bad);
  for (const good of ['(a{1,16})+', 'x{1,16}'.repeat(5), '\\ba+', '[\\s\\S]*'])
    assert.equal(regexProblem(good), null, good);
});

test('compiled patterns match the whole value', () => {
  assert.equal(compileFullMatch('/a.*').test('/abc'), true);
  assert.equal(compileFullMatch('/a').test('/abc'), false);
  assert.equal(compileFullMatch('a|b').test('ab'), false, 'alternation stays inside the anchors');
});

test('with the linear fallback, an exponential pattern on a hostile path finishes', () => {
  enableLinearRegexFallback();
  const re = compileFullMatch('(a+)+');
  assert.equal(re.test('a'.repeat(64) + '!'), false);
  assert.equal(compileFullMatch('(a|aa)*b').test('a'.repeat(64)), false);
  assert.equal(compileFullMatch('(a{1,16})+').test('a'.repeat(64) + '!'), false);
});

test('Gateway API durations: GEP-2257 syntax only', () => {
  assert.equal(parseGatewayDuration('10s'), 10_000);
  assert.equal(parseGatewayDuration('1h30m'), 5_400_000);
  assert.equal(parseGatewayDuration('250ms'), 250);
  assert.equal(parseGatewayDuration('1h1m1s1ms'), 3_661_001);
  assert.equal(parseGatewayDuration('0s'), 0);
  for (const bad of ['', '10', '1.5s', '-1s', '100000s', '1d', '1h1m1s1ms1h', ' 1s', '1S'])
    assert.equal(parseGatewayDuration(bad), null, bad);
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.integer({ min: 0, max: 99999 }), fc.constantFrom('h', 'm', 's', 'ms')), {
        minLength: 1,
        maxLength: 4,
      }),
      (parts) => {
        const text = parts.map(([n, u]) => `${n}${u}`).join('');
        const ms = parts.reduce((sum, [n, u]) => sum + n * { h: 3_600_000, m: 60_000, s: 1000, ms: 1 }[u], 0);
        return parseGatewayDuration(text) === ms;
      },
    ),
  );
});

test('a pattern is checked and compiled once while it is among the last 256, and stays correct', () => {
  // Every update of a Service's routes recompiles its route set in each calling proxy: patterns
  // that did not change are not parsed again (they were 40% of a recompile).
  const first = compileFullMatch('/kept/[0-9]+');
  assert.equal(compileFullMatch('/kept/[0-9]+'), first, 'the same matcher for the same pattern');
  assert.equal(first.test('/kept/12'), true);
  assert.equal(first.test('/kept/12'), true, 'no state between tests (no flags, no lastIndex)');
  assert.equal(regexProblem('(a)\\1'), regexProblem('(a)\\1'));
  for (let i = 0; i < 256; i++) compileFullMatch(`/other/${i}`);
  const again = compileFullMatch('/kept/[0-9]+');
  assert.notEqual(again, first, 'past 256 newer patterns the oldest is dropped');
  assert.equal(again.test('/kept/12'), true);
  assert.equal(again.test('/kept/x'), false);
});
