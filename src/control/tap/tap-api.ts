// The control plane's GET /api/tap (`trellis tap`, `trellis top`, the dashboard's live tap): a
// live tap of every proxy of the named resource, merged into one stream of JSON lines. The query
// names the resource as `trellis stat` does (namespace, workload, instance), `to` (and
// `to_namespace`) a destination workload, and carries the filter the proxies apply
// (src/core/tap-filter.ts). Each proxy is reached at its mTLS tap listener when it has one (on
// Kubernetes, with the control plane's client certificate: proxy-tap-tls.ts), else as the metrics
// collector reaches it (its registered admin address: loopback on one machine).
//
// It never waits silently: no proxy matches -> 404 at once; a proxy that cannot be tapped (no
// admin address, no connection, a refusal) -> an {"type":"error"} line naming it and why, as soon
// as that is known; once every proxy's tap has ended the response ends. Lines from a proxy gain
// its namespace, workload and instance. The reader's buffer is bounded: beyond
// MAX_BUFFERED_BYTES the lines from proxies (of any type: a proxy is not trusted to send only
// exchanges) are dropped and counted ({"type":"drops","source":"control-plane"}); only the control
// plane's own lines, an error per proxy and a count of drops a second, are never dropped. The taps
// at once are bounded (MAX_TAPS: 429 beyond).
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ScrapeTarget } from '../metrics/collector.ts';
import { parseTapFilter, tapFilterQuery, type TapFilter } from '../../core/tap-filter.ts';
import { openProxyTap, type ProxyTap } from './proxy-tap.ts';
import type { ProxyTapTls, TapTarget } from './proxy-tap-tls.ts';
import type { TapClientTls } from './tap-client-certificate.ts';

/** Taps through the control plane at once. */
export const MAX_TAPS = 32;
/** Bytes a tap's reader may leave unread before events are dropped. */
export const MAX_BUFFERED_BYTES = 1 << 20;
/** The query parameters this endpoint reads itself (the rest is the proxies' filter). */
const OWN_PARAMS = ['namespace', 'workload', 'instance', 'to', 'to_namespace'];

export interface TapRequest {
  readonly namespace: string | null;
  readonly workload: string | null;
  readonly instance: string | null;
  readonly to: string | null;
  readonly toNamespace: string | null;
  readonly filter: TapFilter;
}

/** The request of a query; a message when it cannot be read. */
export function parseTapRequest(query: URLSearchParams): TapRequest | string {
  for (const name of OWN_PARAMS) {
    if (query.getAll(name).length > 1) return `'${name}' given twice`;
    if (query.get(name) === '') return `'${name}' is empty`;
  }
  const filter = parseTapFilter(query, OWN_PARAMS);
  if (typeof filter === 'string') return filter;
  if (query.get('to_namespace') !== null && query.get('to') === null) return `'to_namespace' without 'to'`;
  return {
    namespace: query.get('namespace'),
    workload: query.get('workload'),
    instance: query.get('instance'),
    to: query.get('to'),
    toNamespace: query.get('to_namespace'),
    filter,
  };
}

/** The registered instances a tap request names. */
export function tapTargets<T extends ScrapeTarget>(all: readonly T[], req: TapRequest): T[] {
  return all.filter(
    (t) =>
      (req.namespace === null || t.namespace === req.namespace) &&
      (req.workload === null || t.workload === req.workload) &&
      (req.instance === null || t.instance === req.instance),
  );
}

/**
 * The proxies' filter with `to` resolved: the destination workload's name (as the authority's
 * host) and its instances' registered addresses; only outbound exchanges match it.
 */
export function withDestination(req: TapRequest, all: readonly ScrapeTarget[]): TapFilter {
  if (req.to === null) return req.filter;
  const toNamespace = req.toNamespace ?? req.namespace;
  const instances = all.filter(
    (t) => t.workload === req.to && (toNamespace === null || t.namespace === toNamespace),
  );
  const hosts = toNamespace === null ? [req.to] : [req.to, `${req.to}.${toNamespace}`];
  return {
    ...req.filter,
    toHosts: [...req.filter.toHosts, ...hosts],
    toAddresses: [...req.filter.toAddresses, ...instances.flatMap((t) => t.addresses ?? [])],
  };
}

function describe(req: TapRequest): string {
  const what =
    req.instance !== null
      ? `instance ${req.instance}`
      : req.workload !== null
        ? `workload ${req.workload}`
        : 'any workload';
  return `${what}${req.namespace === null ? '' : ` in namespace ${req.namespace}`}`;
}

/** Serves GET /api/tap; `taps` counts the taps in progress across requests. */
export async function serveTap(
  httpReq: IncomingMessage,
  res: ServerResponse,
  query: URLSearchParams,
  listTargets: () => Promise<readonly TapTarget[]>,
  taps: { open: number },
  /** The control plane's client certificate, for proxies with an mTLS tap listener (null: none). */
  clientTls: () => TapClientTls | null = () => null,
): Promise<void> {
  const send = (status: number, body: unknown): void => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body) + '\n');
  };
  const req = parseTapRequest(query);
  if (typeof req === 'string') return send(400, { error: req });
  let all: readonly TapTarget[];
  try {
    all = await listTargets();
  } catch (error) {
    return send(503, { error: `cannot list the proxies: ${(error as Error).message}` });
  }
  const targets = tapTargets(all, req);
  if (targets.length === 0) return send(404, { error: `no proxy matches ${describe(req)}` });
  if (req.to !== null && !all.some((t) => t.workload === req.to)) {
    return send(404, { error: `no workload ${req.to} to tap traffic to` });
  }
  if (taps.open >= MAX_TAPS) {
    return send(429, { error: `the control plane has ${MAX_TAPS} taps open already, its most at once` });
  }
  taps.open++;
  const proxyQuery = tapFilterQuery(withDestination(req, all));
  res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
  res.flushHeaders();

  let dropped = 0;
  let reportedDrops = 0;
  const write = (value: object, droppable: boolean): void => {
    if (res.writableEnded) return;
    if (droppable && res.writableLength > MAX_BUFFERED_BYTES) {
      dropped++;
      return;
    }
    res.write(JSON.stringify(value) + '\n');
  };
  const report = setInterval(() => {
    if (dropped === reportedDrops) return;
    reportedDrops = dropped;
    write({ type: 'drops', source: 'control-plane', rate_capped: 0, slow_consumer: dropped }, false);
  }, 1000);
  report.unref();

  const open = new Set<ProxyTap>();
  let live = targets.length;
  let finished = false;
  const finish = (): void => {
    if (finished) return;
    finished = true;
    taps.open--;
    clearInterval(report);
    for (const t of open) t.close();
    open.clear();
    if (!res.writableEnded) res.end();
  };
  const ended = (): void => {
    if (--live === 0) finish();
  };
  httpReq.socket.once('close', finish);
  res.once('close', finish);

  for (const target of targets) {
    const who = { namespace: target.namespace, workload: target.workload, instance: target.instance };
    const way = tapWay(target, clientTls);
    if (typeof way === 'string') {
      write({ type: 'error', ...who, error: way }, false);
      ended();
      continue;
    }
    const tap = openProxyTap(
      way.address,
      proxyQuery,
      {
        // Droppable whatever its type: a proxy that streamed other lines than exchanges (its own
        // "started", "drops" and "error" lines, or anything) filled the reader's buffer unbounded.
        onObject: (value) => write({ ...value, ...who }, true),
        onEnd: (error) => {
          open.delete(tap);
          if (error !== null) write({ type: 'error', ...who, admin: way.address, error }, false);
          ended();
        },
      },
      way.mtls,
    );
    if (finished) tap.close();
    else open.add(tap);
  }
}

/**
 * Where and how a proxy is tapped: its mTLS tap listener when it has one (proxy-tap-tls.ts), else
 * its admin listener; a reason when neither can be.
 */
function tapWay(
  target: TapTarget,
  clientTls: () => TapClientTls | null,
): { address: string; mtls: ProxyTapTls | null } | string {
  if (target.tap != null) {
    const client = clientTls();
    if (client === null) return 'the control plane has no client certificate to tap it over mTLS';
    return { address: target.tap.address, mtls: { client, expectedIdentity: target.tap.identity } };
  }
  if (target.admin === null) {
    return 'it has no proxy to tap (registered without an admin address or a tap port)';
  }
  return { address: target.admin, mtls: null };
}
