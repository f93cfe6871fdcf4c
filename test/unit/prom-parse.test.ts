// Unit tests for the Prometheus text parser (src/core/prom-parse.ts): a page with every
// feature of the format, malformed lines skipped without losing their neighbours, and property
// tests: whatever the proxy's own registry renders parses back to the same samples, and no input
// (random or mangled) makes the parser throw.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Registry } from '../../src/core/prometheus.ts';
import {
  histogramBuckets,
  parsePrometheusText,
  parseSampleLine,
  sumSamples,
  type PromSample,
} from '../../src/core/prom-parse.ts';

/** Plain view of a sample for deepEqual (labels as sorted entries). */
function plain(s: PromSample): { name: string; labels: [string, string][]; value: number; ts?: number } {
  const labels = Object.entries(s.labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return s.timestampMs === undefined
    ? { name: s.name, labels, value: s.value }
    : { name: s.name, labels, value: s.value, ts: s.timestampMs };
}

/** Equal as sample values: NaN equals NaN, and -0 equals 0 (the format writes both as "0"). */
function sameValue(a: number, b: number): boolean {
  return Number.isNaN(a) ? Number.isNaN(b) : a === b;
}

test('parses a page with comments, escapes, special values, timestamps and CRLF', () => {
  const page = [
    '# HELP http_requests_total The total number of HTTP requests.',
    '# TYPE http_requests_total counter',
    'http_requests_total{method="post",code="200"} 1027 1395066363000',
    'http_requests_total{method="post",code="400"}    3 1395066363000\r',
    '',
    'msdos_file_access_time_seconds{path="C:\\\\DIR\\\\FILE.TXT",error="Cannot find file:\\n\\"FILE.TXT\\""} 1.458255915e9',
    'metric_without_timestamp_and_labels 12.47',
    'something_weird{problem="division by zero"} +Inf -3982045',
    '  indented_nan   NaN',
    'neg_inf -Inf',
    'trailing_comma{a="1",} 2',
    'spaced { a = "x" , b="y" } 5e-3',
  ].join('\n');
  const got = parsePrometheusText(page).map(plain);
  assert.deepEqual(got, [
    {
      name: 'http_requests_total',
      labels: [
        ['code', '200'],
        ['method', 'post'],
      ],
      value: 1027,
      ts: 1395066363000,
    },
    {
      name: 'http_requests_total',
      labels: [
        ['code', '400'],
        ['method', 'post'],
      ],
      value: 3,
      ts: 1395066363000,
    },
    {
      name: 'msdos_file_access_time_seconds',
      labels: [
        ['error', 'Cannot find file:\n"FILE.TXT"'],
        ['path', 'C:\\DIR\\FILE.TXT'],
      ],
      value: 1.458255915e9,
    },
    { name: 'metric_without_timestamp_and_labels', labels: [], value: 12.47 },
    { name: 'something_weird', labels: [['problem', 'division by zero']], value: Infinity, ts: -3982045 },
    { name: 'indented_nan', labels: [], value: NaN },
    { name: 'neg_inf', labels: [], value: -Infinity },
    { name: 'trailing_comma', labels: [['a', '1']], value: 2 },
    {
      name: 'spaced',
      labels: [
        ['a', 'x'],
        ['b', 'y'],
      ],
      value: 0.005,
    },
  ]);
});

test('malformed lines are skipped and the lines around them still parse', () => {
  const bad = [
    'no_value',
    'no_value{a="1"}',
    'bad_value abc',
    'two_values 1 2 3',
    'bad_timestamp 1 1.5',
    '1starts_with_digit 1',
    'unclosed{a="1" 1',
    'unquoted{a=1} 1',
    'dup_label{a="1",a="2"} 1',
    'glued-1',
    'label_no_eq{a} 1',
    '{a="1"} 1',
  ];
  for (const line of bad) assert.equal(parseSampleLine(line), null, line);
  const page = ['ok_one 1', ...bad, 'ok_two{x="y"} 2'].join('\n');
  assert.deepEqual(
    parsePrometheusText(page).map((s) => [s.name, s.value]),
    [
      ['ok_one', 1],
      ['ok_two', 2],
    ],
  );
});

test('a label named __proto__ is stored as data, not as a prototype', () => {
  const s = parseSampleLine('m{__proto__="x",constructor="y"} 1');
  assert.ok(s);
  assert.equal(s.labels.__proto__, 'x');
  assert.equal(s.labels.constructor, 'y');
  assert.equal(sumSamples([s], 'm', { constructor: 'y' }), 1);
  assert.equal(sumSamples([s], 'm', { constructor: 'z' }), 0);
});

// Names and label names as the format allows them; label values: any text (the registry keys
// children by values joined with NUL, so NUL stays out of the generated values).
const metricName = fc.stringMatching(/^[a-zA-Z_:][a-zA-Z0-9_:]{0,12}$/);
const labelName = fc.stringMatching(/^[a-zA-Z][a-zA-Z0-9_]{0,8}$/).filter((n) => n !== 'le');
const labelValue = fc
  .oneof(
    fc.string({ unit: 'binary', maxLength: 12 }),
    fc.string({ unit: fc.constantFrom(...'\\"\n{}=, #ab'.split('')), maxLength: 12 }),
  )
  .map((v) => v.replace(/\0/g, ''));

const family = fc.record({
  kind: fc.constantFrom('counter', 'gauge'),
  name: metricName,
  labelNames: fc.uniqueArray(labelName, { maxLength: 3 }),
  children: fc.array(
    fc.record({ values: fc.array(labelValue, { minLength: 3, maxLength: 3 }), value: fc.double() }),
    {
      maxLength: 4,
    },
  ),
});

test('property: counters and gauges rendered by the proxy registry parse back to the same samples', () => {
  fc.assert(
    fc.property(fc.uniqueArray(family, { selector: (f) => f.name, maxLength: 5 }), (families) => {
      const registry = new Registry();
      const expected = new Map<string, { name: string; labels: [string, string][]; value: number }>();
      for (const f of families) {
        const name = f.kind === 'counter' ? `${f.name}_total` : f.name;
        const fam =
          f.kind === 'counter'
            ? registry.counter(name, 'help', f.labelNames)
            : registry.gauge(name, 'h', f.labelNames);
        for (const c of f.children) {
          const values = c.values.slice(0, f.labelNames.length);
          fam.labels(...values).value = c.value;
          const labels = f.labelNames
            .map((n, i): [string, string] => [n, values[i]!])
            .sort(([a], [b]) => (a < b ? -1 : 1));
          // a later child with the same label values is the same series: the last value wins
          expected.set(`${name}\0${values.join('\0')}`, { name, labels, value: c.value });
        }
      }
      const parsed = parsePrometheusText(registry.render()).map(plain);
      const want = [...expected.values()];
      assert.equal(parsed.length, want.length);
      // The registry renders families in order and children in first-use order: compare as sets.
      for (const w of want) {
        const hit = parsed.find(
          (p) => p.name === w.name && JSON.stringify(p.labels) === JSON.stringify(w.labels),
        );
        assert.ok(hit, `missing ${w.name} ${JSON.stringify(w.labels)}`);
        assert.ok(sameValue(hit.value, w.value), `${w.name}: ${hit.value} != ${w.value}`);
      }
    }),
    { numRuns: 300 },
  );
});

test('property: histogram buckets, sum and count survive render -> parse', () => {
  const bounds = [0.001, 0.01, 0.1, 1, 10];
  fc.assert(
    fc.property(
      fc.array(fc.double({ min: 0, max: 20, noNaN: true }), { maxLength: 50 }),
      labelValue,
      (observations, route) => {
        const registry = new Registry();
        const h = registry.histogram('latency_seconds', 'help', ['route'], bounds).labels(route);
        for (const o of observations) h.observe(o);
        const samples = parsePrometheusText(registry.render());
        const buckets = histogramBuckets(samples, 'latency_seconds', { route });
        assert.deepEqual(
          buckets.map((b) => b.le),
          [...bounds, Infinity],
        );
        bounds.forEach((le, i) => {
          assert.equal(buckets[i]!.count, observations.filter((o) => o <= le).length);
        });
        assert.equal(buckets[bounds.length]!.count, observations.length);
        assert.equal(sumSamples(samples, 'latency_seconds_count', { route }), observations.length);
        assert.ok(sameValue(sumSamples(samples, 'latency_seconds_sum', { route }), h.sum));
      },
    ),
    { numRuns: 200 },
  );
});

/** Every parsed sample is well formed, whatever the input was. */
function assertWellFormed(samples: PromSample[]): void {
  for (const s of samples) {
    assert.match(s.name, /^[a-zA-Z_:][a-zA-Z0-9_:]*$/);
    assert.equal(typeof s.value, 'number');
    for (const [k, v] of Object.entries(s.labels)) {
      assert.match(k, /^[a-zA-Z_][a-zA-Z0-9_]*$/);
      assert.equal(typeof v, 'string');
    }
    if (s.timestampMs !== undefined) assert.ok(Number.isInteger(s.timestampMs));
  }
}

test('property: random text never throws and yields only well-formed samples', () => {
  const alphabet = fc.constantFrom(...'a_:{}="\\, \t\n\r#0123456789.eE+-InfNa'.split(''));
  fc.assert(
    fc.property(
      fc.oneof(fc.string({ unit: 'binary', maxLength: 200 }), fc.string({ unit: alphabet, maxLength: 200 })),
      (text) => {
        assertWellFormed(parsePrometheusText(text));
      },
    ),
    { numRuns: 2000 },
  );
});

test('property: valid lines are still found among mangled and garbage lines', () => {
  const registry = new Registry();
  registry.counter('requests_total', 'h', ['code']).labels('200').value = 7;
  registry.gauge('open', 'h', ['dir']).labels('in "quoted"\n').value = -2.5;
  const valid = registry.render().split('\n');
  const garbageLine = fc.string({ unit: 'binary', maxLength: 60 }).map((s) => s.replace(/[\n\r]/g, ''));
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.nat(valid.length), garbageLine), { maxLength: 10 }), (inserts) => {
      const lines = [...valid];
      for (const [at, garbage] of inserts) lines.splice(Math.min(at, lines.length), 0, garbage);
      const samples = parsePrometheusText(lines.join('\n'));
      assertWellFormed(samples);
      assert.ok(samples.some((s) => s.name === 'requests_total' && s.labels.code === '200' && s.value === 7));
      const open = samples.filter((s) => s.name === 'open' && s.labels.dir === 'in "quoted"\n');
      assert.ok(open.some((s) => s.value === -2.5));
    }),
    { numRuns: 500 },
  );
});
