// The control plane's metrics collector: every few seconds it scrapes the /metrics page of each
// registered workload's proxy (its admin listener), keeps a bounded history of snapshots per
// instance and direction (snapshot-history.ts), and answers `trellis stat` (GET /api/stat) with the
// golden metrics of each workload: success rate, requests per second, latency percentiles, open
// TCP connections and bytes per second, of the inbound traffic over the last 10 s unless the view
// asks for the outbound traffic or another window (stat-view.ts). Instances of one workload (the
// workload files of one service in one namespace) are summed: counters and histogram buckets add
// up before rates and quantiles are taken.
// With a peer (`trellis stat --from/--to`) the numbers are those of the requests from or to one
// workload, from each proxy's per-peer families kept in a history of their own (peer-snapshot.ts).
// The same scrapes feed the live numbers of `trellis routes` (GET /api/route-stats): each
// proxy's route series over the window (route-snapshot.ts), and for a proxy whose page shows
// circuit breakers, its /debug/breakers (breaker-state.ts), summed by route-stats.ts.
// The window math (deltas, restarts, histogram_quantile) is the one of `trellis demo`
// (src/core/golden-metrics.ts); scraping and time are injectable, so tests feed fake pages.
import { request } from 'node:http';
import { silentLogger, type Logger } from '../../core/log.ts';
import { LogThrottle } from '../../core/log-rate-limit.ts';
import { Registry } from '../../core/prometheus.ts';
import { snapshotFromSamples, type Direction } from '../../core/golden-metrics.ts';
import { parsePrometheusText, type PromSample } from '../../core/prom-parse.ts';
import { DEFAULT_HISTORY_BOUNDS, SnapshotHistory, type WindowDelta } from './snapshot-history.ts';
import { WindowHistory } from './window-history.ts';
import { mergeBuckets, quantileMs } from './histogram-merge.ts';
import {
  hasBreakers,
  MAX_ROUTE_SERIES_PER_INSTANCE,
  routeSnapshot,
  routesRestarted,
  routeWindow,
  type RouteSnapshot,
  type RouteWindow,
} from './route-snapshot.ts';
import { parseBreakerViews, type BackendBreakers } from './breaker-state.ts';
import { routeStats, type RouteStatsAnswer, type RouteStatsFilter } from './route-stats.ts';
import { DIRECTIONS, formatStatPeer, type StatPeer, type StatView } from './stat-view.ts';
import { peerDelta, peersRestarted, peerSnapshot, type PeerSnapshot } from './peer-snapshot.ts';
import { ConfigError } from '../../core/errors.ts';

export type { WindowDelta } from './snapshot-history.ts';

/** One registered workload instance. */
export interface ScrapeTarget {
  readonly namespace: string;
  /** The workload (the service it serves). */
  readonly workload: string;
  /** Unique per instance (its registration's name). */
  readonly instance: string;
  /** "HOST:PORT" of its proxy's admin listener; null when it has no proxy to scrape. */
  readonly admin: string | null;
  readonly meshed: boolean;
  /** Its registered identity (for `trellis edges`: src/control/metrics/edges.ts), when meshed. */
  readonly identity?: string | null;
  /** Its registered "HOST:PORT" endpoints (for `trellis edges`: what plain connections reach). */
  readonly addresses?: readonly string[];
}

/** One line of `trellis stat`; null where the window holds no data. */
export interface WorkloadStat {
  readonly namespace: string;
  readonly name: string;
  /** "answering meshed instances/instances", e.g. "1/1". */
  readonly meshed: string;
  /** 0..1, null when no response was seen in the window. */
  readonly success: number | null;
  readonly rps: number | null;
  readonly latency_p50_ms: number | null;
  readonly latency_p95_ms: number | null;
  readonly latency_p99_ms: number | null;
  readonly tcp_conn: number | null;
  /** The traffic these numbers are of: inbound (served) or outbound (called). */
  readonly direction: Direction;
  /** The span the rates cover, in seconds (the window asked for, or less while history is short). */
  readonly window_s: number | null;
  /** Bytes per second read from and written to its connections (counted as they close). */
  readonly read_bytes_per_s: number | null;
  readonly write_bytes_per_s: number | null;
  /**
   * With --from or --to: the workload ("namespace/name") the requests came from (inbound) or went
   * to (outbound). The numbers are then of those requests only, and tcp_conn and the bytes, which
   * the proxies do not count by peer, are null.
   */
  readonly from?: string;
  readonly to?: string;
}

/** Which peer keys (peer-snapshot.ts peerKey) a --from or --to selects. */
export type PeerSelector = (key: string) => boolean;

/** The snapshots of one proxy, both directions, and the deltas over a window. */
export class InstanceWindow {
  private readonly windowMs: number;
  private readonly histories: Record<Direction, SnapshotHistory>;
  private readonly routes: WindowHistory<RouteSnapshot>;
  /** Its traffic by peer, per direction (`trellis stat --from/--to`). */
  private readonly peers: Record<Direction, WindowHistory<PeerSnapshot>>;
  /** Whether the last scrape got an answer. */
  reachable = false;
  /** Its circuit breakers at the last scrape (null: none shown, or /debug/breakers did not answer). */
  breakers: ReadonlyMap<string, BackendBreakers> | null = null;

  /** `windowMs`: the window of delta() when none is given. */
  constructor(windowMs: number) {
    this.windowMs = windowMs;
    const bounds = {
      ...DEFAULT_HISTORY_BOUNDS,
      maxWindowMs: Math.max(DEFAULT_HISTORY_BOUNDS.maxWindowMs, windowMs),
    };
    this.histories = { inbound: new SnapshotHistory(bounds), outbound: new SnapshotHistory(bounds) };
    this.routes = new WindowHistory(routesRestarted, bounds);
    this.peers = {
      inbound: new WindowHistory(peersRestarted, bounds),
      outbound: new WindowHistory(peersRestarted, bounds),
    };
  }

  /** Records a scrape: the page's text, or null when the proxy did not answer. Returns its samples. */
  record(page: string | null, atMs: number): readonly PromSample[] | null {
    this.reachable = page !== null;
    if (page === null) return null;
    const samples = parsePrometheusText(page);
    for (const direction of DIRECTIONS) {
      this.histories[direction].push(snapshotFromSamples(samples, direction, atMs));
      const peers = this.peers[direction];
      peers.push(peerSnapshot(samples, direction, atMs, peers.latest()));
    }
    this.routes.push(routeSnapshot(samples, atMs, this.routes.latest()));
    return samples;
  }

  /** What the proxy did with the peers `selected` picks over the window; null before two scrapes. */
  peerDelta(direction: Direction, selected: PeerSelector, windowMs = this.windowMs): WindowDelta | null {
    const delta = peerDelta(this.peers[direction], windowMs, selected);
    return delta === null ? null : { ...delta, readBytes: 0, writeBytes: 0 };
  }

  /** Route series and breaker backends the last scrape left out over the bounds (route-snapshot.ts). */
  routesDropped(): number {
    return this.routes.latest()?.dropped ?? 0;
  }

  /** What the proxy's routes did over the window; null before two scrapes. */
  routeWindow(windowMs = this.windowMs): { window: RouteWindow; seconds: number } | null {
    const span = this.routes.span(windowMs);
    if (span === null) return null;
    return { window: routeWindow(span.newest, span.base, span.restarted), seconds: span.seconds };
  }

  /** Open TCP connections at the last answered scrape, or null before one. */
  tcpOpen(direction: Direction = 'inbound'): number | null {
    return this.histories[direction].latest()?.tcpOpen ?? null;
  }

  /** What the proxy did over the window (a counter that went down: it restarted); null before two scrapes. */
  delta(windowMs = this.windowMs, direction: Direction = 'inbound'): WindowDelta | null {
    return this.histories[direction].delta(windowMs);
  }
}

/**
 * Sums the windows of a workload's instances into its stat line; with `selected` (a --from or
 * --to, `view.peer`) only the requests of the peers it picks, without connections and bytes.
 */
export function workloadStat(
  namespace: string,
  name: string,
  instances: readonly { readonly target: ScrapeTarget; readonly window: InstanceWindow }[],
  view?: StatView,
  selected?: PeerSelector,
): WorkloadStat {
  const direction = view?.direction ?? 'inbound';
  const byPeer = selected !== undefined && view?.peer != null;
  const windowMs = view?.windowMs;
  let answering = 0;
  let responses = 0;
  let successes = 0;
  let rps: number | null = null;
  let tcp: number | null = null;
  let seconds: number | null = null;
  let readBps: number | null = null;
  let writeBps: number | null = null;
  const histograms: WindowDelta['latencyBuckets'][] = [];
  for (const { target, window } of instances) {
    if (target.meshed && target.admin !== null && window.reachable) answering++;
    const open = byPeer ? null : window.tcpOpen(direction);
    if (open !== null) tcp = (tcp ?? 0) + open;
    const delta = byPeer
      ? window.peerDelta(direction, selected, windowMs)
      : window.delta(windowMs, direction);
    if (delta === null) continue;
    seconds = Math.max(seconds ?? 0, delta.seconds);
    responses += delta.responses;
    successes += delta.successes;
    if (delta.seconds > 0) {
      rps = (rps ?? 0) + delta.responses / delta.seconds;
      if (!byPeer) {
        readBps = (readBps ?? 0) + delta.readBytes / delta.seconds;
        writeBps = (writeBps ?? 0) + delta.writeBytes / delta.seconds;
      }
    }
    histograms.push(delta.latencyBuckets);
  }
  const latency = mergeBuckets(histograms);
  const ms = (q: number): number | null => quantileMs(q, latency);
  const peer = byPeer ? { [direction === 'inbound' ? 'from' : 'to']: formatStatPeer(view.peer!) } : {};
  return {
    namespace,
    name,
    meshed: `${answering}/${instances.length}`,
    success: responses > 0 ? successes / responses : null,
    rps,
    latency_p50_ms: ms(0.5),
    latency_p95_ms: ms(0.95),
    latency_p99_ms: ms(0.99),
    tcp_conn: tcp,
    direction,
    window_s: seconds,
    read_bytes_per_s: readBps,
    write_bytes_per_s: writeBps,
    ...peer,
  };
}

export interface CollectorOptions {
  /** The workload instances to scrape, asked afresh before each round. */
  readonly listTargets: () => Promise<readonly ScrapeTarget[]>;
  /** GET http://ADMIN/metrics: the page, or null when it fails. Default: node:http, 2 s timeout. */
  readonly fetchMetrics?: (admin: string) => Promise<string | null>;
  readonly intervalMs?: number;
  readonly windowMs?: number;
  readonly now?: () => number;
  readonly log?: Logger;
  /**
   * Called after each target's scrape in a round with its samples (null: no page, or no proxy to
   * scrape), for views beside the golden metrics (`trellis edges`: src/control/metrics/edges.ts).
   */
  readonly onScrape?: (target: ScrapeTarget, samples: readonly PromSample[] | null) => void;
  /**
   * GET http://ADMIN/debug/breakers, asked of a proxy whose page shows circuit breakers: the
   * parsed JSON, or null when it fails. Default: node:http, 2 s timeout.
   */
  readonly fetchBreakers?: (admin: string) => Promise<unknown>;
}

export class MetricsCollector {
  private readonly options: CollectorOptions;
  private readonly fetchMetrics: (admin: string) => Promise<string | null>;
  private readonly fetchBreakers: (admin: string) => Promise<unknown>;
  /** Route series and breaker backends left out over the bounds, summed over scrapes. */
  private routesDropped = 0;
  private readonly dropThrottle: LogThrottle;
  private readonly windowMs: number;
  private readonly now: () => number;
  private readonly log: Logger;
  /** By "namespace/instance". */
  private instances = new Map<string, { target: ScrapeTarget; window: InstanceWindow }>();
  private timer: NodeJS.Timeout | undefined;
  private round: Promise<void> | null = null;
  private closed = false;

  constructor(options: CollectorOptions) {
    this.options = options;
    this.fetchMetrics = options.fetchMetrics ?? fetchMetricsPage;
    this.fetchBreakers = options.fetchBreakers ?? fetchBreakerViews;
    this.windowMs = options.windowMs ?? 10_000;
    this.now = options.now ?? Date.now;
    this.log = (options.log ?? silentLogger).child({ component: 'metrics-collector' });
    this.dropThrottle = new LogThrottle(undefined, this.now);
  }

  /** Scrapes now and then every `intervalMs` (default 2 s) until close(). */
  start(): void {
    const interval = this.options.intervalMs ?? 2000;
    const tick = (): void => {
      void this.collect().finally(() => {
        if (!this.closed) this.timer = setTimeout(tick, interval);
      });
    };
    tick();
  }

  /** One round: lists the targets, forgets those gone, scrapes the rest. Never throws. */
  collect(): Promise<void> {
    this.round ??= this.scrapeAll().finally(() => (this.round = null));
    return this.round;
  }

  /**
   * The stat lines of a namespace (every namespace when absent), sorted by namespace and name, of
   * the inbound traffic over the collector's window unless `view` says otherwise. A view with a
   * peer keeps to the requests from or to that workload; a ConfigError when no registered
   * instance is that workload, or (--from) none of its instances has an identity to be told by.
   */
  stats(namespace?: string, view?: StatView): WorkloadStat[] {
    const selected = view?.peer != null ? this.peerSelector(view.direction, view.peer) : undefined;
    const groups = new Map<string, { target: ScrapeTarget; window: InstanceWindow }[]>();
    for (const entry of this.instances.values()) {
      if (namespace !== undefined && entry.target.namespace !== namespace) continue;
      const key = `${entry.target.namespace}/${entry.target.workload}`;
      groups.set(key, [...(groups.get(key) ?? []), entry]);
    }
    return [...groups.entries()]
      .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
      .map(([, members]) =>
        workloadStat(members[0]!.target.namespace, members[0]!.target.workload, members, view, selected),
      );
  }

  /**
   * The peer keys of `peer`'s requests: inbound the identities its instances registered with;
   * outbound its namespace and name, or the name of one of its instances (on one machine
   * discovery names an endpoint by its registration).
   */
  private peerSelector(direction: Direction, peer: StatPeer): PeerSelector {
    const instances = [...this.instances.values()]
      .map((e) => e.target)
      .filter((t) => t.namespace === peer.namespace && t.workload === peer.name);
    const flag = direction === 'inbound' ? '--from' : '--to';
    if (instances.length === 0) {
      throw new ConfigError(flag, `no workload ${peer.name} in namespace ${peer.namespace}`);
    }
    if (direction === 'outbound') {
      const keys = new Set(
        [peer.name, ...instances.map((t) => t.instance)].map((n) => `${peer.namespace}/${n}`),
      );
      return (key) => keys.has(key);
    }
    const identities = new Set(instances.flatMap((t) => (t.identity ? [t.identity] : [])));
    if (identities.size === 0) {
      throw new ConfigError(
        flag,
        `workload ${peer.namespace}/${peer.name} has no identity (not meshed): its requests cannot be told from other plain-text clients'`,
      );
    }
    return (key) => identities.has(key);
  }

  /**
   * The live numbers of the routes of the parents `filter` names (GET /api/route-stats), over the
   * collector's window unless `windowMs` says otherwise.
   */
  routeStats(filter: RouteStatsFilter = {}, windowMs = this.windowMs): RouteStatsAnswer {
    return routeStats(
      [...this.instances.values()].map(({ target, window }) => {
        const routes = window.routeWindow(windowMs);
        return {
          target,
          window: routes?.window ?? null,
          seconds: routes?.seconds ?? 0,
          breakers: window.breakers,
        };
      }),
      filter,
    );
  }

  /** The collector's own metrics (Prometheus text), for the control plane's GET /metrics. */
  metrics(): string {
    const registry = new Registry();
    registry
      .counter(
        'trellis_control_route_series_dropped_total',
        `Route series and breaker backends a scrape of a proxy left out, over ${MAX_ROUTE_SERIES_PER_INSTANCE} per proxy (summed over scrapes).`,
      )
      .labels()
      .inc(this.routesDropped);
    return registry.render();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    await this.round;
  }

  /** Counts what a scrape left out over the bounds, and says so in the log (rate-limited). */
  private noteDropped(target: ScrapeTarget, dropped: number): void {
    if (dropped === 0) return;
    this.routesDropped += dropped;
    this.dropThrottle.note((skipped) =>
      this.log.warn('route series left out of a scrape: over the bound per proxy', {
        instance: `${target.namespace}/${target.instance}`,
        dropped,
        bound: MAX_ROUTE_SERIES_PER_INSTANCE,
        skippedLines: skipped,
      }),
    );
  }

  private async scrapeAll(): Promise<void> {
    let targets: readonly ScrapeTarget[];
    try {
      targets = await this.options.listTargets();
    } catch (error) {
      this.log.warn('cannot list the workloads to scrape', { error });
      return;
    }
    const next = new Map<string, { target: ScrapeTarget; window: InstanceWindow }>();
    for (const target of targets) {
      const key = `${target.namespace}/${target.instance}`;
      const known = this.instances.get(key);
      // A new proxy at another address is another process: its counters start afresh.
      const window =
        known !== undefined && known.target.admin === target.admin
          ? known.window
          : new InstanceWindow(this.windowMs);
      next.set(key, { target, window });
    }
    this.instances = next;
    await Promise.all(
      [...next.values()].map(async ({ target, window }) => {
        if (target.admin === null) return this.options.onScrape?.(target, null);
        let page: string | null = null;
        try {
          page = await this.fetchMetrics(target.admin);
        } catch (error) {
          this.log.debug('scrape failed', { admin: target.admin, error });
        }
        const samples = window.record(page, this.now());
        this.options.onScrape?.(target, samples);
        this.noteDropped(target, window.routesDropped());
        window.breakers =
          samples !== null && hasBreakers(samples)
            ? parseBreakerViews(await this.fetchBreakers(target.admin).catch(() => null))
            : null;
      }),
    );
  }
}

/** GET http://ADMIN/metrics on a fresh connection: the body, or null on any failure or after 2 s. */
export function fetchMetricsPage(admin: string): Promise<string | null> {
  return fetchAdminPage(admin, '/metrics');
}

/** GET http://ADMIN/debug/breakers: its JSON, or null on any failure. */
export async function fetchBreakerViews(admin: string): Promise<unknown> {
  const body = await fetchAdminPage(admin, '/debug/breakers');
  try {
    return body === null ? null : (JSON.parse(body) as unknown);
  } catch {
    return null;
  }
}

/** The longest a scrape of one page may take, its body included. */
export const SCRAPE_TIMEOUT_MS = 2000;
/** The largest page a scrape reads: a bigger one is not a metrics page we can use. */
const SCRAPE_MAX_BYTES = 8 << 20;

/**
 * GET http://ADMIN/PATH on a fresh connection: the body, or null on any failure or after 2 s for
 * the whole exchange. A deadline, not node's socket timeout (silence only): an admin port that
 * trickles a byte a second held its scrape, and every later round of every proxy with it.
 */
function fetchAdminPage(admin: string, path: string): Promise<string | null> {
  const colon = admin.lastIndexOf(':');
  const host = admin.slice(0, colon).replace(/^\[|\]$/g, '');
  return new Promise((resolve) => {
    const done = (body: string | null): void => {
      clearTimeout(deadline);
      resolve(body);
    };
    const req = request({ host, port: Number(admin.slice(colon + 1)), path, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      let bytes = 0;
      res.on('data', (d: Buffer) => {
        bytes += d.length;
        if (bytes > SCRAPE_MAX_BYTES) req.destroy();
        else chunks.push(d);
      });
      res.on('end', () => done(res.statusCode === 200 ? Buffer.concat(chunks).toString('utf8') : null));
      res.on('error', () => done(null));
      res.on('close', () => done(null));
    });
    const deadline = setTimeout(() => req.destroy(), SCRAPE_TIMEOUT_MS);
    req.on('error', () => done(null));
    req.end();
  });
}
