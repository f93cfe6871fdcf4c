// A running control plane: one discovery Watcher behind the Destination gRPC API (what proxies
// watch) and a small HTTP API for the CLI (node:http; the control plane is not memory-bound like
// the proxy):
//
//   GET /healthz         200 {"status":"ok"} once discovery has synced, 503 {"status":"syncing"} before
//   GET /api/services    200 [{namespace, name, ports: [{port, name?, endpoints: [...]}]}], sorted
//   GET /api/stat        200 [{namespace, name, meshed, success, rps, latency_p50_ms, ...}] golden
//                        metrics per workload (?namespace=NS to filter, &direction=outbound,
//                        &window=30s, &from=NS/NAME or &to=NS/NAME: src/control/metrics/stat-view.ts;
//                        400 when malformed, 404 for a peer that is no workload), from the
//                        MetricsCollector (src/control/metrics/collector.ts) that scrapes the
//                        workloads' proxies
//   GET /metrics         the control plane's own metrics and its components' (Prometheus text)
//   GET /api/prometheus/targets  Prometheus HTTP service discovery of the workloads' proxies
//                        (src/control/metrics/prometheus-sd.ts)
//   GET /api/edges       200 [{src_namespace, src, dst_namespace, dst, client_identity, server_identity,
//                        secured, no_tls_reason, connections, seen_by}] who talks to whom
//                        (?namespace=NS: edges with an end in NS), from the same scrapes
//                        (src/control/metrics/edges.ts)
//   GET /api/workloads   200 [{namespace, name, identities, requests_total, instances}] totals per workload
//   GET /api/route-stats 200 {window_s, routes: [...], backends: [...]} live numbers per route and
//                        per (route, backend) of the routes of a Service (?namespace=NS&service=SVC,
//                        both optional; &window=30s as for /api/stat), with each backend's circuit
//                        breakers, from the same scrapes (src/control/metrics/route-stats.ts)
//   GET /api/tap         a live tap of a workload's proxies: JSON lines until the reader stops
//                        (?namespace=NS&workload=NAME&instance=I&to=DST and the filters of
//                        src/core/tap-filter.ts; 404 at once when no proxy matches:
//                        src/control/tap/tap-api.ts)
//   GET /dashboard       the web dashboard (src/control/dashboard/), with /dashboard/app.js and style.css
//
// and the components' routes (identity, policy). Reading is open to anyone who can reach the API;
// every other method needs an authenticated operator (`Authorization: Bearer <operator token>`,
// checked by OperatorAuth in routeHttp before any handler runs: src/control/operator-auth.ts), and
// so do the reads that show live requests (/api/tap, /api/traces) where the API is reachable from
// other hosts (sensitiveReadsNeedOperator: `trellis control`, `trellis up` off loopback).
// What one client can hold of it (connections, time for a head and a request, body bytes) is
// bounded by src/control/http-bounds.ts; a body is read only once its sender is authorized.
//
// The services come from a ServiceCatalog: the state folder for `trellis up` (here), the
// Kubernetes API for `trellis control` (src/cli/control.ts, which alone loads the Kubernetes
// client). `trellis up` also writes `<state>/control.json` with the bound addresses, so the other
// commands find the running control plane without flags.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type * as grpc from '@grpc/grpc-js';
import type { AddressInfo, Server } from 'node:net';
import { silentLogger, type Logger } from '../core/log.ts';
import { ConfigError } from '../core/errors.ts';
import { isSensitiveRead, OperatorAuth } from './operator-auth.ts';
import { HostGuard } from './host-guard.ts';
import {
  boundConnections,
  type ControlHttpLimits,
  DEFAULT_CONTROL_HTTP_LIMITS,
  readBody,
  answerAndClose,
  serverDeadlines,
} from './http-bounds.ts';
import { targetKey } from '../core/target.ts';
import { startDestinationServer } from './destination/server.ts';
import { DEFAULT_GRPC_CONNECTION_LIMITS, type GrpcConnectionLimits } from './grpc-listener.ts';
import { WatchLimits } from './watch-limits.ts';
import { endpointsOf, readLocalState, type StateFileCache } from './discovery/local-state.ts';
import { MetricsCollector, type ScrapeTarget } from './metrics/collector.ts';
import { PROMETHEUS_SD_PATH, prometheusTargets } from './metrics/prometheus-sd.ts';
import { statViewOf, type StatView } from './metrics/stat-view.ts';
import { EdgeTracker } from './metrics/edges.ts';
import { DASHBOARD_ROUTES, serveDashboard } from './dashboard/routes.ts';
import { serveTap } from './tap/tap-api.ts';
import type { TapTarget } from './tap/proxy-tap-tls.ts';
import type { TapClientTls } from './tap/tap-client-certificate.ts';
import type { Endpoint, ServicePortKey, Watcher } from './discovery/watcher.ts';

export interface EndpointView {
  /** "host:port" ("[v6]:port"). */
  readonly address: string;
  readonly weight: number;
  readonly meshed: boolean;
  readonly identity: string | null;
  readonly protocolHint: string;
  readonly labels: Readonly<Record<string, string>>;
}

export interface ServiceView {
  readonly namespace: string;
  readonly name: string;
  readonly ports: readonly { port: number; name?: string; endpoints: readonly EndpointView[] }[];
}

/** Lists the services a control plane knows, with their current endpoints. */
export interface ServiceCatalog {
  listServices(): Promise<ServiceView[]>;
  /** The workload instances whose proxies the control plane scrapes for `trellis stat`, if any. */
  listScrapeTargets?(): Promise<ScrapeTarget[]>;
  /** The proxies GET /api/tap reaches, when they are not the scrape targets (Kubernetes: mTLS). */
  listTapTargets?(): Promise<TapTarget[]>;
}

export interface ServiceShape {
  readonly namespace: string;
  readonly name: string;
  readonly ports: readonly { readonly port: number; readonly name?: string | undefined }[];
}

export function serviceView(
  service: ServiceShape,
  endpoints: (key: ServicePortKey) => Endpoint[] | null,
): ServiceView {
  const { namespace, name } = service;
  return {
    namespace,
    name,
    ports: service.ports.map((p) => ({
      port: p.port,
      ...(p.name === undefined ? {} : { name: p.name }),
      endpoints: (endpoints({ namespace, name, port: p.port }) ?? []).map((e) => ({
        address: targetKey(e.address),
        weight: e.weight,
        meshed: e.meshed,
        identity: e.identity,
        protocolHint: e.protocolHint,
        labels: e.labels,
      })),
    })),
  };
}

export function sortServices(services: ServiceView[]): ServiceView[] {
  const key = (s: ServiceView) => `${s.namespace}/${s.name}`;
  return services.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}

/** The services of a state folder, read afresh on each call (unchanged files come from a cache). */
export function localCatalog(root: string, log: Logger = silentLogger): ServiceCatalog {
  const cache: StateFileCache = new Map();
  return {
    async listServices() {
      const state = await readLocalState(root, cache, log);
      const views = Array.from(state.services.values(), (s) => serviceView(s, (k) => endpointsOf(state, k)));
      return sortServices(views);
    },
    async listScrapeTargets() {
      const state = await readLocalState(root, cache, log);
      return state.workloads.map((w) => ({
        namespace: w.namespace,
        workload: w.spec.service,
        instance: w.name,
        admin: w.spec.admin ?? null,
        meshed: w.spec.meshed,
        identity: w.spec.identity === '' ? null : w.spec.identity,
        addresses: [
          ...(w.spec.ports ?? []),
          ...(w.spec.port === undefined ? [] : [{ port: w.spec.port }]),
        ].map((p) => targetKey({ host: w.spec.address, port: p.port })),
      }));
    },
  };
}

/**
 * A part of the control plane beside discovery (the certificate authority, the policy source):
 * gRPC services on the control plane's gRPC server and routes on its HTTP API.
 */
export interface ControlPlaneComponent {
  /** Adds its gRPC services to the server (called once, before the server binds). */
  addGrpcServices?(server: grpc.Server, limits?: WatchLimits): void;
  /**
   * Answers an HTTP API request whose path it owns (true), or leaves it to the others (false).
   * `body` is the request body as text (empty for GET).
   */
  handleHttp?(
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    body: string,
    /** The same body as bytes (binary bodies: OTLP protobuf). */
    raw?: Buffer,
  ): Promise<boolean> | boolean;
  /**
   * POST paths it owns that need no operator token: write-only, bounded intake from proxies
   * (the embedded trace collector's /v1/traces). Everything else but GET and HEAD needs one.
   */
  readonly openPostPaths?: readonly string[];
  /**
   * Whether the sender of a POST to one of its openPostPaths may send it (true), or the answer it
   * got (false): asked before the body is read, so that no one without the component's own
   * credential can make the control plane buffer a body.
   */
  admitPost?(req: IncomingMessage, res: ServerResponse, path: string): boolean;
  /** Its metrics in the Prometheus text format, for the control plane's GET /metrics. */
  metrics?(): string;
  close?(): Promise<void> | void;
}

export interface ControlPlaneOptions {
  readonly watcher: Watcher;
  /** The services (a promise: a catalog still being built, e.g. while the cluster is asked). */
  readonly catalog: ServiceCatalog | Promise<ServiceCatalog>;
  /** "HOST:PORT" of the Destination gRPC API. */
  readonly grpcListen: string;
  /** "HOST:PORT" of the HTTP API. */
  readonly httpListen: string;
  readonly clusterDomain?: string;
  readonly log?: Logger;
  /** How often the workloads' proxies are scraped for `trellis stat` (default 2000). */
  readonly metricsIntervalMs?: number;
  /**
   * Identity, policy, ...: started before, closed after the control plane, or at once when it
   * cannot start.
   */
  readonly components?: readonly ControlPlaneComponent[];
  /**
   * The token every HTTP API request other than GET and HEAD must carry as
   * `Authorization: Bearer TOKEN`; absent or null: every such request is refused.
   */
  readonly operatorToken?: string | null;
  /** Where an operator finds the token, for the refusal's explanation (src/control/operator-auth.ts). */
  readonly operatorTokenSource?: string;
  /**
   * Whether the reads that show live requests (GET /api/tap, /api/traces: isSensitiveRead) need
   * the operator token too: for an HTTP API reachable from other hosts. Default false.
   */
  readonly sensitiveReadsNeedOperator?: boolean;
  /**
   * Whether the HTTP API answers only requests whose Host names this host (localhost, an IP
   * address): for an API on loopback, whose reads a rebound web page must not make (host-guard.ts).
   * Default false.
   */
  readonly onlyThisHostByName?: boolean;
  /** The control plane's client certificate for proxies' mTLS tap listeners (src/control/tap/). */
  readonly tapClientTls?: () => TapClientTls | null;
  /** What one client can hold of the HTTP API (default DEFAULT_CONTROL_HTTP_LIMITS). */
  readonly httpLimits?: Partial<ControlHttpLimits>;
  /** Most open streams of each watch API (default MAX_WATCH_STREAMS, watch-limits.ts). */
  readonly maxWatchStreams?: number;
  /** What callers can hold of the gRPC port (default DEFAULT_GRPC_CONNECTION_LIMITS, grpc-listener.ts). */
  readonly grpcLimits?: Partial<GrpcConnectionLimits>;
  /** Who calls whom, fed by the scrapes (made by the caller to share it with a component). */
  readonly edges?: EdgeTracker;
}

export interface ControlPlane {
  /** Bound addresses, "host:port". */
  readonly grpc: string;
  readonly http: string;
  /** Stops both APIs and closes the watcher. Idempotent. */
  close(): Promise<void>;
}

/**
 * Starts both APIs over `watcher`; the watcher and the components belong to the control plane from
 * then on. When it cannot start (its catalog fails, an address is taken), nothing is left running:
 * the watcher and the components are closed, and the error is thrown on.
 */
export async function startControlPlane(options: ControlPlaneOptions): Promise<ControlPlane> {
  const components = options.components ?? [];
  try {
    return await startPlane(options, await options.catalog, components);
  } catch (error) {
    await options.watcher.close();
    for (const component of components) await component.close?.();
    throw error;
  }
}

async function startPlane(
  options: ControlPlaneOptions,
  catalog: ServiceCatalog,
  components: readonly ControlPlaneComponent[],
): Promise<ControlPlane> {
  const log = (options.log ?? silentLogger).child({ component: 'control-plane' });
  let synced = false;
  options.watcher.ready().then(
    () => {
      synced = true;
      log.info('discovery synced');
    },
    (error: unknown) => log.error('discovery failed to start', { error }),
  );
  const watchLimits = new WatchLimits(log, options.maxWatchStreams);
  const destination = await startDestinationServer({
    watcher: options.watcher,
    listen: options.grpcListen,
    clusterDomain: options.clusterDomain,
    log: options.log,
    limit: watchLimits.of('destination'),
    connectionLimits: { ...DEFAULT_GRPC_CONNECTION_LIMITS, ...options.grpcLimits },
    addServices: (server) => {
      for (const c of components) c.addGrpcServices?.(server, watchLimits);
    },
  });
  const grpcHost = options.grpcListen.slice(0, options.grpcListen.lastIndexOf(':')).replace(/^\[|\]$/g, '');
  const edges = options.edges ?? new EdgeTracker();
  const collector = new MetricsCollector({
    listTargets: async () => (await catalog.listScrapeTargets?.()) ?? [],
    intervalMs: options.metricsIntervalMs,
    log: options.log,
    onScrape: (target, samples) => edges.observe(target, samples),
  });
  const limits = { ...DEFAULT_CONTROL_HTTP_LIMITS, ...options.httpLimits };
  const api: HttpApi = {
    components,
    catalog,
    collector,
    edges,
    synced: () => synced,
    auth: new OperatorAuth({
      token: options.operatorToken ?? null,
      tokenSource: options.operatorTokenSource ?? 'given to the control plane when it started',
      log: options.log,
    }),
    log,
    taps: { open: 0 },
    sensitiveReadsNeedOperator: options.sensitiveReadsNeedOperator ?? false,
    hostGuard: options.onlyThisHostByName === true ? new HostGuard(log) : null,
    tapClientTls: options.tapClientTls ?? (() => null),
    limits,
    connectionMetrics: () => dropMetrics() + destination.metrics() + watchLimits.metrics(),
  };
  const http = createServer(serverDeadlines(limits), (req, res) => answerHttp(req, res, api));
  const dropMetrics = boundConnections(http, limits, log);
  try {
    await listen(http, options.httpListen);
  } catch (error) {
    await destination.close();
    throw error;
  }
  collector.start();
  const bound = http.address() as AddressInfo;
  let closing: Promise<void> | null = null;
  return {
    grpc: targetKey({ host: grpcHost, port: destination.port }),
    http: targetKey({ host: bound.address, port: bound.port }),
    close() {
      closing ??= (async () => {
        await collector.close();
        // Components first: their open streams (policy watches) would hold the gRPC server's
        // graceful shutdown until its forced-shutdown timer.
        for (const c of components) await c.close?.();
        http.closeAllConnections();
        await Promise.all([new Promise<void>((resolve) => http.close(() => resolve())), destination.close()]);
        await options.watcher.close();
      })();
      return closing;
    },
  };
}

/** Listens on HOST:PORT ("[v6]:port" for IPv6); rejects with the listen error. */
export function listen(server: Server, address: string): Promise<void> {
  const colon = address.lastIndexOf(':');
  const host = address.slice(0, colon).replace(/^\[|\]$/g, '');
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(Number(address.slice(colon + 1)), host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** What the HTTP API answers from. */
interface HttpApi {
  readonly components: readonly ControlPlaneComponent[];
  readonly catalog: ServiceCatalog;
  readonly collector: MetricsCollector;
  readonly edges: EdgeTracker;
  readonly synced: () => boolean;
  readonly auth: OperatorAuth;
  readonly log: Logger;
  /** Live taps in progress (GET /api/tap). */
  readonly taps: { open: number };
  readonly sensitiveReadsNeedOperator: boolean;
  /** Loopback API: requests whose Host names another host are refused (null: no check). */
  readonly hostGuard: HostGuard | null;
  readonly tapClientTls: () => TapClientTls | null;
  readonly limits: ControlHttpLimits;
  readonly connectionMetrics: () => string;
}

const EMPTY_BODY = Buffer.alloc(0);

/** Answers a request; a handler that fails gets a 500 (or its connection closed), never the process. */
function answerHttp(req: IncomingMessage, res: ServerResponse, api: HttpApi): void {
  routeHttp(req, res, api).catch((error: unknown) => {
    api.log.warn('HTTP API request failed', { path: (req.url ?? '/').split('?')[0]!.slice(0, 200), error });
    if (res.headersSent) return void res.destroy();
    res.writeHead(500, { 'content-type': 'application/json', connection: 'close' });
    res.end(JSON.stringify({ error: 'internal error' }) + '\n');
  });
}

/**
 * Lets only an operator past for any method but GET and HEAD (and a component's open POST paths), then offers the request to each
 * component, then to the control plane's own routes.
 */
async function routeHttp(req: IncomingMessage, res: ServerResponse, api: HttpApi): Promise<void> {
  if (api.hostGuard !== null && !api.hostGuard.admit(req, res)) return;
  const reading = req.method === 'GET' || req.method === 'HEAD';
  const path = (req.url ?? '/').split('?')[0]!;
  const openOwner =
    req.method === 'POST' ? api.components.find((c) => c.openPostPaths?.includes(path) === true) : undefined;
  if (!reading && openOwner === undefined && !api.auth.admit(req, res)) return;
  if (openOwner?.admitPost !== undefined && !openOwner.admitPost(req, res, path)) return;
  if (reading && api.sensitiveReadsNeedOperator && isSensitiveRead(path) && !api.auth.admit(req, res)) return;
  const owners = api.components.filter((c) => c.handleHttp !== undefined);
  if (owners.length > 0) {
    let body = '';
    let raw: Buffer = EMPTY_BODY;
    if (!reading) {
      const read = await readBody(req, api.limits.maxBodyBytes);
      if (read === null) return; // the client went away
      if (read === 'too-large') {
        const body = JSON.stringify({ error: `request body over ${api.limits.maxBodyBytes} bytes` }) + '\n';
        answerAndClose(req, res, 413, { 'content-type': 'application/json' }, body);
        return;
      }
      raw = read;
      body = raw.toString('utf8');
    }
    for (const c of owners) {
      try {
        if (await c.handleHttp!(req, res, path, body, raw)) return;
      } catch (error) {
        api.log.warn('HTTP API handler failed', { path, error });
        if (!res.headersSent) {
          res.writeHead(500, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ error: (error as Error).message }) + '\n');
        }
        return;
      }
    }
  }
  return handleHttp(req, res, api);
}

const OWN_ROUTES = new Set(['/healthz', '/api/services', '/api/stat', '/metrics', PROMETHEUS_SD_PATH]);
// `trellis edges` and the dashboard (issue 11).
for (const route of ['/api/edges', '/api/workloads', ...DASHBOARD_ROUTES]) OWN_ROUTES.add(route);
// `trellis routes` (issue 10).
OWN_ROUTES.add('/api/route-stats');
// `trellis tap` and `trellis top` (issue 11).
OWN_ROUTES.add('/api/tap');

async function handleHttp(req: IncomingMessage, res: ServerResponse, api: HttpApi): Promise<void> {
  const [path = '/', query = ''] = (req.url ?? '/').split('?');
  const send = (status: number, body: unknown): void => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body) + '\n');
  };
  if (!OWN_ROUTES.has(path)) return send(404, { error: 'not found' });
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('allow', 'GET, HEAD');
    return send(405, { error: 'method not allowed' });
  }
  if (path === '/healthz')
    return api.synced() ? send(200, { status: 'ok' }) : send(503, { status: 'syncing' });
  if (path === '/api/stat') return sendStat(api, new URLSearchParams(query), send);
  if (path === '/api/route-stats') return sendRouteStats(api, new URLSearchParams(query), send);
  if (path === '/api/edges')
    return send(200, api.edges.edges(new URLSearchParams(query).get('namespace') ?? undefined));
  if (path === '/api/workloads')
    return send(200, api.edges.workloads(new URLSearchParams(query).get('namespace') ?? undefined));
  if (serveDashboard(path, res)) return;
  if (path === '/api/tap') {
    if (req.method === 'HEAD') return send(200, {});
    const { catalog } = api;
    const list = async () => (await (catalog.listTapTargets?.() ?? catalog.listScrapeTargets?.())) ?? [];
    return serveTap(req, res, new URLSearchParams(query), list, api.taps, api.tapClientTls);
  }
  if (path === '/metrics') {
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' });
    res.end(
      [
        api.auth.metrics(),
        api.connectionMetrics(),
        api.hostGuard?.metrics() ?? '',
        api.collector.metrics(),
        ...api.components.map((c) => c.metrics?.() ?? ''),
      ].join(''),
    );
    return;
  }
  if (path === PROMETHEUS_SD_PATH) return sendPrometheusTargets(api, send);
  try {
    send(200, await api.catalog.listServices());
  } catch (error) {
    api.log.warn('listing services failed', { error });
    send(503, { error: 'cannot list services', detail: (error as Error).message });
  }
}

/** Prometheus keeps the targets it has when discovery answers an error: 503 when listing fails. */
async function sendPrometheusTargets(
  api: HttpApi,
  send: (status: number, body: unknown) => void,
): Promise<void> {
  try {
    send(200, prometheusTargets((await api.catalog.listScrapeTargets?.()) ?? []));
  } catch (error) {
    api.log.warn('listing the proxies to scrape failed', { error });
    send(503, { error: 'cannot list the proxies', detail: (error as Error).message });
  }
}

/**
 * The stat lines of GET /api/stat; 400 for a direction, window or peer (from, to) it cannot read,
 * 404 for a peer that is no registered workload.
 */
function sendStat(api: HttpApi, query: URLSearchParams, send: (status: number, body: unknown) => void): void {
  let view: StatView;
  try {
    view = statViewOf(query);
  } catch (error) {
    return send(400, { error: (error as Error).message });
  }
  try {
    send(200, api.collector.stats(query.get('namespace') ?? undefined, view));
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    send(404, { error: error.message });
  }
}

/** The live route numbers of GET /api/route-stats; 400 for a window it cannot read. */
function sendRouteStats(
  api: HttpApi,
  query: URLSearchParams,
  send: (status: number, body: unknown) => void,
): void {
  let view: StatView;
  try {
    view = statViewOf(query);
  } catch (error) {
    return send(400, { error: (error as Error).message });
  }
  const filter = {
    namespace: query.get('namespace') ?? undefined,
    service: query.get('service') ?? undefined,
  };
  send(200, api.collector.routeStats(filter, view.windowMs));
}
