// The options list of a command's help (formatHelp): every help text starts in one column, also
// after a flag too long for it (trellis install's --identity-trust-anchors-file VALUE), which
// then stands on a line of its own instead of running into its help text.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type FlagSpec, formatHelp } from '../../src/cli/flags.ts';

test('formatHelp: a flag longer than its column puts its help on the next line, in the column', () => {
  const specs: FlagSpec[] = [
    { name: 'identity-trust-anchors-file', kind: 'string', help: 'PEM trust anchor(s)' },
    { name: 'image', kind: 'string', help: 'the image' },
  ];
  const lines = formatHelp('Usage: x', specs).split('\n');
  assert.deepEqual(lines.slice(3), [
    '      --identity-trust-anchors-file VALUE',
    '                                     PEM trust anchor(s)',
    '      --image VALUE                  the image',
    '  -h, --help                         show this help',
  ]);
  assert.equal(lines[4]!.indexOf('PEM'), lines[5]!.indexOf('the image'));
});
