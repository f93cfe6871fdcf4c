// `trellis edges` computed from fake /metrics pages: edges seen by the client's proxy, the
// server's, or both; identities mapped to the registered workloads (and to the SPIFFE ID's
// namespace and account when no registration holds them); plain connections as unsecured edges
// with the proxy's reason; the namespace filter; instances that leave; the per-instance bound; the
// collector handing its scrapes over; the CLI's table; and the dashboard's script parsing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { spiffeId } from '../../src/core/spiffe.ts';
import { parsePrometheusText } from '../../src/core/prom-parse.ts';
import { MetricsCollector, type ScrapeTarget } from '../../src/control/metrics/collector.ts';
import {
  EdgeTracker,
  MAX_PEERS_PER_INSTANCE,
  workloadOfIdentity,
  type Edge,
} from '../../src/control/metrics/edges.ts';
import { edgesTable } from '../../src/cli/edges.ts';
import { DASHBOARD_SCRIPT } from '../../src/control/dashboard/app-script.ts';
import { ProxyMetrics } from '../../src/proxy/telemetry/metrics.ts';

const id = (ns: string, sa: string): string => spiffeId('cluster.local', ns, sa);

function target(workload: string, namespace = 'shop', extra: Partial<ScrapeTarget> = {}): ScrapeTarget {
  return {
    namespace,
    workload,
    instance: `${workload}-1`,
    admin: `127.0.0.1:${workload.length}`,
    meshed: true,
    identity: id(namespace, workload),
    addresses: [`127.0.0.1:${1000 + workload.length}`],
    ...extra,
  };
}

/** A proxy's page with mTLS connections by peer (direction -> identity -> count) and plain ones. */
function page(
  mesh: { outbound?: Record<string, number>; inbound?: Record<string, number> },
  plain: Record<string, [string, number]> = {},
  requests = 0,
): ReturnType<typeof parsePrometheusText> {
  const lines: string[] = [
    `trellis_response_total{direction="inbound",protocol="http1",status_code="200",classification="success"} ${requests}`,
    `trellis_response_total{direction="outbound",protocol="http1",status_code="200",classification="success"} 999`,
  ];
  for (const [direction, peers] of Object.entries(mesh))
    for (const [peer, n] of Object.entries(peers))
      lines.push(`trellis_mesh_connections_total{direction="${direction}",peer_identity="${peer}"} ${n}`);
  for (const [destination, [reason, n]] of Object.entries(plain))
    lines.push(`trellis_plain_outbound_total{destination="${destination}",reason="${reason}"} ${n}`);
  return parsePrometheusText(lines.join('\n') + '\n');
}

const keyOf = (e: Edge): string => `${e.src}>${e.dst}`;

test('an edge seen from both sides is one edge, secured, with both identities', () => {
  const edges = new EdgeTracker();
  edges.observe(target('web'), page({ outbound: { [id('shop', 'api')]: 3 } }));
  edges.observe(target('api'), page({ inbound: { [id('shop', 'web')]: 3 } }, {}, 42));
  assert.deepEqual(edges.edges(), [
    {
      src_namespace: 'shop',
      src: 'web',
      dst_namespace: 'shop',
      dst: 'api',
      client_identity: id('shop', 'web'),
      server_identity: id('shop', 'api'),
      secured: true,
      no_tls_reason: null,
      connections: 3,
      seen_by: 'both',
    },
  ]);
  assert.deepEqual(edges.workloads(), [
    { namespace: 'shop', name: 'api', identities: [id('shop', 'api')], requests_total: 42, instances: 1 },
    { namespace: 'shop', name: 'web', identities: [id('shop', 'web')], requests_total: 0, instances: 1 },
  ]);
});

test('edges seen by one side only; unknown identities name their namespace and account', () => {
  const edges = new EdgeTracker();
  // web calls billing (in another namespace, not scraped); an outsider calls web.
  edges.observe(
    target('web'),
    page({ outbound: { [id('pay', 'billing')]: 2 }, inbound: { 'not-spiffe': 1 } }),
  );
  const all = edges.edges();
  assert.deepEqual(
    all.map((e) => [keyOf(e), e.src_namespace, e.dst_namespace, e.seen_by, e.secured]),
    [
      ['not-spiffe>web', '', 'shop', 'server', true],
      ['web>billing', 'shop', 'pay', 'client', true],
    ],
  );
  assert.equal(all[0]!.client_identity, 'not-spiffe');
  assert.equal(all[0]!.server_identity, id('shop', 'web'));
  assert.deepEqual(edges.edges('pay').map(keyOf), ['web>billing'], 'either end in the namespace');
  assert.deepEqual(edges.edges('nowhere'), []);
});

test('plain connections are unsecured edges with the reason, mapped by the registered address', () => {
  const edges = new EdgeTracker();
  const legacy = target('legacy', 'shop', { admin: null, meshed: false, identity: null });
  edges.observe(legacy, null); // registered without a proxy: known by its address only
  edges.observe(
    target('web'),
    page({}, { '127.0.0.1:1006': ['not-meshed', 4], '10.0.0.9:80': ['no-identity', 1] }),
  );
  const all = edges.edges();
  assert.deepEqual(
    all.map((e) => [
      keyOf(e),
      e.secured,
      e.no_tls_reason,
      e.client_identity,
      e.server_identity,
      e.connections,
    ]),
    [
      ['web>10.0.0.9:80', false, 'no-identity', null, null, 1],
      ['web>legacy', false, 'not-meshed', null, null, 4],
    ],
  );
});

test('instances of a workload add up; instances that leave are forgotten', () => {
  let now = 0;
  const edges = new EdgeTracker({ staleMs: 10_000, now: () => now });
  edges.observe(target('web'), page({ outbound: { [id('shop', 'api')]: 2 } }));
  edges.observe(target('web', 'shop', { instance: 'web-2' }), page({ outbound: { [id('shop', 'api')]: 5 } }));
  assert.equal(edges.edges()[0]!.connections, 7);
  assert.equal(edges.workloads()[0]!.instances, 2);
  now = 6000;
  edges.observe(target('web'), null); // unanswered scrape: what it said last holds
  now = 12_000;
  assert.equal(edges.edges()[0]!.connections, 2, 'web-2 was not scraped for 10 s');
  now = 30_000;
  assert.deepEqual(edges.edges(), []);
});

test(`at most ${MAX_PEERS_PER_INSTANCE} peers are kept per instance; the proxy's "other" is no peer`, () => {
  const edges = new EdgeTracker();
  const outbound: Record<string, number> = { other: 9 };
  for (let i = 0; i < MAX_PEERS_PER_INSTANCE + 50; i++) outbound[id('shop', `s${i}`)] = 1;
  edges.observe(target('web'), page({ outbound }));
  assert.equal(edges.edges().length, MAX_PEERS_PER_INSTANCE);
  assert.ok(!edges.edges().some((e) => e.dst === 'other'));
});

test('the collector hands each scrape to onScrape, with null for a target without a proxy', async () => {
  const seen: [string, number | null][] = [];
  const collector = new MetricsCollector({
    listTargets: async () => [target('web'), target('legacy', 'shop', { admin: null })],
    fetchMetrics: async () => 'trellis_mesh_connections_total{direction="outbound",peer_identity="x"} 1\n',
    onScrape: (t, samples) => seen.push([t.workload, samples === null ? null : samples.length]),
  });
  await collector.collect();
  assert.deepEqual(seen.sort(), [
    ['legacy', null],
    ['web', 1],
  ]);
});

test('workloadOfIdentity: the namespace and account of any Trellis SPIFFE ID; never throws', () => {
  const segment = fc.stringMatching(/^[a-z0-9]([a-z0-9.-]{0,20})$/);
  fc.assert(
    fc.property(segment, segment, segment, (domain, ns, sa) => {
      assert.deepEqual(workloadOfIdentity(spiffeId(domain, ns, sa)), { namespace: ns, name: sa });
    }),
  );
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 80 }), (s) => {
      const w = workloadOfIdentity(s);
      assert.ok(w.namespace === '' ? w.name === s : s.includes(`/ns/${w.namespace}/sa/${w.name}`));
    }),
  );
});

test('the CLI table: SECURED √ or × (reason); -o wide adds identities, connections and who saw it', () => {
  const edges = new EdgeTracker();
  edges.observe(
    target('web'),
    page({ outbound: { [id('shop', 'api')]: 3 } }, { '10.0.0.9:80': ['not-meshed', 1] }),
  );
  assert.deepEqual(edgesTable(edges.edges(), false), [
    'SRC  DST          SRC_NS  DST_NS  SECURED',
    'web  10.0.0.9:80  shop    -       × (not-meshed)',
    'web  api          shop    shop    √',
  ]);
  const wide = edgesTable(edges.edges(), true);
  assert.match(wide[0]!, /CLIENT_ID\s+SERVER_ID\s+CONNECTIONS\s+SEEN_BY$/);
  assert.match(
    wide[2]!,
    /spiffe:\/\/cluster\.local\/ns\/shop\/sa\/web\s+spiffe:\/\/cluster\.local\/ns\/shop\/sa\/api\s+3\s+client$/,
  );
});

test("the dashboard's script is valid JavaScript and sets no markup from data", () => {
  assert.doesNotThrow(() => new Function(DASHBOARD_SCRIPT));
  assert.doesNotMatch(DASHBOARD_SCRIPT, /innerHTML|outerHTML|insertAdjacentHTML|document\.write/);
});

test('the proxy counts plain outbound traffic by endpoint address and reason, bounded', () => {
  const metrics = new ProxyMetrics();
  const endpoint = { address: { host: '127.0.0.1', port: 8080 } };
  metrics.plainOutbound(endpoint, 'not-meshed');
  metrics.plainOutbound(endpoint, 'not-meshed');
  metrics.plainOutbound({ address: { host: '::1', port: 81 } }, 'no-identity');
  const samples = parsePrometheusText(metrics.render()).filter(
    (s) => s.name === 'trellis_plain_outbound_total',
  );
  assert.deepEqual(
    samples.map((s) => [s.labels.destination, s.labels.reason, s.value]),
    [
      ['127.0.0.1:8080', 'not-meshed', 2],
      ['[::1]:81', 'no-identity', 1],
    ],
  );
  // Past 1000 addresses the rest count as "other": the page stays bounded.
  for (let i = 0; i < 1100; i++)
    metrics.plainOutbound({ address: { host: '10.0.0.1', port: 1000 + i } }, 'not-meshed');
  const after = parsePrometheusText(metrics.render()).filter(
    (s) => s.name === 'trellis_plain_outbound_total',
  );
  assert.equal(after.length, 1001);
  const other = after.find((s) => s.labels.destination === 'other');
  assert.equal(other?.value, 102);
});
