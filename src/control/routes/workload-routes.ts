// The routes of one workload, for the dashboard's workload page (GET /api/workload-routes of the
// route component, component.ts): the Services the workload backs, each with the view
// `trellis routes SERVICE` shows (view.ts: attached routes, their status, rules and backends).
// A Service backs the workload when one of its endpoints names it (the `workload` label that
// Kubernetes discovery sets from the pod's owner), or when it has the workload's name in the
// workload's namespace (on one machine a workload is named by the Service it registers under).
// Pure.
import type { ServiceView } from '../server.ts';
import type { RouteSnapshot } from './route-set.ts';
import { serviceRoutesView, type ServiceRoutesView } from './view.ts';

export interface WorkloadRoutesView {
  readonly namespace: string;
  readonly workload: string;
  /** The Services it backs, by name, each with its routes. */
  readonly services: readonly ServiceRoutesView[];
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
): WorkloadRoutesView {
  return {
    namespace,
    workload,
    services: servicesOfWorkload(snapshot, catalog, namespace, workload).map((service) =>
      serviceRoutesView(snapshot.routes, snapshot.services, namespace, service, snapshot.faults ?? []),
    ),
  };
}
