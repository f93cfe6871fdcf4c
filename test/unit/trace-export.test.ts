// The span exporter over OTLP/HTTP (src/proxy/telemetry/trace-export.ts, trace-export-http.ts,
// trace-otlp.ts): what it writes decodes as the official ExportTraceServiceRequest (protobufjs
// against the test's .proto); batches are bounded; a collector that never answers or is not there
// costs spans, counted, and never more memory than the queue's bound; add() never waits. The same
// queue over OTLP/gRPC: trace-export-grpc.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import fc from 'fast-check';
import { ProxyMetrics } from '../../src/proxy/telemetry/metrics.ts';
import { silentLogger } from '../../src/core/log.ts';
import { SpanExporter, type SpanExporterOptions } from '../../src/proxy/telemetry/trace-export.ts';
import { OtlpHttpTransport, tracesUrl } from '../../src/proxy/telemetry/trace-export-http.ts';
import {
  BatchPrefix,
  encodeTraceRequest,
  SpanBatch,
  type OtlpResource,
} from '../../src/proxy/telemetry/trace-otlp.ts';
import { TraceSpan, type FinishedSpan } from '../../src/proxy/telemetry/trace-span.ts';
import { Writer } from '../../src/api/wire-writer.ts';
import { decodeTraceRequest, startOtlpReceiver } from '../helpers/otlp-receiver.ts';

/** The sum of a family's series whose labels include `labels`. */
function metricValue(page: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of page.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`)))
      sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

const RESOURCE: OtlpResource = {
  attributes: [['service.name', 'web']],
  scopeName: 'trellis-proxy',
  scopeVersion: '',
};

function finished(i: number, parent: string | null = '00f067aa0ba902b7'): FinishedSpan {
  const span = new TraceSpan(
    i % 2 === 0 ? 'server' : 'client',
    '4bf92f3577b34da6a3ce929d0e0e4736',
    (i + 1).toString(16).padStart(16, '0'),
    parent,
    'a=1',
    1_765_000_000_123.456,
    'ua',
  );
  return {
    span,
    name: 'GET',
    endMs: 1_765_000_000_130.5,
    attributes: ['http.request.method', 'GET', 'http.response.status_code', 200],
    error: i % 3 === 0,
    statusMessage: i % 3 === 0 ? 'upstream-timeout' : '',
  };
}

function exporter(
  collector: string,
  metrics: ProxyMetrics,
  over: Partial<SpanExporterOptions> = {},
  headers: Record<string, string> = {},
) {
  return new SpanExporter(
    {
      collector,
      resource: RESOURCE,
      maxQueuedSpans: 10,
      maxBatchSpans: 5,
      batchDelayMs: 10,
      exportTimeoutMs: 500,
      metrics,
      log: silentLogger,
      backoff: { initialMs: 20, maxMs: 40 },
      ...over,
    },
    new OtlpHttpTransport(collector, headers),
  );
}

const dropped = (m: ProxyMetrics, reason: string) =>
  metricValue(m.render(), 'trellis_trace_spans_dropped_total', { reason });

test('the request decodes as the official ExportTraceServiceRequest, field for field', () => {
  const spans = [finished(0), finished(1, null)];
  const decoded = decodeTraceRequest(encodeTraceRequest(RESOURCE, spans));
  assert.equal(decoded.length, 2);
  const [a, b] = decoded;
  assert.equal(a!.traceId, '4bf92f3577b34da6a3ce929d0e0e4736');
  assert.equal(a!.spanId, '0000000000000001');
  assert.equal(a!.parentSpanId, '00f067aa0ba902b7');
  assert.equal(a!.traceState, 'a=1');
  assert.equal(a!.kind, 'SPAN_KIND_SERVER');
  assert.equal(b!.kind, 'SPAN_KIND_CLIENT');
  assert.equal(b!.parentSpanId, '');
  assert.equal(a!.startNanos, 1_765_000_000_123_456_000n);
  assert.equal(a!.endNanos, 1_765_000_000_130_500_000n);
  assert.deepEqual(a!.attributes, { 'http.request.method': 'GET', 'http.response.status_code': 200 });
  assert.deepEqual(a!.status, { code: 'STATUS_CODE_ERROR', message: 'upstream-timeout' });
  assert.deepEqual(b!.status, { code: 'STATUS_CODE_UNSET', message: '' });
  assert.equal(a!.flags, 0x301, 'sampled, with a remote parent');
  assert.equal(b!.flags, 0x101, 'sampled, a local root');
  assert.deepEqual(a!.resource, { 'service.name': 'web' });
  assert.equal(a!.scope, 'trellis-proxy');
});

/** Any UTF-16 string: ASCII, other code points, surrogate pairs and lone surrogates. */
const anyText = (maxLength: number) =>
  fc.string({
    unit: fc.oneof(
      fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 1 }),
      fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)),
      fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 }),
    ),
    maxLength,
  });
/** What a UTF-8 decoder reads back: lone surrogates become U+FFFD. */
const asDecoded = (s: string) => Buffer.from(s, 'utf8').toString('utf8');
const hexId = (bytes: number) =>
  fc
    .uint8Array({ minLength: bytes, maxLength: bytes })
    .map((b) => Buffer.from(b).toString('hex'))
    .filter((h) => !/^0+$/.test(h));

test('any span and attribute values round-trip through the decoder', () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.tuple(
          anyText(300),
          fc.oneof(anyText(300), fc.integer(), fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER })),
        ),
        { maxLength: 12 },
      ),
      anyText(200),
      fc.record({
        traceId: hexId(16),
        spanId: hexId(8),
        parent: fc.option(hexId(8)),
        traceState: anyText(40),
        // Microseconds since the epoch up to the year 2100 (a double of milliseconds then still
        // holds the microsecond: below 2^42 ms its resolution is under half a microsecond).
        startMicros: fc.integer({ min: 0, max: 4_102_444_800_000_000 }),
        durationMicros: fc.integer({ min: 0, max: 3_600_000_000 }),
      }),
      (attrs, name, ids) => {
        const span = new TraceSpan(
          'client',
          ids.traceId,
          ids.spanId,
          ids.parent,
          ids.traceState,
          ids.startMicros / 1000,
          '',
        );
        const endMs = (ids.startMicros + ids.durationMicros) / 1000;
        const f = { ...finished(1), span, name, endMs, attributes: attrs.flat() };
        const [d] = decodeTraceRequest(encodeTraceRequest(RESOURCE, [f]));
        assert.equal(d!.name, asDecoded(name));
        assert.equal(d!.traceId, ids.traceId);
        assert.equal(d!.spanId, ids.spanId);
        assert.equal(d!.parentSpanId, ids.parent ?? '');
        assert.equal(d!.traceState, asDecoded(ids.traceState));
        assert.equal(d!.startNanos, BigInt(ids.startMicros) * 1000n);
        assert.equal(d!.endNanos, BigInt(ids.startMicros + ids.durationMicros) * 1000n);
        const want: Record<string, string | number> = {};
        for (const [k, v] of attrs) want[asDecoded(k)] = typeof v === 'string' ? asDecoded(v) : v;
        assert.deepEqual(d!.attributes, want);
      },
    ),
    { numRuns: 500 },
  );
});

test('attributes are written from their caches only when they repeat (the run from stableFrom on, each one before it)', () => {
  // The tracer reuses one attribute list for every span; the encoder keeps a few runs of the
  // repeating part. Spans drawn from a handful of runs (hits, misses, evictions, runs that differ
  // in one value or in length) must each decode with exactly their own attributes.
  const value = fc.oneof(
    fc.constantFrom('a', 'b', 'spiffe://x/ns/a/sa/b', ''),
    fc.integer({ min: 0, max: 3 }),
  );
  const run = fc.array(value, { maxLength: 5 });
  fc.assert(
    fc.property(
      fc.array(run, { minLength: 1, maxLength: 7 }),
      fc.array(fc.tuple(fc.nat(), fc.array(value, { maxLength: 3 })), { minLength: 1, maxLength: 30 }),
      (runs, picks) => {
        const list: (string | number)[] = [];
        const batch = new SpanBatch(new BatchPrefix(RESOURCE));
        const wants: Record<string, string | number>[] = [];
        for (const [pick, varying] of picks) {
          const stable = runs[pick % runs.length]!;
          list.length = 0;
          const want: Record<string, string | number> = {};
          // The varying part's keys also change at a position (a CLIENT span's against a SERVER's).
          const key = pick % 2 === 0 ? 'v' : 'w';
          varying.forEach((v, i) => {
            list.push(`${key}${i}`, v);
            want[`${key}${i}`] = v;
          });
          const stableFrom = list.length;
          stable.forEach((v, i) => {
            list.push(`s${i}`, v);
            want[`s${i}`] = v;
          });
          batch.add({ ...finished(1), attributes: list, stableFrom });
          wants.push(want);
        }
        const decoded = decodeTraceRequest(batch.body());
        assert.deepEqual(
          decoded.map((d) => d.attributes),
          wants,
        );
      },
    ),
    { numRuns: 300 },
  );
});

test('a batch of any size under any resource decodes whole (its enclosing fields written in place)', () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(anyText(40), fc.oneof(anyText(3000), fc.integer())), { maxLength: 8 }),
      anyText(300),
      anyText(20),
      fc.array(anyText(2000), { minLength: 1, maxLength: 40 }),
      (resourceAttrs, scopeName, scopeVersion, values) => {
        const resource: OtlpResource = { attributes: resourceAttrs, scopeName, scopeVersion };
        const batch = new SpanBatch(new BatchPrefix(resource));
        values.forEach((v, i) => batch.add({ ...finished(i), attributes: ['v', v] }));
        const body = batch.body();
        assert.deepEqual(batch.body(), body, 'the same bytes when asked again');
        const decoded = decodeTraceRequest(body);
        assert.equal(decoded.length, values.length);
        const want: Record<string, string | number> = {};
        for (const [k, v] of resourceAttrs) want[asDecoded(k)] = typeof v === 'string' ? asDecoded(v) : v;
        decoded.forEach((d, i) => {
          assert.equal(d.spanId, (i + 1).toString(16).padStart(16, '0'));
          assert.deepEqual(d.attributes, { v: asDecoded(values[i]!) });
          assert.deepEqual(d.resource, want);
          assert.equal(d.scope, asDecoded(scopeName));
        });
      },
    ),
    { numRuns: 200 },
  );
});

test('a message begun with two length bytes is written as with one, whatever its length', () => {
  // SpanBatch keeps two bytes for a span's length (a span is mostly 128 to 16383 bytes): a body
  // of another length is moved, and the bytes must be those of the one-byte path.
  fc.assert(
    fc.property(
      fc.nat({ max: 70_000 }),
      fc.uint8Array({ maxLength: 3 }),
      fc.integer({ min: 1, max: 100 }),
      (length, before, field) => {
        const body = Buffer.alloc(length, 0xab);
        const write = (lengthBytes: 1 | 2) => {
          const w = new Writer(1);
          w.raw(before);
          const at = w.begin(field, lengthBytes);
          w.raw(body);
          w.end(at, lengthBytes);
          w.uint32(1, 7); // what follows lands after the message
          return w.finish();
        };
        assert.deepEqual(write(2), write(1));
      },
    ),
    { numRuns: 300 },
  );
  for (const length of [0, 127, 128, 16383, 16384]) {
    const w = new Writer();
    const at = w.begin(2, 2);
    w.raw(Buffer.alloc(length, 1));
    w.end(at, 2);
    const one = new Writer();
    one.message(2, null, (x) => x.raw(Buffer.alloc(length, 1)));
    assert.deepEqual(w.finish(), one.finish(), `length ${length}`);
  }
});

test('tracesUrl appends /v1/traces to the base URL once', () => {
  assert.equal(tracesUrl('http://c:4318').href, 'http://c:4318/v1/traces');
  assert.equal(tracesUrl('http://c:4318/otlp/').href, 'http://c:4318/otlp/v1/traces');
  assert.equal(tracesUrl('https://c/v1/traces').href, 'https://c/v1/traces');
});

test('spans are sent in batches of at most maxBatchSpans', async (t) => {
  const receiver = await startOtlpReceiver();
  t.after(() => receiver.close());
  const metrics = new ProxyMetrics();
  const e = exporter(receiver.url, metrics, { maxQueuedSpans: 100 });
  for (let i = 0; i < 23; i++) e.add(finished(i));
  await receiver.waitFor((s) => s.length === 23);
  assert.ok(receiver.requests >= 5, `${receiver.requests} requests for 23 spans in batches of 5`);
  await e.close(); // the last answer is in
  assert.equal(metricValue(metrics.render(), 'trellis_trace_spans_exported_total'), 23);
});

test('a collector that never answers: the queue holds its bound, the rest is dropped and counted', async (t) => {
  const receiver = await startOtlpReceiver();
  t.after(() => receiver.close());
  receiver.mode = 'hang';
  const metrics = new ProxyMetrics();
  const e = exporter(receiver.url, metrics);
  for (let i = 0; i < 5; i++) e.add(finished(i)); // a full batch: sent at once, never answered
  await new Promise((r) => setTimeout(r, 50));
  const started = performance.now();
  for (let i = 0; i < 1000; i++) e.add(finished(i));
  const elapsed = performance.now() - started;
  assert.equal(e.queued, 10, 'the queue stops at maxQueuedSpans');
  assert.equal(dropped(metrics, 'queue_full'), 990);
  assert.ok(elapsed < 1000, `add() never waits (${elapsed} ms for 1000)`);
  // The export times out: its batch is dropped as export_failed, the queue drains into the next.
  await new Promise((r) => setTimeout(r, 700));
  assert.ok(dropped(metrics, 'export_failed') >= 5);
  assert.equal(receiver.requests >= 2, true);
  await e.close();
});

test('a collector that is not there: spans are dropped and counted as export_failed', async () => {
  const free = net.createServer();
  await new Promise<void>((r) => free.listen(0, '127.0.0.1', r));
  const port = (free.address() as net.AddressInfo).port;
  await new Promise((r) => free.close(r));
  const metrics = new ProxyMetrics();
  const e = exporter(`http://127.0.0.1:${port}`, metrics);
  for (let i = 0; i < 7; i++) e.add(finished(i));
  await e.close();
  assert.equal(dropped(metrics, 'export_failed'), 7);
  assert.equal(metricValue(metrics.render(), 'trellis_trace_spans_exported_total'), 0);
});

test('a collector that refuses (HTTP 500): export_failed', async (t) => {
  const receiver = await startOtlpReceiver();
  t.after(() => receiver.close());
  receiver.mode = 500;
  const metrics = new ProxyMetrics();
  const e = exporter(receiver.url, metrics);
  for (let i = 0; i < 3; i++) e.add(finished(i));
  await e.close();
  assert.equal(dropped(metrics, 'export_failed'), 3);
});

test('memory: a full default queue (2048 spans) costs a bounded amount', () => {
  // Measured for the report and docs/tracing.md; asserted loosely (no timing, a generous bound).
  v8.setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const metrics = new ProxyMetrics();
  const e = exporter('http://127.0.0.1:9', metrics, {
    maxQueuedSpans: 2048,
    maxBatchSpans: 4096,
    batchDelayMs: 60_000,
  });
  // The queue holds the spans encoded (buffers outside the heap): both are counted.
  const used = () => {
    const m = process.memoryUsage();
    return m.heapUsed + m.arrayBuffers;
  };
  gc();
  const before = used();
  for (let i = 0; i < 5000; i++) e.add(finished(i));
  gc();
  const grown = used() - before;
  assert.equal(e.queued, 2048);
  assert.ok(grown < 8 * 1024 * 1024, `${grown} bytes for 2048 queued spans`);
  console.log(
    `# 2048 queued spans: ${(grown / 1024 / 1024).toFixed(2)} MiB heap and buffers (${Math.round(grown / 2048)} B per span)`,
  );
  void e.close();
});
