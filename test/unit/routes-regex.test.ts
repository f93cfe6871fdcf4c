// Route regular expressions and durations (src/core/routes/regex.ts, duration.ts): what is
// refused and why, whole-value matching, and that a pattern built to backtrack exponentially
// runs in linear time once enableLinearRegexFallback has been called (without it the match below
// takes longer than the test's timeout: ~10 s for 28 characters, doubling with each one more).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { compileFullMatch, enableLinearRegexFallback, regexProblem } from '../../src/core/routes/regex.ts';
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
  for (const good of ['/v[0-9]+/.*', '(?:a|b)+', '\\\\1', '\\(?=', '.*', '[^/]+\\.json', 'x'.repeat(1024)])
    assert.equal(regexProblem(good), null, good);
});

test('regexProblem refuses what V8 cannot run in linear time: a bounded repetition above 16, nested bounded repetitions', () => {
  for (const bad of ['(a{1,20})+', 'a{1,17}', '((a{1,10}){1,10})+'])
    assert.match(regexProblem(bad) ?? 'accepted', /linear time/, bad);
  for (const good of ['(a{1,16})+', 'x{1,16}'.repeat(60), '\\ba+', '[\\s\\S]*'])
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
