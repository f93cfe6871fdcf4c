// The routes a route source knows as Kubernetes-shaped objects with their status (status.ts), for
// GET /api/routes of the route component (component.ts) and `trellis get httproutes|grpcroutes`
// (src/cli/get.ts): on one machine the status `trellis routes` shows, on Kubernetes the status the
// control plane writes back. Pure.
import { routeDocument } from '../../core/routes/parse.ts';
import { unsentRoutes } from './route-bound.ts';
import { routeStatus } from './status.ts';
import type { RouteSnapshot } from './route-set.ts';

export interface RouteObjectFilter {
  /** HTTPRoute or GRPCRoute; absent: both. */
  readonly kind?: string | undefined;
  /** Absent: every namespace. */
  readonly namespace?: string | undefined;
  readonly name?: string | undefined;
}

/** The routes that pass `filter`, sorted by kind, namespace and name, each with `status.parents`. */
export function routeObjects(snapshot: RouteSnapshot, filter: RouteObjectFilter): Record<string, unknown>[] {
  const faults = snapshot.faults ?? [];
  const unsent = unsentRoutes(snapshot.routes, snapshot.services, faults);
  return snapshot.routes
    .filter(
      (r) =>
        (filter.kind === undefined || r.kind === filter.kind) &&
        (filter.namespace === undefined || r.namespace === filter.namespace) &&
        (filter.name === undefined || r.name === filter.name),
    )
    .sort((a, b) => `${a.kind}/${a.namespace}/${a.name}`.localeCompare(`${b.kind}/${b.namespace}/${b.name}`))
    .map((route) => ({
      ...routeDocument(route),
      status: { parents: routeStatus(route, snapshot.services, faults, new Map(), unsent) },
    }));
}
