// The command-line flag parser (src/cli/flags.ts): options, unknown flags named in the error, and
// options interleaved with positional arguments (parseInterleaved), as a property.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { type FlagSpec, parseFlags, parseInterleaved } from '../../src/cli/flags.ts';

const SPECS: FlagSpec[] = [
  { name: 'namespace', kind: 'string', help: '' },
  { name: 'output', kind: 'string', help: '' },
  { name: 'verbose', kind: 'boolean', help: '' },
];

test('parseFlags: values, the rest after the first positional, and unknown flags named', () => {
  const { values, rest } = parseFlags(['--namespace', 'shop', 'web', '--output', 'json'], SPECS);
  assert.equal(values.get('namespace'), 'shop');
  assert.deepEqual(rest, ['web', '--output', 'json']);
  assert.throws(() => parseFlags(['--nope'], SPECS), /--nope/);
});

test('parseInterleaved: short aliases, options before, between and after positionals', () => {
  const { values, rest } = parseInterleaved(
    ['-o', 'json', 'web', '-n', 'shop', 'extra', '--verbose'],
    SPECS,
    {
      '-o': '--output',
      '-n': '--namespace',
    },
  );
  assert.deepEqual(rest, ['web', 'extra']);
  assert.equal(values.get('output'), 'json');
  assert.equal(values.get('namespace'), 'shop');
  assert.equal(values.get('verbose'), true);
});

test('property: interleaving options never changes the positionals or the values', () => {
  const word = fc.stringMatching(/^[a-z][a-z0-9/-]{0,8}$/);
  const option = fc.oneof(
    fc.tuple(fc.constant('--namespace'), word),
    fc.tuple(fc.constant('-o'), word),
    fc.constant(['--verbose'] as [string]),
  );
  fc.assert(
    fc.property(
      fc.array(
        fc.oneof(
          word.map((w) => ({ w })),
          option,
        ),
        { maxLength: 12 },
      ),
      (items) => {
        const argv = items.flatMap((i) => ('w' in i ? [i.w] : [...i]));
        const expected = items.flatMap((i) => ('w' in i ? [i.w] : []));
        const { values, rest } = parseInterleaved(argv, SPECS, { '-o': '--output' });
        assert.deepEqual(rest, expected);
        const lastOf = (flag: string): string | undefined => {
          let last: string | undefined;
          for (const i of items) if (!('w' in i) && i[0] === flag) last = (i as readonly string[])[1];
          return last;
        };
        assert.equal(values.get('namespace'), lastOf('--namespace'));
        assert.equal(values.get('output'), lastOf('-o'));
      },
    ),
  );
});
