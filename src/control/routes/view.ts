// What `trellis routes SERVICE` shows (src/cli/routes.ts), as one pure function over the routes
// and Services the control plane knows: the routes attached to the Service (producer routes of
// its namespace, consumer routes of other namespaces), each with its status per parent
// (status.ts) and its rules: matches, filters, backends with weights and their share of the
// rule's traffic, whether each backend resolves, timeouts and retry.
import type { FaultResource } from '../../core/routes/fault.ts';
import type { RouteResource } from '../../core/routes/schema.ts';
import { namesService } from '../../core/routes/select.ts';
import { unsentRoutes } from './route-bound.ts';
import { routeStatus, serviceHasPort, type ParentStatus, type ServiceIndex } from './status.ts';

export interface BackendView {
  readonly namespace: string;
  readonly name: string;
  readonly port: number | null;
  readonly weight: number;
  /** Percent of the rule's requests (weights over their sum; 0 when the sum is 0). */
  readonly share: number;
  readonly resolved: boolean;
}

export interface RuleView {
  readonly index: number;
  readonly name: string | null;
  readonly matches: readonly string[];
  readonly filters: readonly string[];
  readonly backends: readonly BackendView[];
  readonly timeouts: {
    readonly request?: string | undefined;
    readonly backendRequest?: string | undefined;
  } | null;
  readonly retry: {
    readonly codes: readonly number[];
    readonly attempts?: number | undefined;
    readonly backoff?: string | undefined;
  } | null;
}

export interface RouteView {
  readonly kind: RouteResource['kind'];
  readonly namespace: string;
  readonly name: string;
  /** producer: in the Service's namespace, for every client; consumer: for its own namespace's clients. */
  readonly role: 'producer' | 'consumer';
  readonly creationTimestamp: string;
  readonly parents: readonly ParentStatus[];
  readonly rules: readonly RuleView[];
}

export interface ServiceRoutesView {
  readonly namespace: string;
  readonly service: string;
  readonly ports: readonly number[];
  readonly routes: readonly RouteView[];
}

export function serviceRoutesView(
  routes: readonly RouteResource[],
  services: ServiceIndex,
  namespace: string,
  service: string,
  faults: readonly FaultResource[] = [],
): ServiceRoutesView {
  const attached = routes
    .filter((r) =>
      r.spec.parentRefs.some((ref) => namesService(ref, r.namespace, { namespace, name: service })),
    )
    .sort(
      (a, b) =>
        a.createdMs - b.createdMs || `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`),
    );
  const unsent = unsentRoutes(routes, services, faults);
  return {
    namespace,
    service,
    ports: (services.get(`${namespace}/${service}`) ?? []).map((p) => p.port),
    routes: attached.map((route) => ({
      kind: route.kind,
      namespace: route.namespace,
      name: route.name,
      role: route.namespace === namespace ? 'producer' : 'consumer',
      creationTimestamp: new Date(route.createdMs).toISOString(),
      parents: routeStatus(route, services, faults, new Map(), unsent).filter((p) =>
        namesService(p.parentRef, route.namespace, { namespace, name: service }),
      ),
      rules: route.spec.rules.map((rule, index) => ruleView(route, rule, index, services)),
    })),
  };
}

type AnyRule = RouteResource['spec']['rules'][number];

function ruleView(route: RouteResource, rule: AnyRule, index: number, services: ServiceIndex): RuleView {
  const total = rule.backendRefs.reduce((sum, b) => sum + b.weight, 0);
  return {
    index,
    name: rule.name ?? null,
    matches: rule.matches.map((m) => describeMatch(m as Record<string, unknown>)),
    filters: [...rule.filters.map((f) => f.type)],
    backends: rule.backendRefs.map((b) => {
      const ns = b.namespace ?? route.namespace;
      return {
        namespace: ns,
        name: b.name,
        port: b.port ?? null,
        weight: b.weight,
        share: total === 0 ? 0 : Math.round((1000 * b.weight) / total) / 10,
        resolved: b.group === '' && b.kind === 'Service' && serviceHasPort(services, ns, b.name, b.port ?? 0),
      };
    }),
    timeouts: 'timeouts' in rule && rule.timeouts !== undefined ? rule.timeouts : null,
    retry: 'retry' in rule && rule.retry !== undefined ? rule.retry : null,
  };
}

/** One match in a line: "PathPrefix /v2, GET, header version=two, query animal=whale" or "service pkg.Echo". */
function describeMatch(match: Record<string, unknown>): string {
  const parts: string[] = [];
  const path = match.path as { type: string; value: string } | undefined;
  if (path !== undefined) parts.push(`${path.type} ${path.value}`);
  if (typeof match.method === 'string') parts.push(match.method);
  const grpc = match.method as { type: string; service?: string; method?: string } | undefined;
  if (typeof grpc === 'object' && grpc !== null) {
    const regex = grpc.type === 'RegularExpression' ? ' (regex)' : '';
    parts.push(`${grpc.service ?? '*'}/${grpc.method ?? '*'}${regex}`);
  }
  for (const h of (match.headers as { type: string; name: string; value: string }[] | undefined) ?? [])
    parts.push(`header ${h.name}${h.type === 'RegularExpression' ? '~' : '='}${h.value}`);
  for (const q of (match.queryParams as { type: string; name: string; value: string }[] | undefined) ?? [])
    parts.push(`query ${q.name}${q.type === 'RegularExpression' ? '~' : '='}${q.value}`);
  return parts.length === 0 ? 'any request' : parts.join(', ');
}
