// The circuit breakers of one proxy as its admin listener shows them (GET /debug/breakers:
// BackendGuardView of src/proxy/balance/backend-guard.ts, one per guarded backend Service port
// with the state of each endpoint's breaker: closed, open, probing), read defensively (it is
// another process's answer) into counts per backend, and summed over the client proxies that
// guard one backend: an endpoint is open (or probing) when it is in any of them. Memory per proxy:
// at most MAX_BREAKER_BACKENDS backends, and per backend the counts and at most
// MAX_LISTED_ENDPOINTS addresses of endpoints that are not closed.
import { MAX_BREAKER_BACKENDS, type BreakerCounts } from './route-snapshot.ts';

/** Addresses of open or probing endpoints kept per backend. */
export const MAX_LISTED_ENDPOINTS = 32;

/** One backend's breakers in one proxy. */
export interface BackendBreakers {
  readonly mode: string | null;
  readonly endpoints: number;
  readonly open: readonly string[];
  readonly probing: readonly string[];
  /** Open and probing endpoints (the lists stop at MAX_LISTED_ENDPOINTS). */
  readonly openCount: number;
  readonly probingCount: number;
}

/** The answer of /debug/breakers by backend label ("web.shop.svc:80"); malformed entries are skipped. */
export function parseBreakerViews(json: unknown): Map<string, BackendBreakers> {
  const byBackend = new Map<string, BackendBreakers>();
  if (!Array.isArray(json)) return byBackend;
  for (const view of json as unknown[]) {
    if (byBackend.size >= MAX_BREAKER_BACKENDS) break;
    if (typeof view !== 'object' || view === null) continue;
    const { backend, mode, endpoints } = view as Record<string, unknown>;
    if (typeof backend !== 'string' || !Array.isArray(endpoints)) continue;
    const open: string[] = [];
    const probing: string[] = [];
    let openCount = 0;
    let probingCount = 0;
    for (const e of endpoints as unknown[]) {
      const { address, state } = (typeof e === 'object' && e !== null ? e : {}) as Record<string, unknown>;
      const where = state === 'open' ? open : state === 'probing' ? probing : null;
      if (where === null) continue;
      if (where === open) openCount++;
      else probingCount++;
      if (where.length < MAX_LISTED_ENDPOINTS && typeof address === 'string') where.push(address);
    }
    byBackend.set(backend, {
      mode: typeof mode === 'string' ? mode : null,
      endpoints: endpoints.length,
      open,
      probing,
      openCount,
      probingCount,
    });
  }
  return byBackend;
}

/** A backend Service port named by a breaker label: "NAME.NS[.svc[...]]:PORT", or "NAME:PORT" in `ownNamespace`. */
export function backendOfLabel(
  label: string,
  ownNamespace: string,
): { namespace: string; name: string; port: number } | null {
  const colon = label.lastIndexOf(':');
  const port = Number(label.slice(colon + 1));
  if (colon <= 0 || !Number.isInteger(port)) return null;
  const [name = '', namespace = ownNamespace] = label.slice(0, colon).split('.');
  return name === '' ? null : { namespace, name, port };
}

/** One backend's breakers over every client proxy that guards it (what `trellis routes` shows). */
export interface BreakerSummary {
  /** consecutive, success-rate, or null (only limits: max-pending-requests, max-connections). */
  readonly mode: string | null;
  /** Client proxies with a breaker for this backend. */
  readonly proxies: number;
  /** Its endpoints (the most any proxy knows). */
  readonly endpoints: number;
  /** Endpoints open in some proxy; probing: in some proxy, and open in none. */
  readonly open: number;
  readonly probing: number;
  readonly closed: number;
  readonly open_endpoints: readonly string[];
  readonly probing_endpoints: readonly string[];
  /** Over the window: endpoints tripped, requests failed fast (every endpoint tripped), refused over a limit. */
  readonly trips: number;
  readonly all_tripped: number;
  readonly overflow: number;
}

/** Sums the breakers of one backend over proxies (`states`) and its events over the window (`events`). */
export function summariseBreakers(
  states: readonly BackendBreakers[],
  events: readonly BreakerCounts[],
): BreakerSummary {
  const open = new Set<string>();
  const probing = new Set<string>();
  let endpoints = 0;
  let openCount = 0;
  let probingCount = 0;
  for (const s of states) {
    endpoints = Math.max(endpoints, s.endpoints);
    openCount = Math.max(openCount, s.openCount);
    probingCount = Math.max(probingCount, s.probingCount);
    for (const a of s.open) open.add(a);
    for (const a of s.probing) probing.add(a);
  }
  for (const a of open) probing.delete(a);
  // Addresses name the endpoints; when a proxy's lists were cut, the counts of the busiest stand.
  const cut = states.some((s) => s.openCount > s.open.length || s.probingCount > s.probing.length);
  const nOpen = Math.min(endpoints, cut ? Math.max(open.size, openCount) : open.size);
  const nProbing = Math.min(endpoints - nOpen, cut ? Math.max(probing.size, probingCount) : probing.size);
  const sum = (pick: (e: BreakerCounts) => number): number => events.reduce((n, e) => n + pick(e), 0);
  return {
    mode: states.find((s) => s.mode !== null)?.mode ?? null,
    proxies: states.length,
    endpoints,
    open: nOpen,
    probing: nProbing,
    closed: endpoints - nOpen - nProbing,
    open_endpoints: [...open].sort().slice(0, MAX_LISTED_ENDPOINTS),
    probing_endpoints: [...probing].sort().slice(0, MAX_LISTED_ENDPOINTS),
    trips: sum((e) => e.tripped),
    all_tripped: sum((e) => e.allTripped),
    overflow: sum((e) => e.overflow),
  };
}
