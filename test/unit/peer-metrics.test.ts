// The proxy's golden metrics by peer (src/proxy/telemetry/peer-metrics.ts): inbound by client
// identity, outbound by the endpoint's workload, classified as trellis_response_total is, bounded
// at MAX_PEERS per direction with the rest under "other" (counted), one series object per
// connection or endpoint, and a page promtool accepts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { ProxyMetrics } from '../../src/proxy/telemetry/metrics.ts';
import { MAX_PEERS } from '../../src/proxy/telemetry/peer-metrics.ts';
import type { Endpoint } from '../../src/core/endpoints.ts';
import { recordExchange } from '../../src/proxy/telemetry/exchange-record.ts';
import { createLogger } from '../../src/core/log.ts';

function endpoint(namespace: string, workload: string, host = '10.0.0.1'): Endpoint {
  return {
    address: { host, port: 80 },
    weight: 1,
    labels: { namespace, workload },
    meshed: true,
    identity: null,
    protocolHint: 'unknown',
  };
}

/** The sample lines of `family` (without HELP/TYPE), value by labels. */
function samples(page: string, family: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of page.split('\n')) {
    if (!line.startsWith(`${family}{`)) continue;
    const at = line.lastIndexOf(' ');
    out.set(line.slice(family.length, at), Number(line.slice(at + 1)));
  }
  return out;
}

test('inbound by client identity, outbound by endpoint workload, classified like trellis_response_total', () => {
  const m = new ProxyMetrics();
  const a = m.peers.inbound('spiffe://cluster.local/ns/default/sa/a');
  assert.equal(m.peers.inbound('spiffe://cluster.local/ns/default/sa/a'), a, 'one series per identity');
  a.record(200, 3, false);
  a.record(503, 3, false);
  a.record(0, 3, false); // no response
  m.peers.inbound(null).record(200, 1, false);
  const server = endpoint('shop', 'server');
  m.peers.outbound(server).record(204, 2, false);
  m.peers.outbound(server).record(200, 2, true); // failed (e.g. grpc-status != 0)
  m.peers.outbound(null).record(200, 2, false);
  const page = m.render();
  assert.deepEqual(Object.fromEntries(samples(page, 'trellis_inbound_peer_response_total')), {
    '{client_id="spiffe://cluster.local/ns/default/sa/a",classification="success"}': 1,
    '{client_id="spiffe://cluster.local/ns/default/sa/a",classification="failure"}': 2,
    '{client_id="unauthenticated",classification="success"}': 1,
    '{client_id="unauthenticated",classification="failure"}': 0,
  });
  assert.deepEqual(Object.fromEntries(samples(page, 'trellis_outbound_peer_response_total')), {
    '{dst_namespace="",dst_workload="unknown",classification="success"}': 1,
    '{dst_namespace="",dst_workload="unknown",classification="failure"}': 0,
    '{dst_namespace="shop",dst_workload="server",classification="success"}': 1,
    '{dst_namespace="shop",dst_workload="server",classification="failure"}': 1,
  });
  assert.equal(
    samples(page, 'trellis_inbound_peer_response_latency_seconds_count').get(
      '{client_id="spiffe://cluster.local/ns/default/sa/a"}',
    ),
    3,
  );
});

test('recordExchange counts the exchange under its peer series', () => {
  const m = new ProxyMetrics();
  const peerSeries = m.peers.inbound('spiffe://t/ns/x/sa/c');
  recordExchange({ metrics: m, accessLog: null }, 'inbound', 'h2', 200, 4, false, {
    accessLogEntry: () => assert.fail('no access log'),
    peerSeries,
  });
  assert.equal(
    samples(m.render(), 'trellis_inbound_peer_response_total').get(
      '{client_id="spiffe://t/ns/x/sa/c",classification="success"}',
    ),
    1,
  );
});

test('the peers are bounded per direction: past MAX_PEERS they share "other", counted and logged', () => {
  const lines: string[] = [];
  const m = new ProxyMetrics({
    log: createLogger({ level: 'info', write: (l) => lines.push(l), rateLimit: null }),
  });
  const extra = 150;
  for (let i = 0; i < MAX_PEERS + extra; i++) {
    m.peers.inbound(`spiffe://t/ns/x/sa/client-${i}`).record(200, 1, false);
  }
  // Outbound: the undiscovered series is one of the bound's peers.
  const endpoints = Array.from({ length: MAX_PEERS + extra }, (_, i) => endpoint('ns', `w-${i}`));
  for (const e of endpoints) m.peers.outbound(e).record(200, 1, false);
  // An endpoint object seen again finds its series without counting another overflow.
  for (const e of endpoints.slice(-10)) m.peers.outbound(e).record(200, 1, false);
  const page = m.render();
  const inbound = samples(page, 'trellis_inbound_peer_response_total');
  assert.equal(inbound.size, (MAX_PEERS + 1) * 2, '1,000 clients and "other", two classifications each');
  assert.equal(inbound.get('{client_id="other",classification="success"}'), extra);
  const outbound = samples(page, 'trellis_outbound_peer_response_total');
  assert.equal(outbound.size, (MAX_PEERS + 1) * 2);
  assert.equal(
    outbound.get('{dst_namespace="",dst_workload="other",classification="success"}'),
    extra + 1 + 10,
  );
  assert.deepEqual(Object.fromEntries(samples(page, 'trellis_peer_overflow_total')), {
    '{direction="inbound"}': extra,
    '{direction="outbound"}': extra + 1,
  });
  // Said once per direction in the burst (the log's own throttle: one line per 10 s).
  assert.deepEqual(
    lines
      .map((l) => JSON.parse(l) as { direction: string; peer: string; bound: number })
      .map((l) => [l.direction, l.peer, l.bound]),
    [
      ['inbound', `spiffe://t/ns/x/sa/client-${MAX_PEERS}`, MAX_PEERS],
      ['outbound', `ns/w-${MAX_PEERS - 1}`, MAX_PEERS],
    ],
  );
  // What the proxy remembers is bounded too, not only the series.
  const remembered = (m.peers as unknown as { inboundPeers: { byKey: Map<string, unknown> } }).inboundPeers
    .byKey;
  assert.equal(remembered.size, MAX_PEERS);
});

test('promtool check metrics accepts the per-peer families', (t) => {
  if (!existsSync('/usr/bin/promtool')) {
    t.skip('promtool is not installed');
    return;
  }
  const m = new ProxyMetrics();
  m.peers.inbound('spiffe://cluster.local/ns/a/sa/b').record(200, 12, false);
  m.peers.inbound(null).record(500, 1, false);
  m.peers.outbound(endpoint('a', 'b')).record(200, 3, false);
  m.peers.outbound(null).record(0, 3, true);
  const run = spawnSync('/usr/bin/promtool', ['check', 'metrics'], { input: m.render(), encoding: 'utf8' });
  assert.equal(run.status, 0, run.stdout + run.stderr);
  assert.equal((run.stdout + run.stderr).trim(), '');
});
