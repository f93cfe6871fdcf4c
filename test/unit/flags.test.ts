// The command-line flag parser (src/cli/flags.ts): options, unknown flags (long and short) named
// in the error, short forms declared by the specs, `-` and `--`, whole and decimal numbers (the
// trace sample ratio of `trellis proxy` and `trellis up`), the help text, and options
// interleaved with positional arguments (parseInterleaved), as a property.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { type FlagSpec, formatHelp, parseFlags, parseInterleaved } from '../../src/cli/flags.ts';
import { runCli } from '../helpers/cli.ts';

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

test('parseFlags: a number flag takes whole numbers, a decimal flag any decimal number', () => {
  const specs: FlagSpec[] = [
    { name: 'port', kind: 'number', help: 'a port' },
    { name: 'ratio', kind: 'decimal', help: 'a share' },
  ];
  for (const [raw, value] of [
    ['0.25', 0.25],
    ['1', 1],
    ['.5', 0.5],
    ['0', 0],
    ['-1.5', -1.5],
    ['2.', 2],
  ] as const)
    assert.equal(parseFlags([`--ratio=${raw}`], specs).values.get('ratio'), value, raw);
  for (const bad of ['', 'x', '0.1.2', '1e3', '0x10', ' 1', 'NaN', 'Infinity', '.'])
    assert.throws(
      () => parseFlags(['--ratio', bad], specs),
      /^ConfigError: --ratio: expected a number, got/,
      bad,
    );
  assert.equal(parseFlags(['--port', '8080'], specs).values.get('port'), 8080);
  assert.throws(() => parseFlags(['--port', '0.5'], specs), /--port: expected a whole number, got '0.5'/);
});

// The injector gives every proxy `--trace-sample-ratio=R` with the install's ratio (0.05, say), and
// `trellis up --trace-sample-ratio R` is how docs/tracing.md sets it on one machine: both took
// whole numbers only, so an injected proxy with a fractional ratio did not start.
test('trellis proxy and trellis up take a fractional --trace-sample-ratio (checked 0..1 after parsing)', async () => {
  // The proxy's configuration fails on --app-port 0, after the ratio was taken.
  const proxy = await runCli([
    'proxy',
    '--trace-sample-ratio=0.05',
    '--trace-collector',
    'http://127.0.0.1:1',
    '--app-port',
    '0',
  ]);
  assert.equal(proxy.code, 2, proxy.stderr);
  assert.match(proxy.stderr, /--app-port/);
  const outOfRange = await runCli(['proxy', '--trace-sample-ratio', '1.5', '--app-port', '8080']);
  assert.match(outOfRange.stderr, /--trace-sample-ratio: .*1/);
  assert.doesNotMatch(outOfRange.stderr, /whole number/);
  // `trellis up` checks its tracing flags before it starts: the protocol is refused, not the ratio.
  const up = await runCli(['up', '--trace-sample-ratio', '0.5', '--trace-protocol', 'nope']);
  assert.equal(up.code, 2, up.stderr);
  assert.match(up.stderr, /--trace-protocol: expected grpc or http\/protobuf/);
  const upRange = await runCli(['up', '--trace-sample-ratio', '1.5']);
  assert.match(upRange.stderr, /--trace-sample-ratio: must be 0\.\.1/);
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
