// The embedded trace collector's parts (src/control/traces/): the decoder reads what the proxy's
// encoder writes and refuses malformed bytes with a WireError only (never another exception, never
// a hang); per-span memory is capped (strings, attributes); the store keeps its bounds on traces,
// spans and spans per trace, counting what it lets go; its memory at the default bounds is
// measured.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import fc from 'fast-check';
import { WireError } from '../../src/api/wire-reader.ts';
import {
  decodeExportTraceRequest,
  MAX_ATTRIBUTES,
  MAX_STRING,
  type ReceivedSpan,
} from '../../src/control/traces/otlp-decode.ts';
import { DEFAULT_TRACE_STORE_LIMITS, TraceStore } from '../../src/control/traces/store.ts';
import { encodeTraceRequest } from '../../src/proxy/telemetry/trace-otlp.ts';
import { TraceSpan, type SpanAttribute } from '../../src/proxy/telemetry/trace-span.ts';

function encoded(attributes: SpanAttribute[], name = 'GET', parent: string | null = null): Buffer {
  const span = new TraceSpan(
    'client',
    '4bf92f3577b34da6a3ce929d0e0e4736',
    '00f067aa0ba902b7',
    parent,
    '',
    1000.5,
    '',
  );
  return encodeTraceRequest(
    {
      attributes: [
        ['service.name', 'web'],
        ['service.namespace', 'shop'],
      ],
      scopeName: 'trellis-proxy',
      scopeVersion: '1',
    },
    [{ span, name, endMs: 1003, attributes: attributes.flat(), error: false, statusMessage: '' }],
  );
}

test('the decoder reads the proxy encoder, capping strings and attributes', () => {
  const [s] = decodeExportTraceRequest(
    encoded([
      ['http.response.status_code', 200],
      ['url.path', '/x'],
    ]),
  );
  assert.deepEqual(s, {
    traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
    spanId: '00f067aa0ba902b7',
    parentSpanId: '',
    name: 'GET',
    kind: 'client',
    startMs: 1000.5,
    endMs: 1003,
    attributes: { 'http.response.status_code': 200, 'url.path': '/x' },
    error: false,
    statusMessage: '',
    service: 'web',
    namespace: 'shop',
  });
  const many = Array.from({ length: 100 }, (_, i): SpanAttribute => [`k${i}`, 'v'.repeat(5000)]);
  const [big] = decodeExportTraceRequest(encoded(many, 'n'.repeat(5000)));
  assert.equal(Object.keys(big!.attributes).length, MAX_ATTRIBUTES);
  assert.equal(big!.name.length, MAX_STRING);
  assert.equal((big!.attributes.k0 as string).length, MAX_STRING);
  const [proto] = decodeExportTraceRequest(encoded([['__proto__', 'x']]));
  assert.equal(Object.getPrototypeOf(proto!.attributes), Object.prototype);
});

test('malformed bytes: a WireError, nothing else', () => {
  const good = encoded([['a', 'b']]);
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(), fc.nat(255), (junk, at, byte) => {
      for (const body of [
        Buffer.from(junk),
        Buffer.from(good).fill(byte, at % good.length, (at % good.length) + 1),
        good.subarray(0, at % good.length),
      ]) {
        try {
          decodeExportTraceRequest(body);
        } catch (err) {
          assert.ok(err instanceof WireError, String(err));
        }
      }
    }),
    { numRuns: 2000 },
  );
});

function span(trace: number, i: number): ReceivedSpan {
  return {
    traceId: trace.toString(16).padStart(32, '0'),
    spanId: (i + 1).toString(16).padStart(16, '0'),
    parentSpanId: i === 0 ? '' : i.toString(16).padStart(16, '0'),
    name: 'GET',
    kind: i % 2 === 0 ? 'client' : 'server',
    startMs: 1000 + i,
    endMs: 1010 + i,
    attributes: { 'url.path': `/items/${trace}`, 'http.response.status_code': 200 },
    error: false,
    statusMessage: '',
    service: i % 2 === 0 ? 'client' : 'server',
    namespace: 'default',
  };
}

test('the store keeps its bounds and counts what it lets go', () => {
  const store = new TraceStore({ maxTraces: 3, maxSpans: 10, maxSpansPerTrace: 4 });
  for (let t = 1; t <= 5; t++) store.add([span(t, 0), span(t, 1)]);
  assert.deepEqual(store.size, { traces: 3, spans: 6 });
  assert.equal(store.spansDropped, 4);
  assert.deepEqual(
    store.list(undefined, 10).map((s) => s.trace_id.slice(-1)),
    ['5', '4', '3'],
  );
  store.add([0, 1, 2, 3, 4, 5].map((i) => span(3, i))); // trace 3 reaches its own bound
  assert.equal(store.trace('3'.padStart(32, '0'))!.length, 4);
  assert.deepEqual(
    store.list(undefined, 1).map((s) => s.trace_id.slice(-1)),
    ['3'],
    'most recently added to first',
  );
  // Order now 4, 5, 3 (2 + 2 + 4 spans). A fourth trace: the least recent (4) goes.
  store.add([0, 1, 2].map((i) => span(6, i)));
  assert.equal(store.trace('4'.padStart(32, '0')), null);
  assert.deepEqual(store.size, { traces: 3, spans: 9 });
  // Past maxSpans (10): the least recent trace (3, 4 spans) goes.
  store.add([2, 3].map((i) => span(5, i)));
  assert.equal(store.trace('3'.padStart(32, '0')), null);
  assert.deepEqual(store.size, { traces: 2, spans: 7 });
  assert.equal(store.spansDropped, 4 + 4 + 2 + 4, 'evicted, past the per-trace bound, evicted');
  const summary = store.list('server', 10)[0]!;
  assert.equal(summary.root_service, 'client');
  assert.deepEqual(summary.services, ['client', 'server']);
  assert.equal(store.list('nobody', 10).length, 0);
});

test("a workload's traces: those with a span of its name in its namespace, newest first", () => {
  const store = new TraceStore();
  const inNamespace = (trace: number, i: number, namespace: string, service: string): ReceivedSpan => ({
    ...span(trace, i),
    namespace,
    service,
  });
  store.add([inNamespace(1, 0, 'shop', 'web'), inNamespace(1, 1, 'shop', 'api')]);
  store.add([inNamespace(2, 0, 'blog', 'web')]); // the same name in another namespace
  store.add([inNamespace(3, 0, 'blog', 'front'), inNamespace(3, 1, 'shop', 'web')]);
  store.add([inNamespace(4, 0, 'shop', 'api')]);
  const ids = (list: { trace_id: string }[]) => list.map((t) => Number.parseInt(t.trace_id, 16));
  assert.deepEqual(ids(store.list('web', 10, 'shop')), [3, 1]);
  assert.deepEqual(ids(store.list('web', 10, 'blog')), [2]);
  assert.deepEqual(ids(store.list('web', 10)), [3, 2, 1], 'without a namespace: any');
  assert.deepEqual(ids(store.list('web', 1, 'shop')), [3], 'the limit counts the matches');
  assert.deepEqual(ids(store.list(undefined, 10, 'shop')), [4, 3, 1], 'a namespace alone');
  assert.deepEqual(ids(store.list('front', 10, 'shop')), [], 'a name of one namespace, a span of another');
  assert.equal(store.list('web', 10, 'shop')[0]!.root_service, 'front', 'the summary is of the whole trace');
});

test('memory: the store full at its default bounds', () => {
  v8.setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  gc();
  const before = process.memoryUsage().heapUsed;
  const store = new TraceStore();
  // Spans as decoded from the wire: every string its own.
  for (let t = 0; t < DEFAULT_TRACE_STORE_LIMITS.maxTraces * 2; t++) {
    const spans: ReceivedSpan[] = [];
    for (let i = 0; i < 25; i++) {
      const s = span(t, i);
      spans.push({
        ...s,
        name: `GET ${t}`.slice(0, 3),
        attributes: {
          ...s.attributes,
          'user_agent.original': `curl/${t}.${i}`,
          'trellis.client.identity': `spiffe://cluster.local/ns/default/sa/c${t % 50}`,
        },
      });
    }
    store.add(spans);
  }
  gc();
  const grown = process.memoryUsage().heapUsed - before;
  assert.ok(store.size.spans <= DEFAULT_TRACE_STORE_LIMITS.maxSpans);
  assert.ok(store.size.traces <= DEFAULT_TRACE_STORE_LIMITS.maxTraces);
  console.log(
    `# store full (${store.size.traces} traces, ${store.size.spans} spans): ${(grown / 1024 / 1024).toFixed(1)} MiB heap`,
  );
  assert.ok(grown < 64 * 1024 * 1024, `${grown} bytes`);
});
