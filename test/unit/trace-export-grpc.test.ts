// Span export over OTLP/gRPC (src/proxy/telemetry/trace-export-grpc.ts) through the same bounded
// queue as OTLP/HTTP (trace-export.ts), against a grpc-js receiver written in the test that
// decodes the official ExportTraceServiceRequest; which transport a collector URL and protocol
// select (trace-endpoint.ts, and the configuration schema); grpc-js stays unloaded until a gRPC
// export happens.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../../src/core/errors.ts';
import { silentLogger } from '../../src/core/log.ts';
import { validateProxyConfig } from '../../src/proxy/config.ts';
import { ProxyMetrics } from '../../src/proxy/telemetry/metrics.ts';
import {
  collectorUrlOf,
  grpcAddress,
  traceEndpoint,
  type TraceEndpoint,
} from '../../src/proxy/telemetry/trace-endpoint.ts';
import { SpanExporter, type SpanExporterOptions } from '../../src/proxy/telemetry/trace-export.ts';
import { OtlpGrpcTransport } from '../../src/proxy/telemetry/trace-export-grpc.ts';
import { OtlpHttpTransport } from '../../src/proxy/telemetry/trace-export-http.ts';
import { spanTransport } from '../../src/proxy/telemetry/trace-setup.ts';
import { TraceSpan, type FinishedSpan } from '../../src/proxy/telemetry/trace-span.ts';
import { startOtlpGrpcReceiver } from '../helpers/otlp-receiver.ts';

const metricValue = (m: ProxyMetrics, name: string, reason?: string): number => {
  let sum = 0;
  for (const line of m.render().split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (reason === undefined || line.includes(`reason="${reason}"`))
      sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
};

function finished(i: number): FinishedSpan {
  const span = new TraceSpan(
    'client',
    '4bf92f3577b34da6a3ce929d0e0e4736',
    (i + 1).toString(16).padStart(16, '0'),
    '00f067aa0ba902b7',
    '',
    1_765_000_000_000,
    'ua',
  );
  return {
    span,
    name: 'GET',
    endMs: 1_765_000_000_005,
    attributes: ['url.path', `/${i}`],
    error: false,
    statusMessage: '',
  };
}

function grpcExporter(
  url: string,
  metrics: ProxyMetrics,
  over: Partial<SpanExporterOptions> = {},
  headers: Record<string, string> = {},
): SpanExporter {
  const endpoint = traceEndpoint(url) as TraceEndpoint;
  return new SpanExporter(
    {
      collector: url,
      resource: { attributes: [['service.name', 'web']], scopeName: 'trellis-proxy', scopeVersion: '' },
      maxQueuedSpans: 10,
      maxBatchSpans: 5,
      batchDelayMs: 10,
      exportTimeoutMs: 500,
      metrics,
      log: silentLogger,
      backoff: { initialMs: 20, maxMs: 40 },
      ...over,
    },
    new OtlpGrpcTransport(grpcAddress(endpoint), endpoint.tls, headers),
  );
}

test('the collector URL and protocol select the transport, as the OTel convention names them', () => {
  const e = (url: string, protocol?: 'grpc' | 'http/protobuf') => {
    const r = traceEndpoint(url, protocol);
    return typeof r === 'string'
      ? r
      : { protocol: r.protocol, tls: r.tls, address: grpcAddress(r), url: collectorUrlOf(r) };
  };
  assert.deepEqual(e('http://c:4318'), {
    protocol: 'http/protobuf',
    tls: false,
    address: 'c:4318',
    url: 'http://c:4318/',
  });
  assert.deepEqual(e('https://c'), {
    protocol: 'http/protobuf',
    tls: true,
    address: 'c:443',
    url: 'https://c/',
  });
  assert.deepEqual(e('grpc://c'), { protocol: 'grpc', tls: false, address: 'c:4317', url: 'grpc://c' });
  assert.deepEqual(e('grpcs://c:9000'), {
    protocol: 'grpc',
    tls: true,
    address: 'c:9000',
    url: 'grpcs://c:9000',
  });
  assert.deepEqual(e('http://c:4317', 'grpc'), {
    protocol: 'grpc',
    tls: false,
    address: 'c:4317',
    url: 'grpc://c:4317',
  });
  assert.deepEqual(e('https://c:4317', 'grpc'), {
    protocol: 'grpc',
    tls: true,
    address: 'c:4317',
    url: 'grpcs://c:4317',
  });
  assert.deepEqual(e('grpc://[::1]:4317'), {
    protocol: 'grpc',
    tls: false,
    address: '[::1]:4317',
    url: 'grpc://[::1]:4317',
  });
  assert.match(e('grpc://c', 'http/protobuf') as string, /OTLP\/gRPC/);
  assert.match(e('ftp://c') as string, /expected an http/);
  assert.match(e('not a url') as string, /expected a URL/);
  assert.match(e('grpc://') as string, /with a host/);

  assert.ok(
    spanTransport({ ...validateProxyConfig({}).tracing, collector: 'grpc://c' }) instanceof OtlpGrpcTransport,
  );
  assert.ok(
    spanTransport({ ...validateProxyConfig({}).tracing, collector: 'http://c', protocol: 'grpc' }) instanceof
      OtlpGrpcTransport,
  );
  assert.ok(
    spanTransport({ ...validateProxyConfig({}).tracing, collector: 'http://c' }) instanceof OtlpHttpTransport,
  );
  assert.throws(
    () => validateProxyConfig({ tracing: { collector: 'grpc://c', protocol: 'http/protobuf' } }),
    (err: unknown) => err instanceof ConfigError && /tracing\.protocol/.test(err.message),
  );
  assert.throws(
    () => validateProxyConfig({ tracing: { collector: 'ftp://c' } }),
    (err: unknown) => err instanceof ConfigError && /tracing\.collector/.test(err.message),
  );
  assert.throws(() => validateProxyConfig({ tracing: { protocol: 'http' } }), ConfigError);
});

test('the bearer token file: sent as authorization; unreadable or not a token is a config error', () => {
  const dir = mkdtempSync(join(tmpdir(), 'trace-token-'));
  const file = join(dir, 'token');
  writeFileSync(file, 'sekrit-token\n');
  const base = { ...validateProxyConfig({}).tracing, collector: 'grpc://c' };
  assert.ok(spanTransport({ ...base, bearerTokenFile: file }) instanceof OtlpGrpcTransport);
  writeFileSync(file, 'two words\n');
  assert.throws(() => spanTransport({ ...base, bearerTokenFile: file }), /printable/);
  assert.throws(() => spanTransport({ ...base, bearerTokenFile: join(dir, 'missing') }), /ENOENT/);
});

test('spans arrive over OTLP/gRPC in bounded batches, decoded with the official field numbers, with the token', async (t) => {
  const receiver = await startOtlpGrpcReceiver();
  t.after(() => receiver.close());
  const metrics = new ProxyMetrics();
  const e = grpcExporter(receiver.url, metrics, { maxQueuedSpans: 100 }, { authorization: 'Bearer tok' });
  for (let i = 0; i < 23; i++) e.add(finished(i));
  const spans = await receiver.waitFor((s) => s.length === 23);
  assert.ok(receiver.requests >= 5, `${receiver.requests} requests for 23 spans in batches of 5`);
  assert.deepEqual(new Set(spans.map((s) => s.attributes['url.path'])).size, 23);
  assert.equal(spans[0]!.kind, 'SPAN_KIND_CLIENT');
  assert.equal(spans[0]!.parentSpanId, '00f067aa0ba902b7');
  assert.equal(spans[0]!.resource['service.name'], 'web');
  assert.deepEqual(new Set(receiver.authorizations), new Set(['Bearer tok']));
  await e.close();
  assert.equal(metricValue(metrics, 'trellis_trace_spans_exported_total'), 23);
  assert.deepEqual(receiver.errors, []);
});

test('a gRPC collector that stalls: the queue holds its bound, drops are counted, add() never waits', async (t) => {
  const receiver = await startOtlpGrpcReceiver();
  t.after(() => receiver.close());
  receiver.mode = 'hang';
  const metrics = new ProxyMetrics();
  const e = grpcExporter(receiver.url, metrics);
  for (let i = 0; i < 5; i++) e.add(finished(i)); // a full batch: sent at once, never answered
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(receiver.requests, 1);
  const started = performance.now();
  for (let i = 0; i < 1000; i++) e.add(finished(i));
  assert.ok(performance.now() - started < 1000, 'add() never waits');
  assert.equal(e.queued, 10, 'the queue stops at maxQueuedSpans');
  assert.equal(metricValue(metrics, 'trellis_trace_spans_dropped_total', 'queue_full'), 990);
  // The deadline passes: the batch is dropped as export_failed, the queue drains into the next.
  await new Promise((r) => setTimeout(r, 800));
  assert.ok(metricValue(metrics, 'trellis_trace_spans_dropped_total', 'export_failed') >= 5);
  assert.ok(receiver.requests >= 2);
  await e.close();
});

test('a gRPC collector that refuses or is not there: export_failed, and the next export waits a backoff', async (t) => {
  const receiver = await startOtlpGrpcReceiver();
  t.after(() => receiver.close());
  receiver.mode = 16; // UNAUTHENTICATED
  const metrics = new ProxyMetrics();
  const e = grpcExporter(receiver.url, metrics, { maxQueuedSpans: 20 }, {});
  const slow = grpcExporter(receiver.url, new ProxyMetrics(), {
    backoff: { initialMs: 60_000, maxMs: 60_000 },
  });
  for (let i = 0; i < 3; i++) e.add(finished(i));
  await e.close();
  assert.equal(metricValue(metrics, 'trellis_trace_spans_dropped_total', 'export_failed'), 3);

  for (let i = 0; i < 5; i++) slow.add(finished(i)); // a full batch: sent, refused
  const deadline = Date.now() + 5000;
  while (receiver.requests < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  for (let i = 0; i < 5; i++) slow.add(finished(i)); // another full batch: waits out the backoff
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(receiver.requests, 2, 'no export during the backoff');
  await slow.close(); // closing sends what is left at once
  assert.equal(receiver.requests, 3);

  await receiver.close();
  const gone = new ProxyMetrics();
  const g = grpcExporter(receiver.url, gone);
  for (let i = 0; i < 4; i++) g.add(finished(i));
  await g.close();
  assert.equal(metricValue(gone, 'trellis_trace_spans_dropped_total', 'export_failed'), 4);
});

test('grpc-js is loaded by the first gRPC export, not by the tracing code', () => {
  const setup = fileURLToPath(new URL('../../src/proxy/telemetry/trace-setup.ts', import.meta.url));
  const script = `
    import { createRequire } from 'node:module';
    const { startTracer } = await import(${JSON.stringify(setup)});
    const { validateProxyConfig } = await import(${JSON.stringify(setup.replace(/telemetry\/trace-setup\.ts$/, 'config.ts'))});
    const { ProxyMetrics } = await import(${JSON.stringify(setup.replace(/trace-setup\.ts$/, 'metrics.ts'))});
    const { silentLogger } = await import(${JSON.stringify(setup.replace(/proxy\/telemetry\/trace-setup\.ts$/, 'core/log.ts'))});
    const tracer = startTracer(validateProxyConfig({ tracing: { collector: 'grpc://127.0.0.1:9' } }), new ProxyMetrics(), silentLogger, () => null);
    const loaded = () => Object.keys(createRequire(import.meta.url).cache).some((k) => k.includes('@grpc/grpc-js'));
    const before = loaded();
    await import('@grpc/grpc-js'); // the check itself sees a load
    console.log(JSON.stringify({ tracer: tracer !== null, loaded: before, seen: loaded() }));
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    encoding: 'utf8',
    timeout: 30_000,
  });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout.trim()), { tracer: true, loaded: false, seen: true });
});
