// Unit tests for the CLI's live golden-metrics table (src/cli/live-view.ts): the quantile math on
// histogram bucket deltas (src/core/golden-metrics.ts; known cases and properties against the
// true quantile of generated observations), the sliding window fed by the proxy's real metrics
// rendering, the table's text, and what each view mode writes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { LATENCY_BUCKETS_SECONDS, ProxyMetrics } from '../../src/proxy/telemetry/metrics.ts';
import { parsePrometheusText, type CumulativeBucket } from '../../src/core/prom-parse.ts';
import { bucketDeltas, histogramQuantile } from '../../src/core/golden-metrics.ts';
import {
  LiveView,
  WorkloadWindow,
  formatLatency,
  formatTable,
  type WorkloadRow,
} from '../../src/cli/live-view.ts';

/** Cumulative buckets over `bounds` (+Inf added) for a list of observations. */
function bucketsOf(observations: readonly number[], bounds: readonly number[]): CumulativeBucket[] {
  return [...bounds, Infinity].map((le) => ({ le, count: observations.filter((o) => o <= le).length }));
}

test('histogramQuantile interpolates inside the bucket that holds the rank', () => {
  const bounds = [0.01, 0.02, 0.05];
  // 100 observations in (0.01, 0.02]: the median is half-way through that bucket.
  assert.equal(histogramQuantile(0.5, bucketsOf(new Array(100).fill(0.015), bounds)), 0.015);
  // 50 in the first bucket (starts at 0), 50 in the second: p25 is half-way through the first.
  const split = bucketsOf([...new Array(50).fill(0.005), ...new Array(50).fill(0.015)], bounds);
  assert.equal(histogramQuantile(0.25, split), 0.005);
  assert.ok(Math.abs(histogramQuantile(0.75, split)! - 0.015) < 1e-12);
  assert.equal(histogramQuantile(1, split), 0.02);
  // A rank in the +Inf bucket gives the highest finite bound.
  assert.equal(histogramQuantile(0.99, bucketsOf([1, 2, 3], bounds)), 0.05);
});

test('histogramQuantile is null without observations or without a +Inf bucket', () => {
  assert.equal(histogramQuantile(0.5, []), null);
  assert.equal(histogramQuantile(0.5, bucketsOf([], [0.1, 1])), null);
  assert.equal(histogramQuantile(0.5, [{ le: 0.1, count: 3 }]), null);
  assert.equal(histogramQuantile(NaN, bucketsOf([0.05], [0.1])), null);
});

test('bucketDeltas subtracts per bound, and takes the newer counts after a restart', () => {
  const older = [
    { le: 0.1, count: 5 },
    { le: Infinity, count: 8 },
  ];
  const newer = [
    { le: 0.1, count: 9 },
    { le: Infinity, count: 20 },
  ];
  assert.deepEqual(bucketDeltas(newer, older), [
    { le: 0.1, count: 4 },
    { le: Infinity, count: 12 },
  ]);
  const restarted = [
    { le: 0.1, count: 1 },
    { le: Infinity, count: 2 },
  ];
  assert.deepEqual(bucketDeltas(restarted, older), restarted);
});

const latency = fc.double({ min: 0, max: 12, noNaN: true });

test('property: the estimate lies within the bucket of the true quantile of the observations', () => {
  const bounds = LATENCY_BUCKETS_SECONDS;
  fc.assert(
    fc.property(
      fc.array(latency, { minLength: 1, maxLength: 200 }),
      fc.constantFrom(0.5, 0.9, 0.95, 0.99, 0.999),
      (observations, q) => {
        const sorted = [...observations].sort((a, b) => a - b);
        const truth = sorted[Math.max(Math.ceil(q * sorted.length), 1) - 1]!;
        const estimate = histogramQuantile(q, bucketsOf(observations, bounds))!;
        const upperIndex = bounds.findIndex((le) => truth <= le);
        if (upperIndex === -1) {
          assert.equal(estimate, bounds[bounds.length - 1]); // beyond the last bound
          return;
        }
        const lower = upperIndex === 0 ? 0 : bounds[upperIndex - 1]!;
        assert.ok(
          estimate >= lower && estimate <= bounds[upperIndex]!,
          `${estimate} outside [${lower}, ${bounds[upperIndex]}] for ${truth}`,
        );
      },
    ),
    { numRuns: 500 },
  );
});

test('property: quantiles from bucket deltas match quantiles of the new observations alone', () => {
  const bounds = LATENCY_BUCKETS_SECONDS;
  fc.assert(
    fc.property(
      fc.array(latency, { maxLength: 100 }),
      fc.array(latency, { minLength: 1, maxLength: 100 }),
      (before, after) => {
        const delta = bucketDeltas(bucketsOf([...before, ...after], bounds), bucketsOf(before, bounds));
        for (const q of [0.5, 0.95, 0.99]) {
          assert.equal(histogramQuantile(q, delta), histogramQuantile(q, bucketsOf(after, bounds)));
        }
        const p50 = histogramQuantile(0.5, delta)!;
        assert.ok(
          p50 <= histogramQuantile(0.95, delta)! &&
            histogramQuantile(0.95, delta)! <= histogramQuantile(0.99, delta)!,
        );
      },
    ),
    { numRuns: 300 },
  );
});

/** Scrapes a ProxyMetrics the way the demo scrapes a proxy's /metrics. */
function scrape(m: ProxyMetrics) {
  return parsePrometheusText(m.render());
}

test('WorkloadWindow: rate, success and latency from the deltas of the last window only', () => {
  const m = new ProxyMetrics();
  const w = new WorkloadWindow('quotes', 'inbound', 10_000);
  w.record(scrape(m), 0);
  assert.equal(w.row().rps, null, 'one scrape is no window yet');
  // 0..10 s: 100 slow failures. Then 10..20 s: 200 fast successes, 20 at 5xx, on two connections.
  for (let i = 0; i < 100; i++) m.responseFinished('inbound', 'http1', 503, 900, false);
  w.record(scrape(m), 10_000);
  m.tcpOpened('inbound');
  m.tcpOpened('inbound');
  m.tcpOpened('outbound');
  for (let i = 0; i < 180; i++) m.responseFinished('inbound', 'http1', 200, 15, false);
  for (let i = 0; i < 20; i++) m.responseFinished('inbound', 'http1', 500, 15, false);
  for (let i = 0; i < 50; i++) m.responseFinished('outbound', 'http1', 200, 4000, false);
  w.record(scrape(m), 15_000);
  w.record(scrape(m), 20_000);
  const row = w.row();
  assert.equal(row.meshed, '1/1');
  assert.equal(row.rps, 20); // 200 in the 10 s since the scrape at 10 s
  assert.equal(row.success, 0.9);
  assert.equal(row.latencyMsP50, 15); // all in (10, 20] ms, the median half-way
  assert.equal(row.latencyMsP99, 19.9);
  assert.equal(row.tcpConnections, 2);
  w.record(null, 21_000);
  assert.equal(w.row().meshed, '0/1', 'an unanswered scrape');
  assert.equal(w.row().rps, 20, 'keeps showing the last data it has');
});

test('WorkloadWindow: a proxy that restarted is counted from zero, not negative', () => {
  const w = new WorkloadWindow('web', 'inbound', 10_000);
  const before = new ProxyMetrics();
  for (let i = 0; i < 50; i++) before.responseFinished('inbound', 'http1', 200, 5, false);
  w.record(scrape(before), 0);
  const after = new ProxyMetrics();
  for (let i = 0; i < 10; i++) after.responseFinished('inbound', 'http1', 200, 5, false);
  w.record(scrape(after), 5000);
  assert.equal(w.row().rps, 2);
  assert.equal(w.row().success, 1);
  assert.equal(w.row().latencyMsP50, 4.5);
});

const ROWS: WorkloadRow[] = [
  {
    name: 'web',
    direction: 'inbound',
    meshed: '1/1',
    success: 0.9123,
    rps: 29.96,
    latencyMsP50: 4.25,
    latencyMsP95: 37.6,
    latencyMsP99: 1520,
    tcpConnections: 3,
  },
  {
    name: 'quotes',
    direction: 'inbound',
    meshed: '0/1',
    success: null,
    rps: null,
    latencyMsP50: null,
    latencyMsP95: null,
    latencyMsP99: null,
    tcpConnections: null,
  },
];

test('formatTable aligns columns and writes - where there is no data', () => {
  assert.deepEqual(formatTable(ROWS), [
    'NAME    MESHED  SUCCESS  RPS      LATENCY_P50  LATENCY_P95  LATENCY_P99  TCP_CONN',
    'web     1/1     91.23%   30.0rps  4.3ms        38ms         1.52s        3',
    'quotes  0/1     -        -        -            -            -            -',
  ]);
  assert.equal(formatLatency(0.04), '0.0ms');
  assert.equal(formatLatency(999.4), '999ms');
});

test('LiveView: json writes one array a refresh, lines a titled table, redraw restores the screen', () => {
  const written: string[] = [];
  const json = new LiveView((t) => written.push(t), 'json');
  json.show(ROWS, ['ignored title']);
  assert.equal(written.length, 1);
  assert.ok(written[0]!.endsWith('\n'));
  assert.deepEqual(JSON.parse(written[0]!), ROWS);

  written.length = 0;
  const lines = new LiveView((t) => written.push(t), 'lines');
  lines.show(ROWS, ['12:00:00  inbound']);
  lines.close();
  assert.deepEqual(written, [['12:00:00  inbound', ...formatTable(ROWS)].join('\n') + '\n\n']);

  written.length = 0;
  const redraw = new LiveView((t) => written.push(t), 'redraw');
  redraw.show(ROWS, ['title']);
  redraw.show(ROWS, ['title 2']);
  redraw.close();
  const all = written.join('');
  assert.equal(all.split('\x1b[?1049h').length, 2, 'enters the alternate screen once');
  assert.equal(all.split('\x1b[H').length, 3, 'homes the cursor for each frame');
  assert.ok(all.includes('\x1b[?25h\x1b[?1049l'), 'shows the cursor and leaves the alternate screen');
  assert.ok(all.endsWith(['title 2', ...formatTable(ROWS)].join('\n') + '\n'), 'leaves the last frame');
});
