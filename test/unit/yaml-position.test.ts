// parseYamlSource (src/core/yaml-position.ts): a field's position in a YAML text, for errors that
// name the line and column. Property: in any nested mapping/list written out by the yaml module, the
// position given for every leaf is where that leaf's value is written, and for every key where the
// key is written; a path that goes past what exists points at the nearest enclosing value.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseDocument, stringify } from 'yaml';
import {
  offsetOfPath,
  parseYaml,
  parseYamlSource,
  repeatedKeyOffset,
  YAML_OPTIONS,
  type FieldPath,
} from '../../src/core/yaml-position.ts';

const key = fc.stringMatching(/^[a-z][a-zA-Z0-9]{0,8}$/);
const leaf = fc.oneof(
  fc.integer({ min: -1000, max: 1000 }),
  fc.stringMatching(/^[a-z][a-z0-9]{0,6}$/),
  fc.boolean(),
);
const tree = fc.letrec((tie) => ({
  node: fc.oneof({ depthSize: 'small', withCrossShrink: true }, leaf, tie('map'), tie('list')),
  map: fc.dictionary(key, tie('node'), { minKeys: 1, maxKeys: 4 }),
  list: fc.array(tie('node'), { minLength: 1, maxLength: 3 }),
})).map;

/** Every path to a leaf, with the leaf. */
function leaves(value: unknown, path: (string | number)[] = []): [FieldPath, unknown][] {
  if (Array.isArray(value)) return value.flatMap((v, i) => leaves(v, [...path, i]));
  if (typeof value === 'object' && value !== null)
    return Object.entries(value).flatMap(([k, v]) => leaves(v, [...path, k]));
  return [[path, value]];
}

/** The text at "SOURCE:LINE:COLUMN" in `text`. */
function textAt(text: string, position: string): string {
  const [, line, column] = /^src:(\d+):(\d+)$/.exec(position)!;
  return text.split('\n')[Number(line) - 1]!.slice(Number(column) - 1);
}

test('property: the position of every leaf is where its value (or its key) is written', () => {
  fc.assert(
    fc.property(tree, (value) => {
      const text = stringify(value);
      const source = parseYamlSource(text, 'src');
      assert.equal(JSON.stringify(source.value), JSON.stringify(value));
      for (const [path, leafValue] of leaves(value)) {
        assert.ok(textAt(text, source.at(path)).startsWith(stringify(leafValue).trim()), `${path.join('.')}`);
        const last = path.at(-1);
        if (typeof last === 'string') assert.ok(textAt(text, source.at(path, true)).startsWith(last));
        // Past the leaf: still the leaf.
        assert.equal(source.at([...path, 'nothing', 3]), source.at(path));
      }
    }),
    { numRuns: 300 },
  );
});

test('text that is not YAML: an error naming where', () => {
  assert.throws(
    () => parseYamlSource('a: 1\nb: [2\n', 'f.yaml'),
    /^Error: f\.yaml:\d+:\d+: not valid YAML \(/,
  );
  assert.throws(
    () => parseYamlSource('a: &x 1\nb: *y\n', 'f.yaml'),
    /^Error: f\.yaml:\d+:\d+: not valid YAML/,
  );
});

test('a position in a mapping of 20,000 keys is found without a walk from its start (each error of a large file)', () => {
  // trellis apply names the line of every error: a Service with an unknown annotation on each of
  // its 20,000 lines made 20,000 walks of the mapping (~14 s of the 28 s it took).
  const n = 20_000;
  const text = `a:\n${Array.from({ length: n }, (_, i) => `  k${i}: ${i}\n`).join('')}`;
  const document = parseDocument(text, { uniqueKeys: false });
  const started = performance.now();
  let last = 0;
  for (let i = 0; i < n; i++) last = offsetOfPath(document, ['a', `k${i}`]);
  const elapsed = performance.now() - started;
  assert.equal(text.slice(last, last + 5), `${n - 1}`);
  // A walk from the start each time took 14 s here (2e8 key comparisons); an index takes ~10 ms.
  assert.ok(elapsed < 3000, `${elapsed} ms`);
});

/**
 * A flow-style YAML text whose mappings may repeat keys: `1` and `'1'` are different keys to the
 * yaml library's check (a number and a string) but one property of the parsed object.
 */
type Flow = number | string | readonly Flow[] | { readonly pairs: readonly (readonly [string, Flow])[] };
const flowKey = fc.constantFrom('a', 'b', 'c', '1', "'1'", 'true');
const flow: fc.Arbitrary<Flow> = fc.letrec<{ node: Flow; map: Flow; list: Flow }>((tie) => ({
  node: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.integer({ min: 0, max: 9 }),
    fc.constantFrom('x', 'y'),
    tie('map'),
    tie('list'),
  ),
  map: fc.array(fc.tuple(flowKey, tie('node')), { minLength: 1, maxLength: 5 }).map((pairs) => ({ pairs })),
  list: fc.array(tie('node'), { minLength: 1, maxLength: 3 }),
})).map;
function render(node: Flow): string {
  if (typeof node === 'number' || typeof node === 'string') return String(node);
  if (Array.isArray(node)) return `[${node.map(render).join(', ')}]`;
  return `{${(node as { pairs: readonly (readonly [string, Flow])[] }).pairs.map(([k, v]) => `${k}: ${render(v)}`).join(', ')}}`;
}

/** The property a generated key becomes in the parsed object. */
const propertyOf = (key: string): string => key.replace(/^'(.*)'$/, '$1');

/** Whether some mapping of `node` has two keys that become the same property. */
function repeatsAProperty(node: Flow): boolean {
  if (Array.isArray(node)) return node.some(repeatsAProperty);
  if (typeof node !== 'object') return false;
  const { pairs } = node as { pairs: readonly (readonly [string, Flow])[] };
  const names = pairs.map(([k]) => propertyOf(k));
  return new Set(names).size < names.length || pairs.some(([, v]) => repeatsAProperty(v));
}

test('property: repeatedKeyOffset finds a key repeating a property of its mapping exactly when there is one (every repeat the library finds among them)', () => {
  fc.assert(
    fc.property(flow, (node) => {
      const text = render(node);
      const theirs = parseDocument(text).errors.filter((e) => e.code === 'DUPLICATE_KEY');
      const document = parseDocument(text, YAML_OPTIONS);
      assert.deepEqual(document.errors, [], text);
      const ours = repeatedKeyOffset(document.contents);
      assert.equal(ours !== null, repeatsAProperty(node), text);
      if (theirs.length > 0) assert.ok(ours !== null, text);
      // It names a key: the text there is one of the keys, followed by its colon.
      if (ours !== null) assert.match(text.slice(ours), /^(a|b|c|1|'1'|true): /, `${text} at ${ours}`);
      if (ours === null) assert.doesNotThrow(() => parseYaml(text));
      else assert.throws(() => parseYaml(text), /Map keys must be unique/);
    }),
    { numRuns: 500 },
  );
});

test("a repeated key among 40,000 is found in one pass and named by line (the library's check took 47 s)", () => {
  // The yaml library compares each key of a mapping with every key before it; trellis apply and the
  // control plane's state files turn it off and check in one pass (repeatedKeyOffset).
  const n = 40_000;
  const text = `a:\n${Array.from({ length: n }, (_, i) => `  k${i}: ${i}\n`).join('')}  k7: again\n`;
  const started = performance.now();
  assert.throws(
    () => parseYamlSource(text, 'f.yaml'),
    new RegExp(`^Error: f\\.yaml:${n + 2}:3: not valid YAML \\(Map keys must be unique\\)$`),
  );
  assert.throws(() => parseYaml(text), /Map keys must be unique/);
  const elapsed = performance.now() - started;
  // With the library's check this took 47 s; in one pass under 2 s even on a busy machine.
  assert.ok(elapsed < 10_000, `${elapsed} ms`);
});

test('keys that differ in YAML but name the same property of the parsed object are repeated keys', () => {
  // The parsed object's property names are strings: `1` and "1", true and "true", ~ and "", two
  // .nan, a tagged !!str 1 and 1 all land on one property, and the later value silently replaced
  // the earlier one (the yaml library's own check compares the values, and missed them too).
  for (const text of [
    '1: x\n"1": y\n',
    'true: x\n"true": y\n',
    '~: x\n"": y\n',
    '.nan: x\n.nan: y\n',
    '1: x\n!!str 1: y\n',
    'a: {1.0: x, "1": y}\n',
  ]) {
    assert.throws(() => parseYaml(text), /Map keys must be unique/, text);
    const document = parseDocument(text, YAML_OPTIONS);
    assert.notEqual(repeatedKeyOffset(document.contents), null, text);
  }
  // Merge keys of YAML 1.1 are not properties: two of them in one mapping stay allowed.
  assert.deepEqual(parseYaml('%YAML 1.1\n---\nb: &b {x: 1}\nc: &c {z: 2}\nm:\n  <<: *b\n  <<: *c\n'), {
    b: { x: 1 },
    c: { z: 2 },
    m: { x: 1, z: 2 },
  });
});
