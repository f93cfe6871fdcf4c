// The routes of one workload, for the dashboard's workload page (GET /api/workload-routes of the
// route component, component.ts): the Services the workload backs, each with the view
// `trellis routes SERVICE` shows (view.ts: attached routes, their status, rules and backends).
// A Service backs the workload when one of its endpoints names it (the `workload` label that
// Kubernetes discovery sets from the pod's owner), or when it has the workload's name in the
// workload's namespace (on one machine a workload is named by the Service it registers under).
// And the outbound view: the Services the workload's own calls go to, as far as the control plane
// knows them, each with the routes that apply to those calls (GEP-1294: the consumer routes of the
// workload's namespace when there are any, else the Service's producer routes). It knows a Service
// from a consumer route of the workload's namespace that names it (a route there whose parentRef
// is a Service of another namespace), or from the edges (src/control/metrics/edges.ts): the
// workload's proxies were seen calling a workload that backs it. A Service it calls but has not
// called since its proxies started, and routes by port (the view is per Service), are not shown.
// Pure.
import type { Edge } from '../metrics/edges.ts';
import type { ServiceView } from '../server.ts';
import type { RouteSnapshot } from './route-set.ts';
import { serviceRoutesView, type ServiceRoutesView } from './view.ts';

export interface WorkloadRoutesView {
  readonly namespace: string;
  readonly workload: string;
  /** The Services it backs, by name, each with its routes. */
  readonly services: readonly ServiceRoutesView[];
  /** The Services it calls, by namespace and name, each with the routes that apply to its calls. */
  readonly outbound: readonly OutboundServiceView[];
}

/** How the control plane knows that a workload calls a Service. */
export type OutboundEvidence = 'consumer-route' | 'calls';

export interface OutboundServiceView extends ServiceRoutesView {
  /** consumer-route: a route of the workload's namespace names it; calls: its edges show calls. */
  readonly known_by: readonly OutboundEvidence[];
}

/** The names of the Services of `namespace` that `workload` backs, sorted. */
export function servicesOfWorkload(
  snapshot: RouteSnapshot,
  catalog: readonly ServiceView[],
  namespace: string,
  workload: string,
): string[] {
  const names = new Set<string>();
  if (snapshot.services.has(`${namespace}/${workload}`)) names.add(workload);
  for (const service of catalog) {
    if (service.namespace !== namespace) continue;
    if (service.name === workload) names.add(service.name);
    else if (service.ports.some((p) => p.endpoints.some((e) => e.labels.workload === workload)))
      names.add(service.name);
  }
  return [...names].sort();
}

export function workloadRoutesView(
  snapshot: RouteSnapshot,
  catalog: readonly ServiceView[],
  namespace: string,
  workload: string,
  edges: readonly Edge[] = [],
): WorkloadRoutesView {
  return {
    namespace,
    workload,
    services: servicesOfWorkload(snapshot, catalog, namespace, workload).map((service) =>
      serviceRoutesView(snapshot.routes, snapshot.services, namespace, service, snapshot.faults ?? []),
    ),
    outbound: outboundViews(snapshot, catalog, namespace, workload, edges),
  };
}

/** The Services `workload` calls ("namespace/name", sorted) with how each is known. */
export function servicesCalledBy(
  snapshot: RouteSnapshot,
  catalog: readonly ServiceView[],
  namespace: string,
  workload: string,
  edges: readonly Edge[],
): Map<string, OutboundEvidence[]> {
  const found = new Map<string, OutboundEvidence[]>();
  const add = (ns: string, name: string, why: OutboundEvidence) => {
    const key = `${ns}/${name}`;
    const list = found.get(key) ?? [];
    if (!list.includes(why)) list.push(why);
    found.set(key, list);
  };
  for (const route of snapshot.routes) {
    if (route.namespace !== namespace) continue;
    for (const ref of route.spec.parentRefs) {
      const refNamespace = ref.namespace ?? route.namespace;
      if (ref.group === '' && ref.kind === 'Service' && refNamespace !== namespace)
        add(refNamespace, ref.name, 'consumer-route');
    }
  }
  for (const edge of edges) {
    if (edge.src_namespace !== namespace || edge.src !== workload) continue;
    for (const service of servicesOfWorkload(snapshot, catalog, edge.dst_namespace, edge.dst))
      add(edge.dst_namespace, service, 'calls');
  }
  return new Map([...found].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

function outboundViews(
  snapshot: RouteSnapshot,
  catalog: readonly ServiceView[],
  namespace: string,
  workload: string,
  edges: readonly Edge[],
): OutboundServiceView[] {
  return [...servicesCalledBy(snapshot, catalog, namespace, workload, edges)].map(([key, knownBy]) => {
    const slash = key.indexOf('/');
    const view = serviceRoutesView(
      snapshot.routes,
      snapshot.services,
      key.slice(0, slash),
      key.slice(slash + 1),
      snapshot.faults ?? [],
    );
    // The consumer routes of the caller's namespace replace the producer routes for its calls.
    const consumer = view.routes.filter((r) => r.role === 'consumer' && r.namespace === namespace);
    const routes = consumer.length > 0 ? consumer : view.routes.filter((r) => r.role === 'producer');
    return { ...view, routes, known_by: knownBy };
  });
}
