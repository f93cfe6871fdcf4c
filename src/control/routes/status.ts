// The status of routes, as the Gateway API writes it (RouteParentStatus per parentRef, with the
// conditions Accepted, ResolvedRefs and PartiallyInvalid and their reasons), computed from the
// routes and the Services the control plane knows; shown by `trellis routes` on one machine.
//
//   Accepted      True/Accepted, or False/NoMatchingParent (no such Service, or no such port or
//                 port name on it; or a parent that is not a Service: Trellis has no Gateways),
//                 or False/RouteSetTooLarge (not sent to proxies for the ports named: with the
//                 older routes of its set it would take the set over the bytes a set may carry,
//                 route-bound.ts)
//   ResolvedRefs  True/ResolvedRefs, or False with the first problem among the backendRefs and
//                 mirrors: InvalidKind (not a Service), BackendNotFound (no such Service or port),
//                 RefNotPermitted (another namespace's Service: Trellis has no ReferenceGrant yet,
//                 except a consumer route naming its parent Service)
//   PartiallyInvalid  True/UnsupportedValue when a rule holds an ExtensionRef that names no
//                 HTTPFault of the route's namespace (or an invalid one, on Kubernetes, with its
//                 problem), or one of its backends holds any ExtensionRef
//                 (that rule, or that backend's share, answers 500)
//
// A backend that does not resolve keeps its weight: its share of requests gets 500 (matcher).
import type { FaultResource } from '../../core/routes/fault.ts';
import type { ParentRef, RouteResource } from '../../core/routes/schema.ts';
import { attachesTo, namesService } from '../../core/routes/select.ts';
import { ROUTE_SET_ROUTE_BYTES } from '../../api/route-set-bound.ts';
import { unresolvedExtension } from './extensions.ts';
import { formatBytes, routeKey, type UnsentPort, type UnsentRoutes } from './route-bound.ts';

export const CONTROLLER_NAME = 'trellis.dev/mesh';

/** The Services a route may name: "namespace/name" -> their ports. */
export type ServiceIndex = ReadonlyMap<
  string,
  readonly { readonly port: number; readonly name?: string | undefined }[]
>;

export interface Condition {
  readonly type: 'Accepted' | 'ResolvedRefs' | 'PartiallyInvalid';
  readonly status: 'True' | 'False';
  readonly reason: string;
  readonly message: string;
}

export interface ParentStatus {
  readonly parentRef: ParentRef;
  readonly controllerName: string;
  readonly conditions: readonly Condition[];
}

/** True when the Service `namespace/name` has `port`. */
export function serviceHasPort(
  services: ServiceIndex,
  namespace: string,
  name: string,
  port: number,
): boolean {
  return services.get(`${namespace}/${name}`)?.some((p) => p.port === port) ?? false;
}

export function routeStatus(
  route: RouteResource,
  services: ServiceIndex,
  faults: readonly FaultResource[] = [],
  invalidFaults: ReadonlyMap<string, string> = new Map(),
  unsent: UnsentRoutes = new Map(),
): ParentStatus[] {
  const refs = backendProblem(route, services);
  const extension = unresolvedExtension(route, faults, invalidFaults);
  const unsentPorts = unsent.get(routeKey(route)) ?? [];
  return route.spec.parentRefs.map((parentRef) => {
    const accepted = parentProblem(parentRef, route.namespace, services);
    const tooLarge = unsentPorts.filter((p) => attachesTo(parentRef, route.namespace, p));
    const conditions: Condition[] = [
      accepted !== null
        ? { type: 'Accepted', status: 'False', reason: 'NoMatchingParent', message: accepted }
        : tooLarge.length > 0
          ? {
              type: 'Accepted',
              status: 'False',
              reason: 'RouteSetTooLarge',
              message: tooLargeMessage(route, tooLarge),
            }
          : { type: 'Accepted', status: 'True', reason: 'Accepted', message: 'attached to the Service' },
      refs === null
        ? { type: 'ResolvedRefs', status: 'True', reason: 'ResolvedRefs', message: 'every backend resolves' }
        : { type: 'ResolvedRefs', status: 'False', reason: refs.reason, message: refs.message },
    ];
    if (extension !== null)
      conditions.push({
        type: 'PartiallyInvalid',
        status: 'True',
        reason: 'UnsupportedValue',
        message: `rule ${extension.rule}: ${extension.message}; the rule (or that backend's share) answers 500`,
      });
    return { parentRef, controllerName: CONTROLLER_NAME, conditions };
  });
}

/** Why a route is not sent for these ports of its parent (all of one Service). */
function tooLargeMessage(route: RouteResource, ports: readonly UnsentPort[]): string {
  const { namespace, name, bytes, keptBytes } = ports[0]!;
  const which =
    ports.length === 1 ? `port ${ports[0]!.port}` : `ports ${ports.map((p) => p.port).join(', ')}`;
  const why =
    bytes > ROUTE_SET_ROUTE_BYTES
      ? `this route alone takes ${formatBytes(bytes)}`
      : `this route (${formatBytes(bytes)}) with the older routes kept before it (${formatBytes(keptBytes)}) takes more`;
  return (
    `not sent to proxies for ${which}: ${why} than the ${formatBytes(ROUTE_SET_ROUTE_BYTES)} one route set ` +
    `may carry (the routes of namespace ${route.namespace} attached to Service ${namespace}/${name}, ` +
    'the oldest first)'
  );
}

function parentProblem(ref: ParentRef, routeNamespace: string, services: ServiceIndex): string | null {
  if (ref.group !== '' || ref.kind !== 'Service')
    return `${ref.group || 'core'}/${ref.kind} parents are not supported: Trellis routes attach to Services`;
  const namespace = ref.namespace ?? routeNamespace;
  const ports = services.get(`${namespace}/${ref.name}`);
  if (ports === undefined) return `no Service ${ref.name} in namespace ${namespace}`;
  if (ref.port !== undefined && !ports.some((p) => p.port === ref.port))
    return `Service ${namespace}/${ref.name} has no port ${ref.port}`;
  if (ref.sectionName !== undefined && !ports.some((p) => p.name === ref.sectionName))
    return `Service ${namespace}/${ref.name} has no port named ${ref.sectionName}`;
  return null;
}

interface Ref {
  readonly group: string;
  readonly kind: string;
  readonly name: string;
  readonly namespace?: string | undefined;
  readonly port?: number | undefined;
}

/** Every Service reference of a route: backendRefs and mirror targets, of rules and of backends. */
export function backendRefsOf(route: RouteResource): Ref[] {
  const out: Ref[] = [];
  for (const rule of route.spec.rules) {
    const filters = [...rule.filters, ...rule.backendRefs.flatMap((b) => b.filters)];
    out.push(...rule.backendRefs);
    for (const f of filters) if (f.requestMirror) out.push(f.requestMirror.backendRef);
  }
  return out;
}

function backendProblem(
  route: RouteResource,
  services: ServiceIndex,
): { reason: string; message: string } | null {
  for (const ref of backendRefsOf(route)) {
    const namespace = ref.namespace ?? route.namespace;
    if (ref.group !== '' || ref.kind !== 'Service')
      return {
        reason: 'InvalidKind',
        message: `backend ${ref.name}: ${ref.group || 'core'}/${ref.kind} is not a Service`,
      };
    if (namespace !== route.namespace) {
      const parentItself = route.spec.parentRefs.some((p) =>
        namesService(p, route.namespace, { namespace, name: ref.name }),
      );
      if (!parentItself)
        return {
          reason: 'RefNotPermitted',
          message: `backend ${namespace}/${ref.name}: another namespace's Service (only a consumer route's own parent is allowed)`,
        };
    }
    if (!serviceHasPort(services, namespace, ref.name, ref.port ?? 0))
      return {
        reason: 'BackendNotFound',
        message: services.has(`${namespace}/${ref.name}`)
          ? `backend ${namespace}/${ref.name} has no port ${ref.port}`
          : `no Service ${ref.name} in namespace ${namespace}`,
      };
  }
  return null;
}

/** The backends the proxy must answer 500 for: "namespace/name:port" of every unresolvable Service reference. */
export function unresolvedBackends(route: RouteResource, services: ServiceIndex): string[] {
  const out = new Set<string>();
  for (const ref of backendRefsOf(route)) {
    const namespace = ref.namespace ?? route.namespace;
    const parentItself = route.spec.parentRefs.some((p) =>
      namesService(p, route.namespace, { namespace, name: ref.name }),
    );
    const permitted = namespace === route.namespace || parentItself;
    if (
      ref.group !== '' ||
      ref.kind !== 'Service' ||
      !permitted ||
      !serviceHasPort(services, namespace, ref.name, ref.port ?? 0)
    )
      out.add(`${namespace}/${ref.name}:${ref.port ?? 0}`);
  }
  return [...out].sort();
}
