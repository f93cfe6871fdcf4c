// Warm start: what the first requests of an app would otherwise wait for, done while the proxy
// starts. Without it, the first request to a service loads the Destination API client
// (@grpc/grpc-js: about 120 ms of module loading on this class of machine), opens its Watch and
// the routes' Watch, and makes the first mTLS connection to the picked endpoint; every request
// that arrives meanwhile queues behind it (issue 10's tail latency: a 140 ms stall at the first
// requests of a fresh pair).
//
// - The Destination and Routes clients are loaded at start when the proxy will need them or has
//   @grpc/grpc-js loaded anyway: with a static destination that names a service, or with the
//   control plane's Identity or Policy API (every proxy of `trellis run` and of Kubernetes). A
//   proxy that only ever forwards to addresses never loads gRPC (its memory).
// - A static destination (`--destination LISTEN=SERVICE:PORT`) is the service its app will call:
//   its endpoints and routes are resolved, and a connection to each of its meshed endpoints (up
//   to MAX_WARM_ENDPOINTS, all at once) is opened (the mTLS connection that carries HTTP/1
//   requests as HTTP/2 streams), before the proxy says it is ready, for at most `budgetMs`: the
//   balancer spreads the first requests over every endpoint, and none of them should wait for a
//   handshake. No pick is left open (no load stays counted on an endpoint). A destination that
//   cannot be resolved or reached in time is only logged: readiness never depends on another
//   workload.
import type { Logger } from '../../core/log.ts';
import { meshIdentityOf, type Endpoint } from '../../core/endpoints.ts';
import type { Target } from '../../core/target.ts';
import { targetKey } from '../../core/target.ts';
import type { MeshOutbound } from '../mesh/outbound.ts';
import type { ServiceDiscovery } from './discovery.ts';
import type { OutboundRoutes } from './routes.ts';

export interface WarmUpParts {
  readonly discovery: ServiceDiscovery;
  readonly routes: OutboundRoutes | null;
  /** null: the proxy has no identity (meshed endpoints are not reached over mTLS). */
  readonly mesh: MeshOutbound | null;
  /** Loads the control-plane clients (no-op without a control plane). */
  readonly preload: () => Promise<void>;
  /** Load them even when no static destination names a service (gRPC is in the process anyway). */
  readonly preloadAlways: boolean;
  readonly log: Logger;
}

/** A static destination and whether its app speaks HTTP/1 to it (only then a connection is opened ahead). */
export interface WarmTarget {
  readonly target: Target;
  readonly http1: boolean;
}

/**
 * What the warm-up did for each target, for the log and the tests: `connected`, every meshed
 * endpoint warmed has its connection; `partial`, some do; `unreachable`, none.
 */
export type WarmOutcome =
  'connected' | 'partial' | 'resolved' | 'direct' | 'unresolved' | 'unreachable' | 'timeout';

/** At most this many endpoints of one static destination get a connection opened ahead. */
export const MAX_WARM_ENDPOINTS = 8;

/**
 * Warms the proxy for `targets`; resolves when all are done or `budgetMs` passed (whichever is
 * first), with each target's outcome by its "host:port".
 */
export async function warmUp(
  parts: WarmUpParts,
  targets: readonly WarmTarget[],
  budgetMs: number,
): Promise<Map<string, WarmOutcome>> {
  const outcomes = new Map<string, WarmOutcome>();
  const services: WarmTarget[] = [];
  for (const t of targets) {
    if (parts.discovery.isLogical(t.target)) services.push(t);
    else outcomes.set(targetKey(t.target), 'direct');
  }
  const loaded =
    services.length > 0 || parts.preloadAlways
      ? parts.preload().catch((error: unknown) => {
          parts.log.debug('warm-up: cannot load the control-plane clients', { error });
        })
      : null;
  // Nothing to wait for: without services, the clients (if any) load in the background.
  if (services.length === 0) return outcomes;
  for (const t of services) outcomes.set(targetKey(t.target), 'timeout');
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, budgetMs);
    timer.unref();
  });
  const work = Promise.all(
    services.map(async (t) => {
      await loaded;
      outcomes.set(targetKey(t.target), await warmService(parts, t));
    }),
  );
  await Promise.race([work, deadline]);
  clearTimeout(timer);
  for (const [key, outcome] of outcomes) {
    if (outcome !== 'connected' && outcome !== 'direct' && outcome !== 'resolved')
      parts.log.info('warm-up: destination not ready yet; its first request will wait for it', {
        destination: key,
        outcome,
      });
  }
  return outcomes;
}

/** Resolves a service's endpoints and routes, then opens the connections its first requests will use. */
async function warmService(parts: WarmUpParts, t: WarmTarget): Promise<WarmOutcome> {
  const [pick] = await Promise.all([parts.discovery.pick(t.target), parts.routes?.tableFor(t.target)]);
  if (!('address' in pick)) return 'unresolved';
  pick.done(); // no request goes with this pick: it leaves no count on the endpoint
  if (pick.endpoint === null) return 'direct';
  const mesh = parts.mesh;
  if (mesh === null || !t.http1) return 'resolved';
  const meshed = meshedEndpoints(parts.discovery.endpointsOf(t.target));
  if (meshed.length === 0) return 'resolved';
  const results = await Promise.all(
    meshed.map(([endpoint, identity]) => connectAhead(mesh, endpoint, identity)),
  );
  const connected = results.filter(Boolean).length;
  if (connected === results.length) return 'connected';
  return connected === 0 ? 'unreachable' : 'partial';
}

/** The first MAX_WARM_ENDPOINTS meshed endpoints, each with the identity it must prove. */
function meshedEndpoints(endpoints: readonly Endpoint[]): [Endpoint, string][] {
  const out: [Endpoint, string][] = [];
  for (const endpoint of endpoints) {
    const identity = meshIdentityOf(endpoint);
    if (identity !== null) out.push([endpoint, identity]);
    if (out.length === MAX_WARM_ENDPOINTS) break;
  }
  return out;
}

/** Opens the mesh connection HTTP/1 requests to `endpoint` will use; whether it connected. */
function connectAhead(mesh: MeshOutbound, endpoint: Endpoint, identity: string): Promise<boolean> {
  return new Promise((resolve) => {
    mesh.h1Pool.connection(endpoint.address, identity, (conn) => resolve(conn !== null));
  });
}
