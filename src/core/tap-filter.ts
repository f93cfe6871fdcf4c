// The filters of a live tap (`trellis tap`, tap-hub.ts): which finished exchanges a tap wants, and
// its rate cap. They travel as a query string, from the CLI to the control plane
// (GET /api/tap) and from the control plane to each proxy (its admin GET /tap); parseTapFilter
// reads one (strictly: an unknown or repeated-where-single parameter is an error, never ignored)
// and tapFilterQuery writes one back, so the two sides cannot drift apart.
import type { Direction } from './golden-metrics.ts';

/** Events per second a tap gets when it asks for no cap, and the most any tap may ask for. */
export const TAP_DEFAULT_MAX_RPS = 100;
export const TAP_HARD_MAX_RPS = 1000;

export interface TapFilter {
  /** Exact request method (case-sensitive, as HTTP methods are); null: any. */
  readonly method: string | null;
  /** Prefix of the request path (the path as sent, query included); null: any. */
  readonly pathPrefix: string | null;
  /** Exact authority (Host / :authority); null: any. */
  readonly authority: string | null;
  /** Only exchanges of this direction; null: both. */
  readonly direction: Direction | null;
  /**
   * `--to`: only outbound exchanges to these destinations: an authority whose host is one of
   * `toHosts` (or starts with one and a dot: `web` matches `web.ns.svc.cluster.local`), or whose
   * endpoint address is one of `toAddresses`. Both empty: no destination filter.
   */
  readonly toHosts: readonly string[];
  readonly toAddresses: readonly string[];
  /** Events per second at most (1..TAP_HARD_MAX_RPS). */
  readonly maxRps: number;
}

export const EMPTY_TAP_FILTER: TapFilter = {
  method: null,
  pathPrefix: null,
  authority: null,
  direction: null,
  toHosts: [],
  toAddresses: [],
  maxRps: TAP_DEFAULT_MAX_RPS,
};

const SINGLE = ['method', 'path', 'authority', 'direction', 'max_rps'] as const;
const REPEATED = ['to_host', 'to_addr'] as const;
/** Parameters the control plane reads beside the filter (which proxies to tap, how many events). */
const KNOWN = new Set<string>([...SINGLE, ...REPEATED]);
/** A bound on each value and on the lists, so a filter is small whatever it is sent. */
const MAX_VALUE_CHARS = 1024;
const MAX_LIST = 64;
const METHOD = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/**
 * The filter of a query; a message saying what is wrong otherwise. `extra`: parameter names the
 * caller reads itself (they are not errors here).
 */
export function parseTapFilter(query: URLSearchParams, extra: readonly string[] = []): TapFilter | string {
  for (const name of new Set(query.keys())) {
    if (!KNOWN.has(name) && !extra.includes(name)) return `unknown parameter '${name}'`;
    const values = query.getAll(name);
    if ((SINGLE as readonly string[]).includes(name) && values.length > 1) return `'${name}' given twice`;
    if (values.length > MAX_LIST) return `more than ${MAX_LIST} values of '${name}'`;
    for (const value of values) {
      if (value.length > MAX_VALUE_CHARS) return `'${name}' is longer than ${MAX_VALUE_CHARS} characters`;
      if (value === '' && KNOWN.has(name)) return `'${name}' is empty`;
    }
  }
  const method = query.get('method');
  if (method !== null && !METHOD.test(method)) return `'method' is not an HTTP method: '${method}'`;
  const direction = query.get('direction');
  if (direction !== null && direction !== 'inbound' && direction !== 'outbound')
    return `'direction' must be inbound or outbound, got '${direction}'`;
  const rps = query.get('max_rps');
  let maxRps = TAP_DEFAULT_MAX_RPS;
  if (rps !== null) {
    if (!/^\d{1,7}$/.test(rps) || Number(rps) < 1 || Number(rps) > TAP_HARD_MAX_RPS)
      return `'max_rps' must be a whole number from 1 to ${TAP_HARD_MAX_RPS}, got '${rps}'`;
    maxRps = Number(rps);
  }
  const path = query.get('path');
  if (path !== null && !path.startsWith('/')) return `'path' must start with '/', got '${path}'`;
  return {
    method,
    pathPrefix: path,
    authority: query.get('authority'),
    direction,
    toHosts: query.getAll('to_host'),
    toAddresses: query.getAll('to_addr'),
    maxRps,
  };
}

/** The query string of a filter ("" for the empty filter with the default cap), without '?'. */
export function tapFilterQuery(filter: TapFilter): string {
  const q = new URLSearchParams();
  if (filter.method !== null) q.set('method', filter.method);
  if (filter.pathPrefix !== null) q.set('path', filter.pathPrefix);
  if (filter.authority !== null) q.set('authority', filter.authority);
  if (filter.direction !== null) q.set('direction', filter.direction);
  for (const host of filter.toHosts) q.append('to_host', host);
  for (const address of filter.toAddresses) q.append('to_addr', address);
  if (filter.maxRps !== TAP_DEFAULT_MAX_RPS) q.set('max_rps', String(filter.maxRps));
  return q.toString();
}

/** What a filter is matched against: the exchange as the tap event describes it. */
export interface TapMatchable {
  readonly direction: Direction;
  readonly method: string;
  readonly path: string;
  readonly authority: string;
  /** Outbound: the endpoint's address ('' when unknown). */
  readonly destination: string;
}

/** Whether an exchange passes a filter (the rate cap is the hub's). */
export function tapMatches(filter: TapFilter, e: TapMatchable): boolean {
  if (filter.direction !== null && e.direction !== filter.direction) return false;
  if (filter.method !== null && e.method !== filter.method) return false;
  if (filter.pathPrefix !== null && !e.path.startsWith(filter.pathPrefix)) return false;
  if (filter.authority !== null && e.authority !== filter.authority) return false;
  if (filter.toHosts.length === 0 && filter.toAddresses.length === 0) return true;
  if (e.direction !== 'outbound') return false;
  if (e.destination !== '' && filter.toAddresses.includes(e.destination)) return true;
  const host = authorityHost(e.authority);
  return filter.toHosts.some((h) => host === h || host.startsWith(`${h}.`));
}

/** The host of "host", "host:port" or "[v6]:port", lower-cased. */
export function authorityHost(authority: string): string {
  const end = authority.startsWith('[') ? authority.indexOf(']') + 1 : authority.lastIndexOf(':');
  return (end <= 0 ? authority : authority.slice(0, end)).toLowerCase();
}
