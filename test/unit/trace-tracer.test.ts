// The tracer's finished spans (src/proxy/telemetry/trace-tracer.ts): it hands the exporter one
// record and one attribute list, reused for every span, so each span exported carries exactly its
// own exchange's attributes, whatever came before it (a span with fewer attributes after one with
// more must not keep the other's tail). Checked through the exporter and the official decoder.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { silentLogger } from '../../src/core/log.ts';
import type { AccessLogEntry } from '../../src/proxy/telemetry/access-log.ts';
import { ProxyMetrics } from '../../src/proxy/telemetry/metrics.ts';
import { SpanExporter, type SpanTransport } from '../../src/proxy/telemetry/trace-export.ts';
import { Tracer } from '../../src/proxy/telemetry/trace-tracer.ts';
import { decodeTraceRequest, type ReceivedSpan } from '../helpers/otlp-receiver.ts';

interface Exchange {
  inbound: boolean;
  method: string;
  path: string;
  authority: string;
  status: number;
  failed: boolean;
  error: string | undefined;
  grpc: string | undefined;
  userAgent: string;
}

const exchange: fc.Arbitrary<Exchange> = fc.record({
  inbound: fc.boolean(),
  method: fc.constantFrom('GET', 'POST', 'DELETE'),
  path: fc.constantFrom('/', '/a/b', '/q?x=1', '/long/path/with/segments?and=a&query=2'),
  authority: fc.constantFrom('', 'web', 'web.default:8080', '[::1]:9000', 'bad:port:x'),
  status: fc.constantFrom(0, 200, 404, 503),
  failed: fc.boolean(),
  error: fc.option(fc.constantFrom('upstream-reset', 'response-timeout'), { nil: undefined }),
  grpc: fc.option(fc.constantFrom('0', '14', 'x'), { nil: undefined }),
  userAgent: fc.constantFrom('', 'curl/8'),
});

/** The attributes a span of `x` must carry, and nothing else. */
function expected(x: Exchange): Record<string, string | number> {
  const want: Record<string, string | number> = {
    'http.request.method': x.method,
    'url.path': x.path.split('?')[0]!,
    'url.scheme': 'http',
    'network.protocol.name': 'http',
    'trellis.direction': x.inbound ? 'inbound' : 'outbound',
    'trellis.protocol': 'http1',
  };
  if (x.status > 0) want['http.response.status_code'] = x.status;
  if (x.authority === 'web') Object.assign(want, { 'server.address': 'web', 'server.port': 80 });
  if (x.authority === 'web.default:8080')
    Object.assign(want, { 'server.address': 'web.default', 'server.port': 8080 });
  if (x.authority === '[::1]:9000') Object.assign(want, { 'server.address': '[::1]', 'server.port': 9000 });
  if (x.authority === 'bad:port:x')
    Object.assign(want, { 'server.address': 'bad:port:x', 'server.port': 80 });
  want['network.peer.address'] = '10.0.0.1';
  if (x.userAgent !== '') want['user_agent.original'] = x.userAgent;
  want[x.inbound ? 'trellis.client.identity' : 'trellis.server.identity'] = 'spiffe://t/peer';
  want[x.inbound ? 'trellis.server.identity' : 'trellis.client.identity'] = 'spiffe://t/own';
  if (!x.inbound) want['trellis.retry_count'] = 0;
  if (x.error !== undefined) want['trellis.proxy_error'] = x.error;
  if (x.grpc !== undefined && x.grpc !== 'x')
    Object.assign(want, { 'rpc.system': 'grpc', 'rpc.grpc.status_code': Number(x.grpc) });
  return want;
}

test('every span carries its own exchange attributes, whatever the spans before it had', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(exchange, { minLength: 1, maxLength: 30 }), async (xs) => {
      const received: ReceivedSpan[] = [];
      const transport: SpanTransport = {
        send: async (body) => {
          received.push(...decodeTraceRequest(Buffer.from(body)));
          return null;
        },
        close: () => undefined,
      };
      const sink = new SpanExporter(
        {
          collector: 'test',
          resource: { attributes: [], scopeName: 'trellis-proxy', scopeVersion: '' },
          maxQueuedSpans: 1000,
          maxBatchSpans: 7,
          batchDelayMs: 1,
          exportTimeoutMs: 1000,
          metrics: new ProxyMetrics(),
          log: silentLogger,
        },
        transport,
      );
      const tracer = new Tracer({ sampleRatio: 1, sink, ownIdentity: () => 'spiffe://t/own' });
      const ids: string[] = [];
      for (const x of xs) {
        const fields = x.userAgent === '' ? [] : ['User-Agent', x.userAgent];
        const span = tracer.start(fields, x.inbound ? 'inbound' : 'outbound', '10.0.0.1', 'spiffe://t/peer')!;
        ids.push(span.spanId);
        const entry: AccessLogEntry = {
          ts: 0,
          direction: x.inbound ? 'inbound' : 'outbound',
          protocol: 'http1',
          method: x.method,
          authority: x.authority,
          path: x.path,
          status: x.status,
          durationMs: 1,
          bytesIn: 0,
          bytesOut: 0,
          peer: '',
          ...(x.error !== undefined ? { error: x.error } : {}),
        };
        tracer.finish(span, x.status, x.failed, { accessLogEntry: () => entry, grpcStatus: x.grpc });
      }
      await tracer.close();
      assert.deepEqual(
        received.map((s) => s.spanId),
        ids,
      );
      received.forEach((s, i) => assert.deepEqual(s.attributes, expected(xs[i]!), `span ${i}`));
    }),
    { numRuns: 200 },
  );
});
