// `trellis stat --from/--to` in the control plane, fed the pages of real ProxyMetrics (the proxy's
// per-peer families) with a fake clock: the inbound view keeps to the clients with the peer's
// registered identities, the outbound view to the endpoints discovery named after the peer (its
// workload or one of its instances); restarts; the errors for an unknown or unmeshed peer; and the
// bound on the peers a snapshot keeps.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError } from '../../src/core/errors.ts';
import { parsePrometheusText } from '../../src/core/prom-parse.ts';
import { MetricsCollector, type ScrapeTarget } from '../../src/control/metrics/collector.ts';
import { MAX_PEERS_PER_SNAPSHOT, peerSnapshot } from '../../src/control/metrics/peer-snapshot.ts';
import type { StatView } from '../../src/control/metrics/stat-view.ts';
import type { Endpoint } from '../../src/core/endpoints.ts';
import { ProxyMetrics } from '../../src/proxy/telemetry/metrics.ts';
import { MAX_PEERS } from '../../src/core/peer-metric-names.ts';

const ID_A = 'spiffe://cluster.local/ns/default/sa/client-a';
const ID_B = 'spiffe://cluster.local/ns/default/sa/client-b';

function target(instance: string, workload: string, identity: string | null): ScrapeTarget {
  return { namespace: 'default', workload, instance, admin: `${instance}:4191`, meshed: true, identity };
}

function endpointOf(instance: string): Endpoint {
  return {
    address: { host: '127.0.0.1', port: 1 },
    weight: 1,
    labels: { namespace: 'default', service: 'server', workload: instance },
    meshed: true,
    identity: null,
    protocolHint: 'h2',
  };
}

function world() {
  let now = 1_000_000;
  const proxies = new Map<string, ProxyMetrics>();
  const targets: ScrapeTarget[] = [
    target('server-1', 'server', 'spiffe://cluster.local/ns/default/sa/server'),
    target('client-a-1', 'client-a', ID_A),
    target('client-b-1', 'client-b', ID_B),
    target('legacy-1', 'legacy', null),
  ];
  for (const t of targets) proxies.set(t.admin!, new ProxyMetrics());
  const collector = new MetricsCollector({
    listTargets: async () => targets,
    fetchMetrics: async (admin) => proxies.get(admin)?.render() ?? null,
    windowMs: 10_000,
    now: () => now,
  });
  return {
    collector,
    proxy: (instance: string) => proxies.get(`${instance}:4191`)!,
    restart(instance: string) {
      proxies.set(`${instance}:4191`, new ProxyMetrics());
    },
    async scrape(afterMs = 2000) {
      now += afterMs;
      await collector.collect();
    },
  };
}

const inbound = (name: string): StatView => ({
  direction: 'inbound',
  windowMs: 10_000,
  peer: { namespace: 'default', name },
});
const outbound = (name: string): StatView => ({
  direction: 'outbound',
  windowMs: 10_000,
  peer: { namespace: 'default', name },
});

test('--from keeps to the requests of the clients with the peer identity; --to to its endpoints', async () => {
  const w = world();
  await w.scrape();
  const server = w.proxy('server-1').peers;
  const a = server.inbound(ID_A);
  const b = server.inbound(ID_B);
  for (let i = 0; i < 30; i++) a.record(200, 2, false);
  for (let i = 0; i < 10; i++) b.record(i < 5 ? 200 : 503, 200, false);
  for (let i = 0; i < 7; i++) server.inbound(null).record(200, 1, false);
  const toServer = w.proxy('client-a-1').peers.outbound(endpointOf('server-1'));
  for (let i = 0; i < 20; i++) toServer.record(200, 2, false);
  w.proxy('client-a-1').peers.outbound(null).record(200, 2, false); // elsewhere
  await w.scrape(10_000);

  const fromA = w.collector.stats('default', inbound('client-a')).find((s) => s.name === 'server')!;
  assert.equal(fromA.from, 'default/client-a');
  assert.equal(fromA.rps, 3);
  assert.equal(fromA.success, 1);
  assert.ok(fromA.latency_p99_ms! <= 2, `p99 ${fromA.latency_p99_ms}`);
  assert.equal(fromA.tcp_conn, null, 'not counted by peer');
  assert.equal(fromA.read_bytes_per_s, null);
  const fromB = w.collector.stats('default', inbound('client-b')).find((s) => s.name === 'server')!;
  assert.equal(fromB.rps, 1);
  assert.equal(fromB.success, 0.5);
  assert.ok(fromB.latency_p50_ms! > 100, `p50 ${fromB.latency_p50_ms}`);
  // Without --from: every client, the unauthenticated one too.
  const all = w.collector.stats('default', { direction: 'inbound', windowMs: 10_000 });
  assert.equal(all.find((s) => s.name === 'server')!.from, undefined);

  // --to matches the endpoint discovery named after the server's instance (one machine).
  const toStat = w.collector.stats('default', outbound('server'));
  const fromClientA = toStat.find((s) => s.name === 'client-a')!;
  assert.equal(fromClientA.to, 'default/server');
  assert.equal(fromClientA.rps, 2);
  assert.equal(toStat.find((s) => s.name === 'client-b')!.rps, 0);
});

test('--from and --to name registered workloads; --from needs one with an identity', async () => {
  const w = world();
  await w.scrape();
  assert.throws(
    () => w.collector.stats(undefined, inbound('nobody')),
    (e: unknown) =>
      e instanceof ConfigError && /--from: no workload nobody in namespace default/.test(e.message),
  );
  assert.throws(() => w.collector.stats(undefined, outbound('nobody')), /--to: no workload nobody/);
  assert.throws(
    () => w.collector.stats(undefined, inbound('legacy')),
    /--from: workload default\/legacy has no identity/,
  );
  // --to an unmeshed workload is fine: discovery names its endpoints all the same.
  assert.equal(w.collector.stats(undefined, outbound('legacy')).length, 4);
});

test('a proxy that restarted counts its new totals by peer', async () => {
  const w = world();
  await w.scrape();
  for (let i = 0; i < 50; i++) w.proxy('server-1').peers.inbound(ID_A).record(200, 1, false);
  await w.scrape();
  w.restart('server-1');
  for (let i = 0; i < 4; i++) w.proxy('server-1').peers.inbound(ID_A).record(200, 1, false);
  await w.scrape();
  const stat = w.collector.stats('default', inbound('client-a')).find((s) => s.name === 'server')!;
  assert.equal(stat.rps, 4 / 4);
});

test('a snapshot keeps every peer of a proxy past its bound; a page with more keeps the first, counted', () => {
  const m = new ProxyMetrics();
  for (let i = 0; i < MAX_PEERS + 40; i++) m.peers.inbound(`spiffe://t/ns/x/sa/c-${i}`).record(200, 1, false);
  const full = peerSnapshot(parsePrometheusText(m.render()), 'inbound', 0);
  assert.equal(full.peers.size, MAX_PEERS + 1, 'every client with series, and "other"');
  assert.equal(full.dropped, 0);
  assert.equal(full.peers.get('other')!.responses, 40);
  assert.equal(full.bounds.length, 20, '19 bounds and +Inf');

  const extra = 37;
  const lines = Array.from(
    { length: MAX_PEERS_PER_SNAPSHOT + extra },
    (_, i) => `trellis_inbound_peer_response_total{client_id="c-${i}",classification="success"} 1`,
  );
  const snapshot = peerSnapshot(parsePrometheusText(lines.join('\n') + '\n'), 'inbound', 0);
  assert.equal(snapshot.peers.size, MAX_PEERS_PER_SNAPSHOT);
  assert.equal(snapshot.dropped, extra);
  assert.ok(snapshot.peers.has('c-0'));
});

test('a snapshot shares the totals of the peers that did not change with the one before', () => {
  const m = new ProxyMetrics();
  const busy = m.peers.inbound('spiffe://t/ns/x/sa/busy');
  m.peers.inbound('spiffe://t/ns/x/sa/idle').record(200, 1, false);
  busy.record(200, 1, false);
  const first = peerSnapshot(parsePrometheusText(m.render()), 'inbound', 0);
  busy.record(500, 1, false);
  const second = peerSnapshot(parsePrometheusText(m.render()), 'inbound', 2000, first);
  assert.equal(second.peers.get('spiffe://t/ns/x/sa/idle'), first.peers.get('spiffe://t/ns/x/sa/idle'));
  assert.notEqual(second.peers.get('spiffe://t/ns/x/sa/busy'), first.peers.get('spiffe://t/ns/x/sa/busy'));
  assert.equal(second.peers.get('spiffe://t/ns/x/sa/busy')!.responses, 2);
  assert.equal(second.bounds, first.bounds);
});
