// Who talks to whom, for `trellis edges` (GET /api/edges) and the dashboard's topology: built
// from what every registered proxy counts on its /metrics page, as the MetricsCollector
// (collector.ts) hands each scrape over. A proxy counts the mutual TLS connections it made
// (direction="outbound") and accepted (direction="inbound") by the verified identity of the other
// side (trellis_mesh_connections_total{direction,peer_identity}, src/proxy/telemetry/metrics.ts);
// the registrations say which workload holds which identity. So an edge is seen from the client's
// side, the server's side, or both, and is secured by mTLS by construction. A client's proxy also
// counts what it sends to a discovered endpoint in plain text, by the endpoint's address and why
// (trellis_plain_outbound_total{destination,reason}: not-meshed, no-identity); the registered
// addresses say which workload that is: those edges are unsecured, with that reason.
// Counts are totals since each proxy started (a connection pool keeps connections open, so a
// window of new connections would hide busy edges). Memory: per instance at most
// MAX_PEERS_PER_INSTANCE peers are kept (the proxy itself caps its labels at 1000).
import type { PromSample } from '../../core/prom-parse.ts';
import type { ScrapeTarget } from './collector.ts';

/** One caller/callee pair of workloads. */
export interface Edge {
  readonly src_namespace: string;
  readonly src: string;
  readonly dst_namespace: string;
  readonly dst: string;
  /** The client's verified identity (null: the connection was not mTLS, or the client is unknown). */
  readonly client_identity: string | null;
  /** The server's verified identity (null: the connection was not mTLS). */
  readonly server_identity: string | null;
  /** Whether the connections of this edge are secured by mutual TLS. */
  readonly secured: boolean;
  /** Why not, when not secured (the proxy's reason, e.g. "not-meshed"); null when secured. */
  readonly no_tls_reason: string | null;
  /**
   * Secured: mTLS connections counted since the proxies started (the larger of the two sides'
   * counts). Unsecured: the requests and opaque connections the client's proxy sent in plain text.
   */
  readonly connections: number;
  /** Which proxies saw it: the client's, the server's, or both. */
  readonly seen_by: 'client' | 'server' | 'both';
}

/** Cumulative traffic of a workload, summed over its instances (totals since their proxies started). */
export interface WorkloadTraffic {
  readonly namespace: string;
  readonly name: string;
  /** The identities its instances registered with (sorted; empty when none is meshed). */
  readonly identities: readonly string[];
  /** Inbound HTTP responses its proxies finished. */
  readonly requests_total: number;
  readonly instances: number;
}

export const MAX_PEERS_PER_INSTANCE = 1000;

const MESH_CONNECTIONS = 'trellis_mesh_connections_total';
const PLAIN_OUTBOUND = 'trellis_plain_outbound_total';

/** What one scrape of one instance says about its peers. */
export interface InstancePeers {
  readonly target: ScrapeTarget;
  /** mTLS connections made, by the server's identity. */
  readonly outbound: ReadonlyMap<string, number>;
  /** mTLS connections accepted, by the client's identity. */
  readonly inbound: ReadonlyMap<string, number>;
  /** Plain requests and opaque connections sent, by "destination\u0000reason". */
  readonly plain: ReadonlyMap<string, number>;
  readonly requestsTotal: number;
  readonly atMs: number;
}

/** Reads the peers of one scrape (samples of other families are ignored). */
export function instancePeers(
  target: ScrapeTarget,
  samples: readonly PromSample[],
  atMs: number,
): InstancePeers {
  const outbound = new Map<string, number>();
  const inbound = new Map<string, number>();
  const plain = new Map<string, number>();
  let requestsTotal = 0;
  const add = (map: Map<string, number>, key: string, value: number): void => {
    if (!(value > 0) || (!map.has(key) && map.size >= MAX_PEERS_PER_INSTANCE)) return;
    map.set(key, (map.get(key) ?? 0) + value);
  };
  for (const s of samples) {
    const direction = s.labels.direction;
    if (s.name === MESH_CONNECTIONS) {
      const peer = s.labels.peer_identity;
      if (peer === undefined || peer === '' || peer === 'other') continue;
      if (direction === 'outbound') add(outbound, peer, s.value);
      else if (direction === 'inbound') add(inbound, peer, s.value);
    } else if (s.name === PLAIN_OUTBOUND) {
      const destination = s.labels.destination;
      if (destination === undefined || destination === '' || destination === 'other') continue;
      add(plain, `${destination}\u0000${s.labels.reason ?? 'unknown'}`, s.value);
    } else if (s.name === 'trellis_response_total' && direction === 'inbound' && s.value > 0) {
      requestsTotal += s.value;
    }
  }
  return { target, outbound, inbound, plain, requestsTotal, atMs };
}

interface WorkloadRef {
  readonly namespace: string;
  readonly name: string;
}

/**
 * The workload an identity names when no registration holds it: the namespace and service
 * account of a Trellis SPIFFE ID (spiffe://TD/ns/NS/sa/SA), else the identity itself.
 */
export function workloadOfIdentity(identity: string): WorkloadRef {
  const match = /^spiffe:\/\/[^/]+\/ns\/([^/]+)\/sa\/([^/]+)$/.exec(identity);
  return match === null ? { namespace: '', name: identity } : { namespace: match[1]!, name: match[2]! };
}

/** The edges the instances' last scrapes show, sorted by source then destination. */
export function computeEdges(instances: readonly InstancePeers[]): Edge[] {
  const byIdentity = new Map<string, WorkloadRef[]>();
  const byAddress = new Map<string, WorkloadRef>();
  for (const { target } of instances) {
    const ref = { namespace: target.namespace, name: target.workload };
    for (const address of target.addresses ?? []) byAddress.set(address, ref);
    if (target.identity === undefined || target.identity === null || target.identity === '') continue;
    const refs = byIdentity.get(target.identity) ?? [];
    if (!refs.some((r) => r.namespace === ref.namespace && r.name === ref.name)) refs.push(ref);
    byIdentity.set(target.identity, refs);
  }
  const workloadsOf = (identity: string): WorkloadRef[] =>
    byIdentity.get(identity) ?? [workloadOfIdentity(identity)];

  interface Building {
    src: WorkloadRef;
    dst: WorkloadRef;
    client: string | null;
    server: string | null;
    reason: string | null;
    byClient: number;
    byServer: number;
  }
  const edges = new Map<string, Building>();
  const edge = (src: WorkloadRef, dst: WorkloadRef, secured: boolean): Building => {
    const key = JSON.stringify([src.namespace, src.name, dst.namespace, dst.name, secured]);
    let e = edges.get(key);
    if (e === undefined) {
      e = { src, dst, client: null, server: null, reason: null, byClient: 0, byServer: 0 };
      edges.set(key, e);
    }
    return e;
  };
  for (const peers of instances) {
    const self = { namespace: peers.target.namespace, name: peers.target.workload };
    const ownIdentity = peers.target.identity || null;
    for (const [server, count] of peers.outbound) {
      for (const dst of workloadsOf(server)) {
        const e = edge(self, dst, true);
        e.client ??= ownIdentity;
        e.server ??= server;
        e.byClient += count;
      }
    }
    for (const [client, count] of peers.inbound) {
      for (const src of workloadsOf(client)) {
        const e = edge(src, self, true);
        e.client ??= client;
        e.server ??= ownIdentity;
        e.byServer += count;
      }
    }
    for (const [key, count] of peers.plain) {
      const [destination = '', reason = 'unknown'] = key.split('\u0000');
      const dst = byAddress.get(destination) ?? { namespace: '', name: destination };
      const e = edge(self, dst, false);
      e.reason ??= reason;
      e.byClient += count;
    }
  }
  const sortKey = (e: Edge): string =>
    [e.src_namespace, e.src, e.dst_namespace, e.dst, e.secured ? '1' : '0'].join('\u0000');
  return [...edges.values()]
    .map((e): Edge => ({
      src_namespace: e.src.namespace,
      src: e.src.name,
      dst_namespace: e.dst.namespace,
      dst: e.dst.name,
      client_identity: e.client,
      server_identity: e.server,
      secured: e.reason === null,
      no_tls_reason: e.reason,
      connections: Math.max(e.byClient, e.byServer),
      seen_by: e.byClient > 0 && e.byServer > 0 ? 'both' : e.byClient > 0 ? 'client' : 'server',
    }))
    .sort((a, b) => (sortKey(a) < sortKey(b) ? -1 : sortKey(a) > sortKey(b) ? 1 : 0));
}

/** Whether an edge touches `namespace` (either end). */
export function edgeInNamespace(edge: Edge, namespace: string): boolean {
  return edge.src_namespace === namespace || edge.dst_namespace === namespace;
}

/** The cumulative traffic per workload of the instances' last scrapes, sorted by namespace and name. */
export function workloadTraffic(instances: readonly InstancePeers[]): WorkloadTraffic[] {
  const groups = new Map<
    string,
    { ref: WorkloadRef; identities: Set<string>; requests: number; n: number }
  >();
  for (const { target, requestsTotal } of instances) {
    const key = JSON.stringify([target.namespace, target.workload]);
    let g = groups.get(key);
    if (g === undefined) {
      g = {
        ref: { namespace: target.namespace, name: target.workload },
        identities: new Set(),
        requests: 0,
        n: 0,
      };
      groups.set(key, g);
    }
    if (target.identity) g.identities.add(target.identity);
    g.requests += requestsTotal;
    g.n++;
  }
  return [...groups.entries()]
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    .map(([, g]) => ({
      namespace: g.ref.namespace,
      name: g.ref.name,
      identities: [...g.identities].sort(),
      requests_total: g.requests,
      instances: g.n,
    }));
}

/**
 * The last scrape of each instance, fed by the collector (MetricsCollector's onScrape); an
 * instance not scraped for `staleMs` (it left: the collector no longer lists it) is forgotten.
 */
export class EdgeTracker {
  private readonly staleMs: number;
  private readonly now: () => number;
  /** By "namespace/instance". */
  private readonly instances = new Map<string, InstancePeers>();

  constructor(options: { staleMs?: number; now?: () => number } = {}) {
    this.staleMs = options.staleMs ?? 30_000;
    this.now = options.now ?? Date.now;
  }

  /** One scrape of `target`: its samples, or null when its proxy did not answer (kept as it was). */
  observe(target: ScrapeTarget, samples: readonly PromSample[] | null): void {
    const key = `${target.namespace}/${target.instance}`;
    const known = this.instances.get(key);
    if (samples === null) {
      // Still listed: keep what it said last, under its current registration.
      this.instances.set(
        key,
        known === undefined ? instancePeers(target, [], this.now()) : { ...known, target, atMs: this.now() },
      );
      return;
    }
    this.instances.set(key, instancePeers(target, samples, this.now()));
  }

  edges(namespace?: string): Edge[] {
    const all = computeEdges(this.current());
    return namespace === undefined ? all : all.filter((e) => edgeInNamespace(e, namespace));
  }

  workloads(namespace?: string): WorkloadTraffic[] {
    const all = workloadTraffic(this.current());
    return namespace === undefined ? all : all.filter((w) => w.namespace === namespace);
  }

  private current(): InstancePeers[] {
    const oldest = this.now() - this.staleMs;
    for (const [key, peers] of this.instances) if (peers.atMs < oldest) this.instances.delete(key);
    return [...this.instances.values()];
  }
}
