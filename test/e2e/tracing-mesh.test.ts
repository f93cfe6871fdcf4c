// Distributed tracing across two real proxies with mutual TLS (app -> client proxy -> mTLS ->
// server proxy -> app): both export to an OTLP/HTTP receiver written in the test, which decodes
// the official ExportTraceServiceRequest. A sampled request in W3C or B3 form is joined (the
// client proxy's CLIENT span is the caller's child, the server proxy's SERVER span the CLIENT
// span's child) and the app sees the SERVER span as its parent; a request without context
// starts a trace at ratio 1 and not at ratio 0; an unsampled one passes through untouched. The
// same two hops export over OTLP/gRPC to a grpc-js receiver written in the test, and when that
// receiver stalls the export queue keeps its bound, drops and counts, and traffic flows on.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import { idOf, identityFor, startMeshWorld } from '../helpers/mesh-pki.ts';
import { metric, portOf } from '../helpers/running-proxy.ts';
import { startOtlpGrpcReceiver, startOtlpReceiver, type ReceivedSpan } from '../helpers/otlp-receiver.ts';

function get(port: number, url: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, path: url, headers, agent: false, timeout: 10_000 },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end();
  });
}

const T = '4bf92f3577b34da6a3ce929d0e0e4736';
const P = '00f067aa0ba902b7';

test(
  'two meshed proxies join W3C and B3 traces, start new ones by ratio, and tell the app its parent',
  { timeout: 120_000 },
  async (t) => {
    const receiver = await startOtlpReceiver();
    t.after(() => receiver.close());
    const world = await startMeshWorld();
    t.after(() => world.close());
    const seen = new Map<string, http.IncomingHttpHeaders>();
    const app = http.createServer((req, res) => {
      seen.set(req.url ?? '', req.headers);
      res.statusCode = req.url === '/fail' ? 500 : 200;
      res.end('hello');
    });
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    t.after(() => app.close());
    const appPort = (app.address() as { port: number }).port;

    const tracing = (ratio: number) => ({
      tracing: { collector: receiver.url, sampleRatio: ratio, batchDelayMs: 20 },
    });
    const server = await world.proxy({
      identity: await identityFor(world, 'web-server'),
      app: appPort,
      config: { ...tracing(0), workload: { name: 'web', namespace: 'default' } },
    });
    await world.register('web', 'web-1', portOf(server, 'inbound'), idOf('web-server'));
    const client = await world.proxy({ identity: await identityFor(world, 'caller'), config: tracing(0) });
    const sampler = await world.proxy({ identity: await identityFor(world, 'sampler'), config: tracing(1) });
    const out = portOf(client, 'outbound');

    const byPath = (spans: ReceivedSpan[], path: string, kind: string) =>
      spans.find((s) => s.attributes['url.path'] === path && s.kind === kind);
    const pair = async (path: string) => {
      const spans = await receiver.waitFor(
        (s) =>
          byPath(s, path, 'SPAN_KIND_CLIENT') !== undefined &&
          byPath(s, path, 'SPAN_KIND_SERVER') !== undefined,
      );
      return { c: byPath(spans, path, 'SPAN_KIND_CLIENT')!, s: byPath(spans, path, 'SPAN_KIND_SERVER')! };
    };

    // W3C, sampled, with a tracestate.
    assert.equal(
      await get(out, 'http://web.default:8080/w3c?q=1', {
        traceparent: `00-${T}-${P}-01`,
        tracestate: 'vendor=abc, other=1',
        'user-agent': 'trace-test/1',
      }),
      200,
    );
    {
      const { c, s } = await pair('/w3c');
      assert.equal(c.traceId, T);
      assert.equal(c.parentSpanId, P, "the CLIENT span is the caller's child");
      assert.equal(s.traceId, T);
      assert.equal(s.parentSpanId, c.spanId, "the SERVER span is the CLIENT span's child");
      assert.equal(
        seen.get('/w3c?q=1')!.traceparent,
        `00-${T}-${s.spanId}-01`,
        'the app sees the SERVER span as parent',
      );
      assert.equal(seen.get('/w3c?q=1')!.tracestate, 'vendor=abc,other=1');
      assert.equal(s.traceState, 'vendor=abc,other=1');
      assert.equal(c.name, 'GET');
      for (const span of [c, s]) {
        assert.equal(span.attributes['http.request.method'], 'GET');
        assert.equal(span.attributes['url.path'], '/w3c');
        assert.equal(span.attributes['url.scheme'], 'http');
        assert.equal(span.attributes['http.response.status_code'], 200);
        assert.equal(span.attributes['user_agent.original'], 'trace-test/1');
        assert.equal(span.attributes['trellis.client.identity'], idOf('caller'));
        assert.equal(span.status.code, 'STATUS_CODE_UNSET');
        assert.ok(span.endNanos >= span.startNanos);
        assert.ok(span.startNanos > BigInt(Date.now() - 60_000) * 1_000_000n);
      }
      assert.equal(c.attributes['server.address'], 'web.default');
      assert.equal(c.attributes['server.port'], 8080);
      assert.equal(s.attributes['trellis.server.identity'], idOf('web-server'));
      assert.equal(s.attributes['network.peer.address'], '127.0.0.1');
      assert.equal(s.resource['service.name'], 'web');
      assert.equal(c.resource['service.name'], 'test');
      assert.equal(s.scope, 'trellis-proxy');
    }

    // B3 multi-header with a 64-bit trace id.
    const T64 = 'a3ce929d0e0e4736';
    assert.equal(
      await get(out, 'http://web.default:8080/b3multi', {
        'x-b3-traceid': T64,
        'x-b3-spanid': P,
        'x-b3-sampled': '1',
      }),
      200,
    );
    {
      const { c, s } = await pair('/b3multi');
      assert.equal(c.traceId, '0000000000000000' + T64);
      assert.equal(c.parentSpanId, P);
      assert.equal(s.parentSpanId, c.spanId);
      const h = seen.get('/b3multi')!;
      assert.equal(h['x-b3-traceid'], T64);
      assert.equal(h['x-b3-spanid'], s.spanId);
      assert.equal(h['x-b3-parentspanid'], c.spanId);
      assert.equal(h['x-b3-sampled'], '1');
      assert.equal(h.traceparent, undefined);
    }

    // B3 single header.
    assert.equal(await get(out, 'http://web.default:8080/b3single', { b3: `${T}-${P}-1` }), 200);
    {
      const { c, s } = await pair('/b3single');
      assert.equal(c.traceId, T);
      assert.equal(c.parentSpanId, P);
      assert.equal(s.parentSpanId, c.spanId);
      assert.equal(seen.get('/b3single')!.b3, `${T}-${s.spanId}-1-${c.spanId}`);
    }

    // Unsampled W3C and no context at ratio 0: not traced, the context passes untouched.
    const unsampled = `00-${T}-${P}-00`;
    assert.equal(await get(out, 'http://web.default:8080/unsampled', { traceparent: unsampled }), 200);
    assert.equal(await get(out, 'http://web.default:8080/ratio0'), 200);
    assert.equal(seen.get('/unsampled')!.traceparent, unsampled);
    assert.equal(seen.get('/ratio0')!.traceparent, undefined);

    // No context at ratio 1: a new trace, rooted at the CLIENT span.
    assert.equal(await get(portOf(sampler, 'outbound'), 'http://web.default:8080/ratio1'), 200);
    {
      const { c, s } = await pair('/ratio1');
      assert.equal(c.parentSpanId, '');
      assert.match(c.traceId, /^[0-9a-f]{32}$/);
      assert.equal(s.traceId, c.traceId);
      assert.equal(s.parentSpanId, c.spanId);
      assert.equal(seen.get('/ratio1')!.traceparent, `00-${c.traceId}-${s.spanId}-01`);
      assert.equal(c.attributes['trellis.client.identity'], idOf('sampler'));
    }
    // Everything before /ratio1 has been exported by now: nothing of /unsampled or /ratio0.
    assert.equal(
      receiver.spans.filter(
        (s) => s.attributes['url.path'] === '/unsampled' || s.attributes['url.path'] === '/ratio0',
      ).length,
      0,
    );

    // An app's 500 makes both spans ERROR.
    assert.equal(await get(out, 'http://web.default:8080/fail', { traceparent: `00-${T}-${P}-01` }), 500);
    {
      const { c, s } = await pair('/fail');
      assert.equal(c.status.code, 'STATUS_CODE_ERROR');
      assert.equal(s.status.code, 'STATUS_CODE_ERROR');
      assert.equal(s.attributes['http.response.status_code'], 500);
    }
    assert.deepEqual(receiver.errors, []);
    assert.equal(metric(server, 'trellis_trace_spans_dropped_total'), 0);
    assert.ok(metric(server, 'trellis_trace_spans_exported_total') >= 4);
  },
);

test(
  'HTTP/2 (gRPC) exchanges across the mesh are traced, with the gRPC status',
  { timeout: 60_000 },
  async (t) => {
    const receiver = await startOtlpReceiver();
    t.after(() => receiver.close());
    const world = await startMeshWorld();
    t.after(() => world.close());
    let seen: http2.IncomingHttpHeaders | null = null;
    const app = http2.createServer();
    app.on('stream', (stream, headers) => {
      seen = headers;
      stream.respond(
        { ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '5', 'grpc-message': 'nope' },
        { endStream: true },
      );
    });
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    t.after(() => app.close());
    const appPort = (app.address() as { port: number }).port;
    const tracing = { tracing: { collector: receiver.url, batchDelayMs: 20 } };
    const server = await world.proxy({
      identity: await identityFor(world, 'grpc-server'),
      app: appPort,
      config: tracing,
    });
    await world.register('grpc', 'grpc-1', portOf(server, 'inbound'), idOf('grpc-server'));
    const client = await world.proxy({
      identity: await identityFor(world, 'grpc-client'),
      config: { ...tracing, destinations: [{ listen: '127.0.0.1:0', target: 'grpc.default:8080' }] },
    });

    const session = http2.connect(`http://127.0.0.1:${portOf(client, 'destination-0')}`);
    t.after(() => session.close());
    const trailersOnly = await new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
      const req = session.request({
        ':method': 'POST',
        ':path': '/echo.Echo/Unary',
        'content-type': 'application/grpc',
        te: 'trailers',
        traceparent: `00-${T}-${P}-01`,
      });
      req.on('response', resolve);
      req.on('error', reject);
      req.end();
    });
    assert.equal(trailersOnly['grpc-status'], '5');
    const spans = await receiver.waitFor((s) => s.length >= 2);
    const c = spans.find((s) => s.kind === 'SPAN_KIND_CLIENT')!;
    const s = spans.find((s) => s.kind === 'SPAN_KIND_SERVER')!;
    assert.equal(c.traceId, T);
    assert.equal(c.parentSpanId, P);
    assert.equal(s.parentSpanId, c.spanId);
    assert.equal(seen!.traceparent, `00-${T}-${s.spanId}-01`);
    for (const span of [c, s]) {
      assert.equal(span.attributes['rpc.system'], 'grpc');
      assert.equal(span.attributes['rpc.grpc.status_code'], 5);
      assert.equal(span.attributes['url.path'], '/echo.Echo/Unary');
      assert.equal(span.status.code, 'STATUS_CODE_ERROR');
    }
    assert.equal(c.attributes['trellis.server.identity'], idOf('grpc-server'));
    assert.equal(s.attributes['trellis.client.identity'], idOf('grpc-client'));
  },
);

test(
  'two meshed proxies export over OTLP/gRPC: W3C and B3 traces joined with the right parents; a stalled receiver costs dropped spans, counted',
  { timeout: 120_000 },
  async (t) => {
    const receiver = await startOtlpGrpcReceiver();
    t.after(() => receiver.close());
    const world = await startMeshWorld();
    t.after(() => world.close());
    const seen = new Map<string, http.IncomingHttpHeaders>();
    const app = http.createServer((req, res) => {
      seen.set(req.url ?? '', req.headers);
      res.end('hello');
    });
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    t.after(() => app.close());
    const tracing = {
      tracing: {
        collector: receiver.url,
        batchDelayMs: 20,
        maxBatchSpans: 4,
        maxQueuedSpans: 8,
        exportTimeoutMs: 60_000,
      },
    };
    const server = await world.proxy({
      identity: await identityFor(world, 'web-server'),
      app: (app.address() as { port: number }).port,
      config: { ...tracing, workload: { name: 'web', namespace: 'default' } },
    });
    await world.register('web', 'web-1', portOf(server, 'inbound'), idOf('web-server'));
    const client = await world.proxy({ identity: await identityFor(world, 'caller'), config: tracing });
    const out = portOf(client, 'outbound');

    const T64 = 'a3ce929d0e0e4736';
    const inputs: [string, Record<string, string>, string][] = [
      ['/grpc-w3c', { traceparent: `00-${T}-${P}-01` }, T],
      [
        '/grpc-b3multi',
        { 'x-b3-traceid': T64, 'x-b3-spanid': P, 'x-b3-sampled': '1' },
        '0000000000000000' + T64,
      ],
      ['/grpc-b3single', { b3: `${T}-${P}-1` }, T],
    ];
    for (const [path, headers] of inputs)
      assert.equal(await get(out, `http://web.default:8080${path}`, headers), 200);
    const spans = await receiver.waitFor((s) =>
      inputs.every(([path]) => s.filter((x) => x.attributes['url.path'] === path).length === 2),
    );
    for (const [path, , traceId] of inputs) {
      const c = spans.find((s) => s.attributes['url.path'] === path && s.kind === 'SPAN_KIND_CLIENT')!;
      const s = spans.find((x) => x.attributes['url.path'] === path && x.kind === 'SPAN_KIND_SERVER')!;
      assert.equal(c.traceId, traceId, path);
      assert.equal(s.traceId, traceId, path);
      assert.equal(c.parentSpanId, P, `${path}: the CLIENT span is the caller's child`);
      assert.equal(s.parentSpanId, c.spanId, `${path}: the SERVER span is the CLIENT span's child`);
      assert.equal(s.resource['service.name'], 'web');
    }
    assert.equal(
      seen.get('/grpc-w3c')!.traceparent,
      `00-${T}-${spans.find((s) => s.attributes['url.path'] === '/grpc-w3c' && s.kind === 'SPAN_KIND_SERVER')!.spanId}-01`,
    );
    assert.deepEqual(receiver.errors, []);
    assert.equal(metric(client, 'trellis_trace_spans_dropped_total'), 0);

    // The receiver stalls: one batch hangs in flight, 8 spans wait, the rest are dropped and
    // counted; the requests themselves are answered as before.
    receiver.mode = 'hang';
    const requestsBefore = receiver.requests;
    for (let i = 0; i < 30; i++)
      assert.equal(
        await get(out, `http://web.default:8080/stalled-${i}`, { traceparent: `00-${T}-${P}-01` }),
        200,
      );
    for (const p of [client, server]) {
      const dropped = metric(p, 'trellis_trace_spans_dropped_total', { reason: 'queue_full' });
      // 30 spans each: at most 4 in flight and 8 queued, so at least 18 dropped.
      assert.ok(dropped >= 18, `${dropped} dropped`);
      assert.ok(dropped <= 30, `${dropped} dropped`);
    }
    assert.ok(receiver.requests > requestsBefore, 'an export was sent to the stalled receiver');
  },
);
