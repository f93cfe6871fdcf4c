// The live tap's parts without a mesh: the filter's query (round trip, never throws), the JSON
// lines reader (any split, bounded lines), the CLI's reading of stream lines (never throws, only
// well-typed values), the proxy's hub (rate cap, bounded taps, a slow reader on a real socket
// that does not read: its buffer stays bounded and the drops are counted), the admin route's
// refusal of a peer that is not on loopback, and the fan-out's choice of proxies.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import fc from 'fast-check';
import {
  EMPTY_TAP_FILTER,
  parseTapFilter,
  TAP_HARD_MAX_RPS,
  tapFilterQuery,
  tapMatches,
  type TapFilter,
} from '../../src/core/tap-filter.ts';
import { NdjsonReader } from '../../src/core/ndjson.ts';
import { readTapLine, exchangeText } from '../../src/cli/tap-lines.ts';
import { TopTable } from '../../src/cli/top-table.ts';
import { TapHub, type TapSink } from '../../src/proxy/telemetry/tap-hub.ts';
import type { DescribedExchange, ExchangeTap } from '../../src/proxy/telemetry/exchange-record.ts';
import { recordExchange } from '../../src/proxy/telemetry/exchange-record.ts';
import { tapRoute } from '../../src/proxy/admin/tap-route.ts';
import { parseTapRequest, tapTargets, withDestination } from '../../src/control/tap/tap-api.ts';
import { silentLogger } from '../../src/core/log.ts';

const filterArb: fc.Arbitrary<TapFilter> = fc.record({
  method: fc.option(fc.constantFrom('GET', 'POST', 'DELETE', 'X-CUSTOM'), { nil: null }),
  pathPrefix: fc.option(
    fc.string({ maxLength: 40 }).map((s) => `/${s}`),
    { nil: null },
  ),
  authority: fc.option(fc.string({ minLength: 1, maxLength: 40 }), { nil: null }),
  direction: fc.option(fc.constantFrom('inbound' as const, 'outbound' as const), { nil: null }),
  toHosts: fc.array(fc.string({ minLength: 1, maxLength: 20 }), { maxLength: 4 }),
  toAddresses: fc.array(fc.string({ minLength: 1, maxLength: 20 }), { maxLength: 4 }),
  maxRps: fc.integer({ min: 1, max: TAP_HARD_MAX_RPS }),
});

test('tap filter: a query written by tapFilterQuery reads back the same filter', () => {
  fc.assert(
    fc.property(filterArb, (filter) => {
      // (fast-check's records have no prototype: compare plain copies)
      assert.deepEqual(
        { ...(parseTapFilter(new URLSearchParams(tapFilterQuery(filter))) as TapFilter) },
        { ...filter },
      );
    }),
  );
});

test('tap filter: any query reads as a filter or a message, never a throw', () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 200 }), (query) => {
      const out = parseTapFilter(new URLSearchParams(query));
      if (typeof out !== 'string') assert.ok(out.maxRps >= 1 && out.maxRps <= TAP_HARD_MAX_RPS);
    }),
  );
  for (const [query, message] of [
    ['max_rps=0', /max_rps/],
    [`max_rps=${TAP_HARD_MAX_RPS + 1}`, /max_rps/],
    ['method=GET&method=POST', /given twice/],
    ['path=nope', /start with/],
    ['color=red', /unknown parameter 'color'/],
    ['direction=sideways', /direction/],
  ] as const) {
    assert.match(parseTapFilter(new URLSearchParams(query)) as string, message);
  }
});

test('tap filter: --to matches outbound exchanges by authority host or endpoint address', () => {
  const to = { ...EMPTY_TAP_FILTER, toHosts: ['web'], toAddresses: ['10.0.0.1:8080'] };
  const e = {
    direction: 'outbound' as const,
    method: 'GET',
    path: '/',
    authority: 'web.ns.svc:80',
    destination: '',
  };
  assert.equal(tapMatches(to, e), true);
  assert.equal(tapMatches(to, { ...e, authority: 'webby:80' }), false);
  assert.equal(tapMatches(to, { ...e, authority: '127.0.0.1:4140', destination: '10.0.0.1:8080' }), true);
  assert.equal(tapMatches(to, { ...e, direction: 'inbound' }), false);
  assert.equal(tapMatches({ ...EMPTY_TAP_FILTER, pathPrefix: '/api' }, { ...e, path: '/ap' }), false);
});

test('ndjson: objects come out whole however the bytes are split; long lines are skipped and counted', () => {
  const objArb = fc.dictionary(
    fc.string({ maxLength: 8 }),
    fc.oneof(fc.string(), fc.integer(), fc.boolean()),
    {
      maxKeys: 5,
    },
  );
  fc.assert(
    fc.property(fc.array(objArb, { maxLength: 10 }), fc.array(fc.nat(), { maxLength: 10 }), (objs, cuts) => {
      const bytes = Buffer.from(objs.map((o) => JSON.stringify(o) + '\n').join(''), 'utf8');
      const got: unknown[] = [];
      const reader = new NdjsonReader(1 << 16, (o) => got.push(o));
      const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
      let at = 0;
      for (const p of [...points, bytes.length]) {
        reader.push(bytes.subarray(at, p));
        at = p;
      }
      reader.end();
      assert.equal(JSON.stringify(got), JSON.stringify(objs));
    }),
  );
  const got: unknown[] = [];
  const reader = new NdjsonReader(32, (o) => got.push(o));
  reader.push(Buffer.from(`{"a":"${'x'.repeat(100)}"}\n[1]\nnot json\n{"ok":1}\n`));
  reader.push(Buffer.from(`{"b":"${'y'.repeat(20)}`));
  reader.push(Buffer.from(`${'y'.repeat(20)}"}\n{"tail":true}`));
  reader.end();
  assert.deepEqual(got, [{ ok: 1 }, { tail: true }]);
  assert.deepEqual(reader.counts, { tooLong: 2, malformed: 2 });
});

test('tap lines: any JSON object reads as a well-typed line or null, and prints without throwing', () => {
  const anyValue = fc.oneof(fc.string(), fc.double(), fc.integer(), fc.boolean(), fc.constant(null));
  const lineArb = fc.record(
    {
      type: fc.constantFrom('exchange', 'error', 'drops', 'started', 'other'),
      direction: fc.oneof(fc.constantFrom('inbound', 'outbound'), anyValue),
      path: fc.oneof(fc.string(), anyValue),
      status: anyValue,
      latency_ms: anyValue,
      source_identity: anyValue,
      tls: anyValue,
      grpc_status: anyValue,
      route: anyValue,
      route_rule: anyValue,
      rate_capped: anyValue,
      namespace: anyValue,
      instance: anyValue,
    },
    { requiredKeys: ['type'] },
  );
  fc.assert(
    fc.property(lineArb, (o) => {
      const line = readTapLine(o as Record<string, unknown>);
      if (line === null) return;
      if (line.type === 'exchange') {
        assert.ok(Number.isFinite(line.status) && line.status >= 0);
        assert.ok(Number.isFinite(line.latency_ms) && line.latency_ms >= 0);
        assert.equal(typeof line.tls, 'boolean');
        const text = exchangeText(line, true);
        assert.ok(!text.includes('\n'));
        new TopTable(4).add(line);
      }
      if (line.type === 'drops') assert.ok(Number.isInteger(line.rateCapped));
    }),
  );
});

test('tap lines: -o wide names the route and rule that forwarded an exchange, and none without one', () => {
  const base = { type: 'exchange', direction: 'outbound', path: '/api', status: 200 };
  const routed = readTapLine({
    ...base,
    route: 'shop/web split',
    route_kind: 'HTTPRoute',
    route_rule: 'api',
  });
  assert.ok(routed !== null && routed.type === 'exchange');
  assert.deepEqual(
    [routed.route, routed.route_kind, routed.route_rule],
    ['shop/web split', 'HTTPRoute', 'api'],
  );
  assert.match(exchangeText(routed, true), / route=shop\/web\\x20split route-rule=api$/);
  assert.doesNotMatch(exchangeText(routed, false), /route=/);
  const bare = readTapLine({ ...base, route: null, route_kind: 7 });
  assert.ok(bare !== null && bare.type === 'exchange');
  assert.deepEqual([bare.route, bare.route_kind, bare.route_rule], [null, null, null]);
  assert.doesNotMatch(exchangeText(bare, true), /route/);
});

/** An exchange as recordExchange sees it. */
function exchange(path: string): DescribedExchange {
  return {
    accessLogEntry: () => ({
      ts: Date.now(),
      direction: 'outbound',
      protocol: 'http1',
      method: 'GET',
      authority: 'web:80',
      path,
      status: 200,
      durationMs: 1.5,
      bytesIn: 0,
      bytesOut: 12,
      peer: '127.0.0.1:5000',
    }),
    tapPeer: () => ({ address: '127.0.0.1:4143', identity: 'spiffe://td/ns/default/sa/web' }),
  };
}

function hubWith(now: () => number, maxTaps = 8, maxBufferedBytes = 1024) {
  const metrics: { tap: ExchangeTap | null; responseFinished(): void } = { tap: null, responseFinished() {} };
  const hub = new TapHub({
    maxTaps,
    maxBufferedBytes,
    ownIdentity: () => 'spiffe://td/ns/default/sa/client',
    attach: (tap) => (metrics.tap = tap),
    log: silentLogger,
    now,
    reportMs: 60_000,
  });
  const records = { metrics, accessLog: null };
  return {
    hub,
    metrics,
    record: (path: string) => recordExchange(records, 'outbound', 'http1', 200, 1.5, false, exchange(path)),
  };
}

function memorySink(): TapSink & { lines: string[] } {
  const lines: string[] = [];
  return { lines, write: (l: string) => lines.push(l), writableLength: 0, destroy: () => {} };
}

test('tap hub: attached only while a tap is; filters; at most maxRps events a second, the rest counted', () => {
  let now = 0;
  const { hub, metrics, record } = hubWith(() => now);
  record('/before'); // no tap: nothing is built
  assert.equal(metrics.tap, null);
  const sink = memorySink();
  const sub = hub.subscribe({ ...EMPTY_TAP_FILTER, pathPrefix: '/a', maxRps: 3 }, sink);
  assert.ok(typeof sub !== 'string');
  assert.equal(metrics.tap, hub);
  for (let i = 0; i < 10; i++) record('/a');
  record('/b');
  assert.equal(sink.lines.length, 3);
  const event = JSON.parse(sink.lines[0]!) as Record<string, unknown>;
  assert.equal(event.path, '/a');
  assert.equal(event.tls, true);
  assert.equal(event.source_identity, 'spiffe://td/ns/default/sa/client');
  assert.equal(event.destination_identity, 'spiffe://td/ns/default/sa/web');
  assert.equal(event.destination, '127.0.0.1:4143');
  assert.equal(sub.rateCapped, 8); // 7 over the cap, and /b while at it
  now += 1000;
  record('/a');
  assert.equal(sink.lines.length, 4);
  assert.match(hub.metrics(), /trellis_tap_dropped_total\{reason="rate-cap"\} 8/);
  hub.unsubscribe(sub);
  assert.equal(metrics.tap, null);
});

test('tap hub: one tap more than maxTaps is refused and counted', () => {
  const { hub } = hubWith(() => 0, 2);
  assert.ok(typeof hub.subscribe(EMPTY_TAP_FILTER, memorySink()) !== 'string');
  assert.ok(typeof hub.subscribe(EMPTY_TAP_FILTER, memorySink()) !== 'string');
  assert.match(hub.subscribe(EMPTY_TAP_FILTER, memorySink()) as string, /2 taps attached already/);
  assert.match(hub.metrics(), /trellis_tap_refused_total\{reason="too-many"\} 1/);
});

test('tap hub: a reader that does not read keeps a bounded buffer; the events beyond it are dropped and counted', async (t) => {
  // A real socket whose other end never reads.
  const server = net.createServer((s) => s.pause());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => server.close());
  const socket = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  await once(socket, 'connect');
  t.after(() => socket.destroy());
  let now = 0;
  const max = 64 * 1024;
  const { hub, record } = hubWith(() => now, 8, max);
  const sub = hub.subscribe({ ...EMPTY_TAP_FILTER, maxRps: TAP_HARD_MAX_RPS }, socket);
  assert.ok(typeof sub !== 'string');
  const long = `/${'p'.repeat(900)}`;
  let peak = 0;
  for (let round = 0; round < 200; round++) {
    now += 1000; // a new second each round: the cap is not what stops these
    for (let i = 0; i < 100; i++) record(long);
    peak = Math.max(peak, socket.writableLength);
    await new Promise((resolve) => setImmediate(resolve));
  }
  // 20,000 events of ~1.3 KB (26 MB) were offered; the socket held at most the bound and one line.
  assert.ok(peak <= max + 2048, `buffered ${peak} bytes`);
  assert.ok(sub.slowConsumer > 10_000, `dropped ${sub.slowConsumer}`);
  assert.equal(sub.sent + sub.slowConsumer, 20_000);
  assert.match(
    hub.metrics(),
    new RegExp(`trellis_tap_dropped_total\\{reason="slow-consumer"\\} ${sub.slowConsumer}`),
  );
});

test('admin /tap: a peer that is not on loopback is refused and counted', () => {
  const { hub } = hubWith(() => 0);
  const route = tapRoute(hub, silentLogger);
  for (const peer of ['198.18.0.7', '::ffff:198.18.0.7', '10.0.0.1', undefined]) {
    const res = route.handle({
      method: 'GET',
      path: '/tap',
      query: '',
      peer,
      host: '127.0.0.1:4191',
      authorization: null,
    });
    assert.equal(res.status, 403, String(peer));
    assert.equal(res.takeOver, undefined);
  }
  assert.match(hub.metrics(), /trellis_tap_refused_total\{reason="not-loopback"\} 4/);
  const ok = route.handle({
    method: 'GET',
    path: '/tap',
    query: 'method=GET',
    peer: '127.0.0.1',
    host: 'localhost:4191',
    authorization: null,
  });
  assert.equal(ok.status, 200);
  assert.equal(typeof ok.takeOver, 'function');
  const bad = route.handle({
    method: 'GET',
    path: '/tap',
    query: 'max_rps=0',
    peer: '::1',
    host: '[::1]:4191',
    authorization: null,
  });
  assert.equal(bad.status, 400);
});

test('tap API: the proxies of a resource, and --to as hosts and addresses', () => {
  const targets = [
    {
      namespace: 'default',
      workload: 'web',
      instance: 'web-1',
      admin: '127.0.0.1:1',
      meshed: true,
      addresses: ['127.0.0.1:8080'],
    },
    {
      namespace: 'default',
      workload: 'web',
      instance: 'web-2',
      admin: '127.0.0.1:2',
      meshed: true,
      addresses: ['127.0.0.1:8081'],
    },
    { namespace: 'other', workload: 'web', instance: 'web-3', admin: '127.0.0.1:3', meshed: true },
    { namespace: 'default', workload: 'api', instance: 'api-1', admin: null, meshed: false },
  ];
  const req = parseTapRequest(new URLSearchParams('namespace=default&workload=web&to=web&max_rps=7'));
  assert.ok(typeof req !== 'string');
  assert.deepEqual(
    tapTargets(targets, req).map((t) => t.instance),
    ['web-1', 'web-2'],
  );
  const filter = withDestination(req, targets);
  assert.deepEqual(filter.toHosts, ['web', 'web.default']);
  assert.deepEqual(filter.toAddresses, ['127.0.0.1:8080', '127.0.0.1:8081']);
  assert.equal(filter.maxRps, 7);
  assert.match(parseTapRequest(new URLSearchParams('workload=a&workload=b')) as string, /given twice/);
  assert.match(parseTapRequest(new URLSearchParams('to_namespace=x')) as string, /without 'to'/);
  assert.match(parseTapRequest(new URLSearchParams('bogus=1')) as string, /unknown parameter/);
});

test('tap API: a proxy that cannot be tapped is named at once, with why; then the stream ends', async (t) => {
  const { createServer } = await import('node:http');
  const { serveTap } = await import('../../src/control/tap/tap-api.ts');
  const closedPort = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
  const targets = [
    {
      namespace: 'default',
      workload: 'web',
      instance: 'web-1',
      admin: `127.0.0.1:${closedPort}`,
      meshed: true,
    },
    { namespace: 'default', workload: 'web', instance: 'web-2', admin: null, meshed: false },
  ];
  const taps = { open: 0 };
  const server = createServer((req, res) => {
    void serveTap(req, res, new URL(req.url!, 'http://x').searchParams, async () => targets, taps);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => server.close());
  const base = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  const started = performance.now();
  const res = await fetch(`${base}/api/tap?workload=web`);
  assert.equal(res.status, 200);
  const lines = (await res.text())
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.ok(performance.now() - started < 3000);
  assert.deepEqual(lines.map((l) => [l.type, l.instance]).sort(), [
    ['error', 'web-1'],
    ['error', 'web-2'],
  ]);
  assert.match(String(lines.find((l) => l.instance === 'web-1')!.error), /cannot connect/);
  assert.equal(taps.open, 0);
  const none = await fetch(`${base}/api/tap?workload=nosuch`);
  assert.equal(none.status, 404);
  assert.match(((await none.json()) as { error: string }).error, /no proxy matches workload nosuch/);
});

test('a proxy that refuses a tap and never ends the refusal is named within the answer time', async (t) => {
  const { createServer } = await import('node:http');
  const { openProxyTap, PROXY_TAP_CONNECT_TIMEOUT_MS } = await import('../../src/control/tap/proxy-tap.ts');
  // A refusal's head, then a byte every 200 ms: the body never ends (the idle timeout never fires).
  const timers = new Set<NodeJS.Timeout>();
  const server = createServer((_req, res) => {
    res.writeHead(403, { 'content-type': 'text/plain' });
    res.write('not allowed');
    let sent = 0;
    const timer = setInterval(() => {
      if (++sent > 100)
        clearInterval(timer); // bounded: 20 s at most
      else res.write('.');
    }, 200);
    timers.add(timer);
    res.on('close', () => clearInterval(timer));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    for (const timer of timers) clearInterval(timer);
    server.closeAllConnections();
    server.close();
  });
  const started = performance.now();
  const error = await new Promise<string | null>((resolve) => {
    openProxyTap(`127.0.0.1:${(server.address() as net.AddressInfo).port}`, '', {
      onObject: () => {},
      onEnd: resolve,
    });
  });
  const elapsed = performance.now() - started;
  assert.match(String(error), /^HTTP 403: not allowed/);
  assert.ok(elapsed < PROXY_TAP_CONNECT_TIMEOUT_MS + 2000, `named after ${elapsed} ms`);
});

test('tap API: a proxy that streams lines other than exchanges to a reader that does not read is held to the same buffer bound', async (t) => {
  // A hostile proxy (on Kubernetes, any pod can run one at its registered tap address) answers the
  // tap with 200 and then lines of its own type, as fast as it can; the operator's `trellis tap`
  // is paused (piped to a pager). Only exchange lines were dropped past MAX_BUFFERED_BYTES: the
  // rest were all queued towards the reader, in the control plane's memory.
  const { createServer } = await import('node:http');
  const { serveTap, MAX_BUFFERED_BYTES } = await import('../../src/control/tap/tap-api.ts');
  const LINES = 600;
  const line = JSON.stringify({ type: 'noise', pad: 'x'.repeat(60_000) }) + '\n';
  const proxy = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    res.write(JSON.stringify({ type: 'started', max_rps: 100 }) + '\n');
    let sent = 0;
    const more = (): void => {
      while (sent < LINES) {
        sent++;
        if (!res.write(line)) return void res.once('drain', more);
      }
      res.end();
    };
    more();
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const targets = [
    {
      namespace: 'default',
      workload: 'web',
      instance: 'web-1',
      admin: `127.0.0.1:${(proxy.address() as net.AddressInfo).port}`,
      meshed: true,
    },
  ];
  let tapResponse: import('node:http').ServerResponse | null = null;
  const ended = new Promise<void>((resolve) => {
    const server = createServer((req, res) => {
      tapResponse = res;
      // res.end() is called once every proxy's tap ended; no event says so ('finish' waits for the
      // reader to take the bytes, which it never does).
      const end = res.end.bind(res);
      res.end = ((...args: Parameters<typeof res.end>) => {
        const returned = end(...args);
        resolve();
        return returned;
      }) as typeof res.end;
      void serveTap(req, res, new URL(req.url!, 'http://x').searchParams, async () => targets, { open: 0 });
    });
    t.after(() => {
      server.closeAllConnections();
      server.close();
      proxy.closeAllConnections();
      proxy.close();
    });
    server.listen(0, '127.0.0.1', () => {
      const reader = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1', () => {
        reader.write('GET /api/tap?workload=web HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n');
        reader.pause(); // and never reads
      });
      t.after(() => reader.destroy());
    });
  });
  // The proxy's stream ends, the control plane relays what it read and ends the response.
  await ended;
  const queued = (tapResponse as import('node:http').ServerResponse | null)!.writableLength;
  assert.ok(
    queued < 2 * MAX_BUFFERED_BYTES,
    `${(queued / 1e6).toFixed(1)} MB queued towards a reader that does not read (bound ${MAX_BUFFERED_BYTES})`,
  );
});
