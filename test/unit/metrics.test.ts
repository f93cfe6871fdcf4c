// Unit tests for the proxy's metrics (src/proxy/telemetry/metrics.ts) and the small Prometheus
// registry under them: values after calls, cumulative histogram buckets, bounded labels, and the
// rendered text accepted by `promtool check metrics`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import fc from 'fast-check';
import { ProxyMetrics } from '../../src/proxy/telemetry/metrics.ts';
import { Registry, escapeLabelValue, formatSampleValue } from '../../src/core/prometheus.ts';
import { PROXY_ERROR_REASONS } from '../../src/proxy/errors.ts';

const PROMTOOL = '/usr/bin/promtool';

/** Parses exposition text into series ("name{labels}") -> value; checks every line's shape. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
    assert.ok(m, `malformed sample line: ${line}`);
    assert.ok(!out.has(m[1]!), `duplicate series ${m[1]}`);
    out.set(m[1]!, m[2] === '+Inf' ? Infinity : Number(m[2]));
  }
  return out;
}

function value(m: ProxyMetrics, series: string): number | undefined {
  return samples(m.render()).get(series);
}

function promtoolCheck(text: string): { status: number | null; output: string } {
  const r = spawnSync(PROMTOOL, ['check', 'metrics'], { input: text, encoding: 'utf8', timeout: 20_000 });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

test('a fresh registry has HELP and TYPE for every metric and zeroed request counters', () => {
  const text = new ProxyMetrics().render();
  const types = [...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1]!, m[2]!] as const);
  const helps = new Set([...text.matchAll(/^# HELP (\S+) /gm)].map((m) => m[1]!));
  for (const name of [
    'trellis_request_total',
    'trellis_response_total',
    'trellis_response_latency_seconds',
    'trellis_tcp_open_total',
    'trellis_tcp_close_total',
    'trellis_tcp_open_connections',
    'trellis_tcp_read_bytes_total',
    'trellis_tcp_write_bytes_total',
    'trellis_detect_total',
    'trellis_proxy_errors_total',
    'process_resident_memory_bytes',
    'process_cpu_seconds_total',
    'process_start_time_seconds',
  ]) {
    assert.ok(helps.has(name), `# HELP ${name}`);
    assert.ok(
      types.some(([n]) => n === name),
      `# TYPE ${name}`,
    );
  }
  for (const [name, type] of types) if (type === 'counter') assert.match(name, /_total$/);
  const s = samples(text);
  assert.equal(s.get('trellis_request_total{direction="outbound",protocol="h2"}'), 0);
  assert.equal(s.get('trellis_tcp_open_connections{direction="inbound"}'), 0);
  assert.ok(s.get('process_resident_memory_bytes')! > 0);
});

test('requests, responses and their classification', () => {
  const m = new ProxyMetrics();
  m.requestStarted('inbound', 'http1');
  m.requestStarted('inbound', 'http1');
  m.requestStarted('outbound', 'h2');
  m.responseFinished('inbound', 'http1', 200, 1, false);
  m.responseFinished('inbound', 'http1', 200, 1, false);
  m.responseFinished('inbound', 'http1', 200, 1, true); // e.g. grpc-status != 0
  m.responseFinished('outbound', 'h2', 503, 1, false);
  m.responseFinished('outbound', 'h2', 404, 1, false);
  m.responseFinished('outbound', 'h2', 0, 1, false); // no response sent
  const s = samples(m.render());
  assert.equal(s.get('trellis_request_total{direction="inbound",protocol="http1"}'), 2);
  assert.equal(s.get('trellis_request_total{direction="outbound",protocol="h2"}'), 1);
  assert.equal(s.get('trellis_request_total{direction="inbound",protocol="h2"}'), 0);
  const resp = (dir: string, proto: string, code: string, cls: string) =>
    s.get(
      `trellis_response_total{direction="${dir}",protocol="${proto}",status_code="${code}",classification="${cls}"}`,
    );
  assert.equal(resp('inbound', 'http1', '200', 'success'), 2);
  assert.equal(resp('inbound', 'http1', '200', 'failure'), 1);
  assert.equal(resp('outbound', 'h2', '503', 'failure'), 1);
  assert.equal(resp('outbound', 'h2', '404', 'success'), 1);
  assert.equal(resp('outbound', 'h2', 'other', 'failure'), 1);
  assert.equal(resp('outbound', 'h2', '503', 'success'), undefined);
});

test('latency histogram buckets are cumulative, in seconds, per direction', () => {
  const m = new ProxyMetrics();
  for (const ms of [0.5, 1, 1.5, 3, 7, 250, 20_000]) m.responseFinished('inbound', 'http1', 200, ms, false);
  m.responseFinished('inbound', 'http1', 200, NaN, false); // counted as 0
  m.responseFinished('inbound', 'http1', 200, -5, false); // clock step: counted as 0
  const s = samples(m.render());
  const bucket = (le: string) =>
    s.get(`trellis_response_latency_seconds_bucket{direction="inbound",le="${le}"}`);
  assert.equal(bucket('0.001'), 4); // 0, 0, 0.5, 1 (le is inclusive)
  assert.equal(bucket('0.002'), 5);
  assert.equal(bucket('0.003'), 6);
  assert.equal(bucket('0.005'), 6);
  assert.equal(bucket('0.01'), 7);
  assert.equal(bucket('0.2'), 7);
  assert.equal(bucket('0.3'), 8);
  assert.equal(bucket('10'), 8);
  assert.equal(bucket('+Inf'), 9);
  assert.equal(s.get('trellis_response_latency_seconds_count{direction="inbound"}'), 9);
  const sum = s.get('trellis_response_latency_seconds_sum{direction="inbound"}')!;
  assert.ok(Math.abs(sum - 20.263) < 1e-9, `sum ${sum}`);
  assert.equal(s.get('trellis_response_latency_seconds_count{direction="outbound"}'), 0);
  // Every le series is non-decreasing.
  let prev = -1;
  for (const [k, v] of s) {
    if (!k.startsWith('trellis_response_latency_seconds_bucket{direction="inbound"')) continue;
    assert.ok(v >= prev, `${k} decreased`);
    prev = v;
  }
});

test('tcp connections, bytes, detection and proxy errors', () => {
  const m = new ProxyMetrics();
  m.tcpOpened('inbound');
  m.tcpOpened('inbound');
  m.tcpOpened('outbound');
  m.tcpClosed('inbound', 100, 2500);
  const s1 = samples(m.render());
  assert.equal(s1.get('trellis_tcp_open_total{direction="inbound"}'), 2);
  assert.equal(s1.get('trellis_tcp_close_total{direction="inbound"}'), 1);
  assert.equal(s1.get('trellis_tcp_open_connections{direction="inbound"}'), 1);
  assert.equal(s1.get('trellis_tcp_open_connections{direction="outbound"}'), 1);
  assert.equal(s1.get('trellis_tcp_read_bytes_total{direction="inbound"}'), 100);
  assert.equal(s1.get('trellis_tcp_write_bytes_total{direction="inbound"}'), 2500);

  m.detected('inbound', 'tls', 'detected');
  m.detected('inbound', 'tls', 'detected');
  m.detected('outbound', 'opaque', 'timeout');
  m.proxyError('outbound', 'connect-failed');
  for (const reason of PROXY_ERROR_REASONS) m.proxyError('inbound', reason);
  const s2 = samples(m.render());
  assert.equal(s2.get('trellis_detect_total{direction="inbound",protocol="tls",outcome="detected"}'), 2);
  assert.equal(s2.get('trellis_detect_total{direction="outbound",protocol="opaque",outcome="timeout"}'), 1);
  assert.equal(s2.get('trellis_proxy_errors_total{direction="outbound",reason="connect-failed"}'), 1);
  for (const reason of PROXY_ERROR_REASONS) {
    assert.equal(s2.get(`trellis_proxy_errors_total{direction="inbound",reason="${reason}"}`), 1, reason);
  }
});

test('status_code labels stay bounded whatever the status', () => {
  fc.assert(
    fc.property(
      fc.array(fc.oneof(fc.integer({ min: -1000, max: 100_000 }), fc.double()), { maxLength: 50 }),
      (statuses) => {
        const m = new ProxyMetrics();
        for (const st of statuses) m.responseFinished('outbound', 'http1', st, 1, false);
        for (const [series] of samples(m.render())) {
          const code = /status_code="([^"]*)"/.exec(series)?.[1];
          if (code === undefined) continue;
          assert.ok(code === 'other' || /^[1-5]\d\d$/.test(code), `status_code ${code}`);
          if (code === 'other') assert.match(series, /classification="failure"/);
        }
      },
    ),
    { numRuns: 200 },
  );
  const m = new ProxyMetrics();
  for (const st of [99, 600, 200.5, -1, NaN, Infinity]) m.responseFinished('inbound', 'h2', st, 1, false);
  assert.equal(
    value(
      m,
      'trellis_response_total{direction="inbound",protocol="h2",status_code="other",classification="failure"}',
    ),
    6,
  );
});

test('label values and sample values are escaped and formatted as the format requires', () => {
  assert.equal(escapeLabelValue('a"b\\c\nd'), 'a\\"b\\\\c\\nd');
  assert.equal(formatSampleValue(NaN), 'NaN');
  assert.equal(formatSampleValue(Infinity), '+Inf');
  assert.equal(formatSampleValue(-Infinity), '-Inf');
  assert.equal(formatSampleValue(42), '42');
  const r = new Registry();
  r.counter('odd_total', 'Odd \\ help\nsecond line.', ['v']).labels('say "hi"\\\n').inc(2);
  assert.equal(
    r.render(),
    '# HELP odd_total Odd \\\\ help\\nsecond line.\n# TYPE odd_total counter\nodd_total{v="say \\"hi\\"\\\\\\n"} 2\n',
  );
  assert.throws(() => r.counter('odd_total', 'again'), /registered twice/);
  assert.throws(() => r.counter('no_suffix', 'x'), /_total/);
  assert.throws(() => r.gauge('bad-name', 'x'), /invalid metric name/);
  assert.throws(() => r.histogram('h', 'x', ['le'], [1]), /invalid label name/);
  assert.throws(() => r.histogram('h2', 'x', [], [2, 1]), /increasing/);
});

test('promtool check metrics accepts the rendered output', (t) => {
  if (!existsSync(PROMTOOL)) {
    t.skip('promtool is not installed');
    return;
  }
  const m = new ProxyMetrics();
  m.requestStarted('inbound', 'http1');
  m.responseFinished('inbound', 'http1', 200, 12, false);
  m.responseFinished('outbound', 'h2', 0, 5000, true);
  m.tcpOpened('outbound');
  m.tcpClosed('outbound', 1, 2);
  m.detected('outbound', 'h2', 'configured');
  m.proxyError('inbound', 'shutting-down');
  for (const text of [new ProxyMetrics().render(), m.render()]) {
    const r = promtoolCheck(text);
    assert.equal(r.status, 0, `promtool: ${r.output}`);
    assert.equal(r.output.trim(), '');
  }
  // The check can fail: a counter without _total is reported.
  const bad = promtoolCheck('# HELP x Bad.\n# TYPE x counter\nx 1\n');
  assert.notEqual(bad.status, 0);
});

test('mTLS connections by peer identity: the series and what the proxy remembers stay bounded', () => {
  const m = new ProxyMetrics();
  for (let i = 0; i < 1_200; i++) m.meshConnection('inbound', `spiffe://t/ns/x/sa/peer-${i}`);
  const series = m
    .render()
    .split('\n')
    .filter((l) => l.startsWith('trellis_mesh_connections_total{'));
  assert.equal(series.length, 1_001); // 1,000 identities and "other"
  assert.ok(series.some((l) => l.includes('peer_identity="other"') && l.endsWith(' 200')));
  // Before, every identity past the bound was still kept in the lookup map (one entry each).
  const remembered = (m as unknown as { meshConnectionsBy: Map<string, unknown>[] }).meshConnectionsBy[0]!;
  assert.equal(remembered.size, 1_000);
});
