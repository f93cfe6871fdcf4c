// The RouteSet one proxy watches for one Service port (src/api/route.proto), built from what the
// control plane knows: the routes that apply to the asking client's namespace (select.ts
// routesFor: its consumer routes, else the producer routes), each with its spec as JSON, and the
// backends of those routes that do not resolve (status.ts), the Service's traffic annotations,
// and the HTTPFaults their ExtensionRefs name (src/core/routes/fault.ts). The retry budget of the
// XBackendTrafficPolicy that targets the Service (src/core/routes/backend-traffic-policy.ts, the
// oldest when several do) replaces the retry.trellis.io/budget-* annotations of the Service and
// of its routes: the proxy reads one set of annotations either way. The routes that would take the
// set over the bytes it may carry are left out, the oldest kept first (route-bound.ts). Pure.
import type { ApiRouteSet, ApiRouteTargetOutput } from '../../api/load.ts';
import {
  backendPolicyFor,
  budgetAnnotations,
  retryBudgetOf,
  type BackendPolicyResource,
} from '../../core/routes/backend-traffic-policy.ts';
import type { FaultResource } from '../../core/routes/fault.ts';
import type { RouteResource } from '../../core/routes/schema.ts';
import { routesFor } from '../../core/routes/select.ts';
import { referencedFaults } from './extensions.ts';
import { boundRoutes, byPrecedence, type UnsentRoute } from './route-bound.ts';
import { unresolvedBackends, type ServiceIndex } from './status.ts';

/** Every route and Service a route source knows, at one moment. */
export interface RouteSnapshot {
  readonly routes: readonly RouteResource[];
  readonly services: ServiceIndex;
  /** "namespace/name" -> the Service's traffic annotations (only Services that have some). */
  readonly serviceAnnotations: ReadonlyMap<string, Readonly<Record<string, string>>>;
  /** The HTTPFaults routes may name through ExtensionRef (none when absent). */
  readonly faults?: readonly FaultResource[];
  /** The XBackendTrafficPolicies (none when absent). */
  readonly backendPolicies?: readonly BackendPolicyResource[];
}

/** A Service's traffic annotations as its route set carries them: the budget of its policy laid over. */
function withPolicyBudget(
  annotations: Readonly<Record<string, string>>,
  policy: BackendPolicyResource | null,
): Readonly<Record<string, string>> {
  return policy === null ? annotations : { ...annotations, ...budgetAnnotations(retryBudgetOf(policy)) };
}

/** A route's annotations without the retry budget's (the Service's policy sets the budget). */
function withoutBudget(annotations: Readonly<Record<string, string>>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(annotations).filter(([name]) => !name.startsWith('retry.trellis.io/budget-')),
  );
}

export function buildRouteSet(snapshot: RouteSnapshot, target: ApiRouteTargetOutput): ApiRouteSet {
  return boundedRouteSet(snapshot, target).set;
}

/** The set, and the routes that apply but were left out to keep it within its bound. */
export function boundedRouteSet(
  snapshot: RouteSnapshot,
  target: ApiRouteTargetOutput,
): { set: ApiRouteSet; unsent: UnsentRoute[] } {
  const portName = snapshot.services
    .get(`${target.namespace}/${target.service}`)
    ?.find((p) => p.port === target.port)?.name;
  const parent = { namespace: target.namespace, name: target.service, port: target.port, portName };
  const { kept: routes, unsent } = boundRoutes(
    routesFor(snapshot.routes, parent, target.clientNamespace).sort(byPrecedence),
    snapshot.services,
    snapshot.faults ?? [],
  );
  const unresolved = new Set(routes.flatMap((r) => unresolvedBackends(r, snapshot.services)));
  const policy = backendPolicyFor(snapshot.backendPolicies ?? [], target.namespace, target.service);
  const set = {
    routes: routes.map((r) => ({
      kind: r.kind,
      namespace: r.namespace,
      name: r.name,
      createdMs: r.createdMs,
      specJson: JSON.stringify(r.spec),
      annotations: policy === null ? (r.annotations ?? {}) : withoutBudget(r.annotations ?? {}),
    })),
    unresolvedBackends: [...unresolved].sort(),
    serviceAnnotations: withPolicyBudget(
      snapshot.serviceAnnotations.get(`${target.namespace}/${target.service}`) ?? {},
      policy,
    ),
    extensions: referencedFaults(routes, snapshot.faults ?? []).map((f) => ({
      kind: f.kind,
      namespace: f.namespace,
      name: f.name,
      specJson: JSON.stringify(f.spec),
    })),
  };
  return { set, unsent };
}
