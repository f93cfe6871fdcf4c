// The command-line flag parser (src/cli/flags.ts): options, unknown flags (long and short) named
// in the error, short forms declared by the specs, `-` and `--`, the help text, and options
// interleaved with positional arguments (parseInterleaved), as a property.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { type FlagSpec, formatHelp, parseFlags, parseInterleaved } from '../../src/cli/flags.ts';

const SPECS: FlagSpec[] = [
  { name: 'namespace', short: 'n', kind: 'string', help: 'the namespace' },
  { name: 'output', short: 'o', kind: 'string', help: 'the format' },
  { name: 'verbose', kind: 'boolean', help: 'say more' },
];

test('parseFlags: values, the rest after the first positional, and unknown flags named', () => {
  const { values, rest } = parseFlags(['--namespace', 'shop', 'web', '--output', 'json'], SPECS);
  assert.equal(values.get('namespace'), 'shop');
  assert.deepEqual(rest, ['web', '--output', 'json']);
  assert.throws(() => parseFlags(['--nope'], SPECS), /^ConfigError: --nope: unknown flag \(see --help\)$/);
});

test('parseFlags: short forms, unknown short flags are errors, `-` is an argument, `--` ends the options', () => {
  const { values } = parseFlags(['-n', 'shop', '-o=json'], SPECS);
  assert.deepEqual([values.get('namespace'), values.get('output')], ['shop', 'json']);
  for (const unknown of ['-x', '-N', '-nshop', '-vv', '---namespace'])
    assert.throws(() => parseFlags([unknown, 'shop'], SPECS), /unknown flag/, unknown);
  assert.throws(() => parseFlags(['-x'], SPECS), /^ConfigError: -x: unknown flag \(see --help\)$/);
  assert.throws(() => parseFlags(['-n'], SPECS), /--namespace: needs a value/);
  assert.deepEqual(parseFlags(['-', '-x'], SPECS).rest, ['-', '-x']);
  assert.deepEqual(parseFlags(['-o', 'json', '--', '-x', '--verbose'], SPECS), {
    values: new Map([['output', 'json']]),
    rest: ['-x', '--verbose'],
    ended: true,
  });
  // A value may start with a dash.
  assert.equal(parseFlags(['-n', '-x'], SPECS).values.get('namespace'), '-x');
});

test('parseInterleaved: short forms and options before, between and after positionals; `--` ends them', () => {
  const { values, rest } = parseInterleaved(['-o', 'json', 'web', '-n', 'shop', 'extra', '--verbose'], SPECS);
  assert.deepEqual(rest, ['web', 'extra']);
  assert.equal(values.get('output'), 'json');
  assert.equal(values.get('namespace'), 'shop');
  assert.equal(values.get('verbose'), true);
  assert.throws(() => parseInterleaved(['web', '-x'], SPECS), /-x: unknown flag/);
  assert.throws(() => parseInterleaved(['web', '-o'], SPECS), /--output: needs a value/);
  assert.deepEqual(parseInterleaved(['web', '--', '-x', '-n'], SPECS).rest, ['web', '-x', '-n']);
});

test('formatHelp shows the short form beside the long one', () => {
  assert.equal(
    formatHelp('Usage: x', SPECS),
    [
      'Usage: x',
      '',
      'Options:',
      '  -n, --namespace VALUE              the namespace',
      '  -o, --output VALUE                 the format',
      '      --verbose                      say more',
      '  -h, --help                         show this help',
    ].join('\n'),
  );
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
        const { values, rest } = parseInterleaved(argv, SPECS);
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
