// The metrics collector's window math with fake scrapes and a fake clock: rates and success over
// the window, latency quantiles from histogram deltas, restarts, instances summed per workload,
// unreachable proxies, and workloads that leave.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import {
  fetchMetricsPage,
  MetricsCollector,
  type ScrapeTarget,
} from '../../src/control/metrics/collector.ts';

interface FakeProxy {
  ok: number;
  failed: number;
  /** Observations per bucket bound in seconds (not cumulative). */
  latency: Map<number, number>;
  tcp: number;
  down: boolean;
  /** Inbound bytes read and written (closed connections). */
  read: number;
  written: number;
  /** Outbound responses (all successes). */
  outbound: number;
}

const BOUNDS = [0.001, 0.01, 0.1, 1, Infinity];

function fakeProxy(): FakeProxy {
  return { ok: 0, failed: 0, latency: new Map(), tcp: 0, down: false, read: 0, written: 0, outbound: 999 };
}

/** Serves `n` inbound responses taking `seconds` each (and some outbound noise to ignore). */
function serve(proxy: FakeProxy, n: number, seconds: number, success = true): void {
  if (success) proxy.ok += n;
  else proxy.failed += n;
  const bound = BOUNDS.find((b) => seconds <= b)!;
  proxy.latency.set(bound, (proxy.latency.get(bound) ?? 0) + n);
}

/** The proxy's /metrics page, in the shape of src/proxy/telemetry/metrics.ts. */
function page(proxy: FakeProxy): string {
  const lines = [
    '# TYPE trellis_response_total counter',
    `trellis_response_total{direction="inbound",protocol="http1",status_code="200",classification="success"} ${proxy.ok}`,
    `trellis_response_total{direction="inbound",protocol="http1",status_code="500",classification="failure"} ${proxy.failed}`,
    `trellis_response_total{direction="outbound",protocol="http1",status_code="200",classification="success"} ${proxy.outbound}`,
    `trellis_tcp_read_bytes_total{direction="inbound"} ${proxy.read}`,
    `trellis_tcp_write_bytes_total{direction="inbound"} ${proxy.written}`,
    `trellis_tcp_read_bytes_total{direction="outbound"} 7`,
    `trellis_tcp_open_connections{direction="inbound"} ${proxy.tcp}`,
    `trellis_tcp_open_connections{direction="outbound"} 50`,
  ];
  let cumulative = 0;
  for (const bound of BOUNDS) {
    cumulative += proxy.latency.get(bound) ?? 0;
    const le = bound === Infinity ? '+Inf' : String(bound);
    lines.push(`trellis_response_latency_seconds_bucket{direction="inbound",le="${le}"} ${cumulative}`);
    lines.push(`trellis_response_latency_seconds_bucket{direction="outbound",le="${le}"} 1000`);
  }
  return lines.join('\n') + '\n';
}

function harness(windowMs = 10_000) {
  let now = 1_000_000;
  const proxies = new Map<string, FakeProxy>();
  let targets: ScrapeTarget[] = [];
  const collector = new MetricsCollector({
    listTargets: async () => targets,
    fetchMetrics: async (admin) => {
      const proxy = proxies.get(admin);
      return proxy === undefined || proxy.down ? null : page(proxy);
    },
    windowMs,
    now: () => now,
  });
  return {
    collector,
    proxies,
    setTargets(list: ScrapeTarget[]) {
      targets = list;
    },
    advance(ms: number) {
      now += ms;
    },
  };
}

const target = (
  instance: string,
  admin: string | null,
  workload = 'web',
  namespace = 'shop',
): ScrapeTarget => ({
  namespace,
  workload,
  instance,
  admin,
  meshed: admin !== null,
});

test('rps, success and latency quantiles come from the deltas over the window', async () => {
  const h = harness();
  const proxy = fakeProxy();
  serve(proxy, 500, 0.0005); // before the first scrape: not part of any delta
  h.proxies.set('a:1', proxy);
  h.setTargets([target('web-1', 'a:1')]);
  await h.collector.collect();
  assert.deepEqual(h.collector.stats(), [
    {
      namespace: 'shop',
      name: 'web',
      meshed: '1/1',
      success: null,
      rps: null,
      latency_p50_ms: null,
      latency_p95_ms: null,
      latency_p99_ms: null,
      tcp_conn: 0,
      direction: 'inbound',
      window_s: null,
      read_bytes_per_s: null,
      write_bytes_per_s: null,
    },
  ]);

  serve(proxy, 90, 0.05); // 90 in (0.01, 0.1]
  serve(proxy, 10, 0.5, false); // 10 failures in (0.1, 1]
  proxy.tcp = 3;
  h.advance(2000);
  await h.collector.collect();
  const [stat] = h.collector.stats();
  assert.equal(stat!.rps, 50); // 100 responses in 2 s
  assert.equal(stat!.success, 0.9);
  assert.equal(stat!.tcp_conn, 3);
  // p50: rank 50 of 90 in (10 ms, 100 ms] -> 10 + 90 * 50/90 = 60 ms.
  assert.equal(stat!.latency_p50_ms, 60);
  // p95: rank 95, 5 of 10 into (100 ms, 1 s] -> 550 ms; p99: 9 of 10 -> 910 ms.
  assert.equal(stat!.latency_p95_ms, 550);
  assert.equal(stat!.latency_p99_ms, 910);
});

test('the window slides: traffic older than the window stops counting', async () => {
  const h = harness(4000);
  const proxy = fakeProxy();
  h.proxies.set('a:1', proxy);
  h.setTargets([target('web-1', 'a:1')]);
  await h.collector.collect();
  serve(proxy, 40, 0.002);
  for (let i = 0; i < 4; i++) {
    h.advance(2000);
    await h.collector.collect();
  }
  // 8 s later with no more traffic: the base is at most a window (plus one interval) old.
  const [idle] = h.collector.stats();
  assert.equal(idle!.rps, 0);
  assert.equal(idle!.success, null);
  assert.equal(idle!.latency_p50_ms, null);
});

test('a proxy that restarted (counters went down) counts its new totals', async () => {
  const h = harness();
  h.proxies.set('a:1', fakeProxy());
  serve(h.proxies.get('a:1')!, 1000, 0.002);
  h.setTargets([target('web-1', 'a:1')]);
  await h.collector.collect();
  const fresh = fakeProxy();
  serve(fresh, 20, 0.002);
  h.proxies.set('a:1', fresh);
  h.advance(4000);
  await h.collector.collect();
  const [stat] = h.collector.stats();
  assert.equal(stat!.rps, 5);
  assert.equal(stat!.success, 1);
});

test('instances of a workload are summed; unreachable and unmeshed ones lower MESHED', async () => {
  const h = harness();
  const [a, b, c] = [fakeProxy(), fakeProxy(), fakeProxy()];
  h.proxies.set('a:1', a);
  h.proxies.set('b:1', b);
  h.proxies.set('c:1', c);
  h.setTargets([
    target('web-1', 'a:1'),
    target('web-2', 'b:1'),
    target('web-3', null), // registered without a proxy
    target('db-1', 'c:1', 'db'),
    target('web-1', 'c:1', 'web', 'other'),
  ]);
  await h.collector.collect();
  serve(a, 30, 0.0005);
  serve(b, 10, 0.5, false);
  a.tcp = 2;
  b.tcp = 1;
  h.advance(1000);
  await h.collector.collect();
  const shop = h.collector.stats('shop');
  assert.deepEqual(
    shop.map((s) => [s.name, s.meshed, s.rps, s.success, s.tcp_conn]),
    [
      ['db', '1/1', 0, null, 0],
      ['web', '2/3', 40, 0.75, 3],
    ],
  );
  assert.equal(shop[1]!.latency_p50_ms, 0.67); // rank 20 of 30 in [0, 1 ms]
  assert.deepEqual(
    h.collector.stats().map((s) => `${s.namespace}/${s.name}`),
    ['other/web', 'shop/db', 'shop/web'],
  );

  b.down = true;
  h.advance(1000);
  await h.collector.collect();
  assert.equal(h.collector.stats('shop')[1]!.meshed, '1/3');

  h.setTargets([target('db-1', 'c:1', 'db')]); // the others left
  await h.collector.collect();
  assert.deepEqual(
    h.collector.stats().map((s) => s.name),
    ['db'],
  );
});

test('a failing target list is survived; close() stops the rounds', async () => {
  let calls = 0;
  const collector = new MetricsCollector({
    listTargets: async () => {
      calls++;
      throw new Error('state folder gone');
    },
    intervalMs: 10,
  });
  collector.start();
  await new Promise((resolve) => setTimeout(resolve, 60));
  await collector.close();
  const seen = calls;
  assert.ok(seen >= 2, `several rounds ran (${seen})`);
  await new Promise((resolve) => setTimeout(resolve, 40));
  assert.equal(calls, seen, 'no round after close');
  assert.deepEqual(collector.stats(), []);
});

test('outbound view, -t windows and bytes per second: each window from the newest snapshot back', async () => {
  const h = harness();
  const proxy = fakeProxy();
  h.proxies.set('a:1', proxy);
  h.setTargets([target('web-1', 'a:1')]);
  await h.collector.collect();
  // 60 rounds of 2 s (2 minutes): 10 inbound responses, 100 bytes read, 5 outbound responses each.
  for (let i = 0; i < 60; i++) {
    serve(proxy, 10, 0.002);
    proxy.read += 100;
    proxy.written += 400;
    proxy.outbound += 5;
    h.advance(2000);
    await h.collector.collect();
  }
  const [inbound] = h.collector.stats();
  assert.deepEqual(
    [
      inbound!.direction,
      inbound!.window_s,
      inbound!.rps,
      inbound!.read_bytes_per_s,
      inbound!.write_bytes_per_s,
    ],
    ['inbound', 10, 5, 50, 200],
  );
  const [minute] = h.collector.stats(undefined, { direction: 'inbound', windowMs: 60_000 });
  assert.equal(minute!.window_s, 60);
  assert.equal(minute!.rps, 5);
  const [out] = h.collector.stats('shop', { direction: 'outbound', windowMs: 30_000 });
  assert.deepEqual(
    [out!.direction, out!.window_s, out!.rps, out!.success, out!.tcp_conn],
    ['outbound', 30, 2.5, 1, 50],
  );
  assert.equal(out!.read_bytes_per_s, 0, 'the outbound bytes did not change');
  // Longer than the history so far (2 min): the whole history, and says so.
  const [all] = h.collector.stats(undefined, { direction: 'inbound', windowMs: 600_000 });
  assert.equal(all!.window_s, 120);
  assert.equal(all!.rps, 5);
});

test('a proxy that trickles its page holds a scrape 2 s at most, so the other proxies are still scraped', async (t) => {
  // An admin port that sends its head, then a byte every 500 ms (a hostile pod's, or a proxy half
  // stuck): node's socket timeout is for silence only, so the scrape (and with it every later round
  // of every proxy: a round starts when the last ended) went on as long as the bytes kept coming.
  const sockets = new Set<net.Socket>();
  const slow = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    const timer = setInterval(() => res.write('#'), 500);
    res.on('close', () => clearInterval(timer));
  });
  slow.on('connection', (s) => sockets.add(s));
  await new Promise<void>((resolve) => slow.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    for (const s of sockets) s.destroy();
    slow.close();
  });
  const admin = `127.0.0.1:${(slow.address() as net.AddressInfo).port}`;
  const started = Date.now();
  assert.equal(await fetchMetricsPage(admin), null);
  const took = Date.now() - started;
  assert.ok(took >= 1900 && took < 3500, `${took} ms`);

  let fastScrapes = 0;
  const collector = new MetricsCollector({
    listTargets: async () => [target('slow-1', admin), target('fast-1', 'fast:1')],
    fetchMetrics: (a) =>
      a === admin ? fetchMetricsPage(a) : (fastScrapes++, Promise.resolve(page(fakeProxy()))),
    intervalMs: 10,
  });
  collector.start();
  await new Promise((resolve) => setTimeout(resolve, 5000));
  await collector.close();
  assert.ok(fastScrapes >= 2, `the fast proxy was scraped ${fastScrapes} times in 5 s`);
});
