// Which routes apply to a request for one Service port from one client namespace (GAMMA,
// GEP-1294): a route attaches to the Service when one of its parentRefs names it (group "",
// kind Service, the Service's namespace, and the port when parentRef.port or sectionName is
// given). Producer routes live in the Service's namespace and apply to every client; consumer
// routes live in the client's namespace and apply only to its clients, replacing the producer
// routes for them when there is at least one. Pure.
import type { ParentRef, RouteResource } from './schema.ts';

/** One port of one Service: what a client addressed. */
export interface ParentPort {
  readonly namespace: string;
  readonly name: string;
  readonly port: number;
  /** The port's name, for parentRefs that give a sectionName. */
  readonly portName?: string | undefined;
}

/** True when `ref` (of a route in `routeNamespace`) names the Service of `parent`, whatever the port. */
export function namesService(
  ref: ParentRef,
  routeNamespace: string,
  parent: Pick<ParentPort, 'namespace' | 'name'>,
): boolean {
  return (
    ref.group === '' &&
    ref.kind === 'Service' &&
    ref.name === parent.name &&
    (ref.namespace ?? routeNamespace) === parent.namespace
  );
}

/** True when `ref` attaches its route to this port of the Service. */
export function attachesTo(ref: ParentRef, routeNamespace: string, parent: ParentPort): boolean {
  return (
    namesService(ref, routeNamespace, parent) &&
    (ref.port === undefined || ref.port === parent.port) &&
    (ref.sectionName === undefined || ref.sectionName === parent.portName)
  );
}

/** The routes that apply to `clientNamespace`'s requests for `parent`: its consumer routes if any, else the producer routes. */
export function routesFor(
  routes: readonly RouteResource[],
  parent: ParentPort,
  clientNamespace: string,
): RouteResource[] {
  const attached = routes.filter((r) =>
    r.spec.parentRefs.some((ref) => attachesTo(ref, r.namespace, parent)),
  );
  const consumer =
    clientNamespace === parent.namespace ? [] : attached.filter((r) => r.namespace === clientNamespace);
  return consumer.length > 0 ? consumer : attached.filter((r) => r.namespace === parent.namespace);
}
