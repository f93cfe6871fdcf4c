// A RouteSet from the control plane (src/api/route.proto) compiled into the matcher's RouteTable
// (src/core/routes/matcher.ts): each route's spec is parsed and validated with the schema
// `trellis apply` uses (src/core/routes/parse.ts), its regular expressions compiled once, and the
// backends the control plane could not resolve marked so their share gets 500; the Service's
// traffic annotations (and each route's, laid over them) parsed into its traffic policy
// (src/core/routes/service-annotations.ts); and the HTTPFaults the rules' ExtensionRefs name
// (src/core/routes/fault.ts) validated and compiled into the rules (one the set does not carry
// leaves its rule answering 500). Never throws: a set
// with any route that does not validate is refused whole with the reason, and the caller keeps
// its last good table. Compiling a table turns on V8's linear-time fallback for regular
// expressions (src/core/routes/regex.ts), once per process.
//
// A Service's route set is sent whole on every change of any of its routes, and every calling
// proxy compiles it again; a route that did not change since the watch's last set is not parsed
// and validated again (validatedRoute), nor its patterns compiled again (matcher.ts): with 50
// routes of ~1 MB each (the size the API server allows), that was 0.5-0.8 s of the proxy's event
// loop per update.
import { createHash } from 'node:crypto';
import type { ApiRouteSetOutput } from '../../api/client.ts';
import {
  compileFault,
  FAULT_API_VERSION,
  validateFault,
  type CompiledFault,
} from '../../core/routes/fault.ts';
import { compileRouteTable, type RouteTable } from '../../core/routes/matcher.ts';
import { validateRoute } from '../../core/routes/parse.ts';
import { enableLinearRegexFallback } from '../../core/routes/regex.ts';
import type { RouteResource } from '../../core/routes/schema.ts';
import {
  DEFAULT_BUDGET,
  sameBudget,
  parseTrafficAnnotations,
  type ServiceTrafficPolicy,
} from '../../core/routes/service-annotations.ts';

/** A Service port's routes and its traffic policy (annotations of the Service and its routes). */
export interface PolicedRouteTable extends RouteTable {
  /** The Service's policy; absent: none (tests that build tables by hand). */
  readonly policy?: ServiceTrafficPolicy;
  /** "Kind namespace/name" -> the policy of a route with annotations of its own (laid over the Service's). */
  readonly routePolicies?: ReadonlyMap<string, ServiceTrafficPolicy>;
}

/** The key of routePolicies. */
export function routePolicyKey(route: { kind: string; namespace: string; name: string }): string {
  return `${route.kind} ${route.namespace}/${route.name}`;
}

export type CompiledRouteSet =
  | { readonly ok: true; readonly table: PolicedRouteTable; readonly validated: ValidatedRoutes }
  | { readonly ok: false; readonly problem: string };

type ApiRoute = ApiRouteSetOutput['routes'][number];

/**
 * The routes of the last set a watch compiled, validated, by "kind namespace/name": a digest of
 * what each was sent as (a megabyte of spec is not kept twice) and the resource it gave. It holds
 * exactly the routes of that set, whose table holds them anyway: nothing outlives its set.
 */
export type ValidatedRoutes = ReadonlyMap<string, ValidatedRoute>;
interface ValidatedRoute {
  readonly digest: string;
  readonly route: RouteResource;
}

/**
 * A route of a set validated, or the reason it is refused; `kept`'s result is reused while the
 * input is the same.
 */
function validatedRoute(
  r: ApiRoute,
  kept: ValidatedRoutes,
  into: Map<string, ValidatedRoute>,
): RouteResource | string {
  const where = `${r.kind} ${r.namespace}/${r.name}`;
  const digest = createHash('sha256')
    .update(r.specJson)
    .update(`\0${String(r.createdMs)}\0${JSON.stringify(r.annotations ?? {})}`)
    .digest('base64');
  const last = kept.get(where);
  if (last !== undefined && last.digest === digest) {
    into.set(where, last);
    return last.route;
  }
  let spec: unknown;
  try {
    spec = JSON.parse(r.specJson);
  } catch {
    return `${where}: spec is not JSON`;
  }
  const document = {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: r.kind,
    metadata: { name: r.name, namespace: r.namespace, annotations: r.annotations },
    spec,
  };
  const { route, issues } = validateRoute(document, Number(r.createdMs));
  if (route === null) {
    const issue = issues[0];
    return `${where}: ${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid'}`;
  }
  into.set(where, { digest, route });
  return route;
}

/**
 * `kept`: what the watch's last compiled set validated (its routes are not validated again while
 * they are the same); a compiled set returns its own, for the next.
 */
export function compileRouteSet(set: ApiRouteSetOutput, kept: ValidatedRoutes = new Map()): CompiledRouteSet {
  const service = parseTrafficAnnotations(set.serviceAnnotations);
  const issue = service.issues[0];
  if (issue !== undefined)
    return { ok: false, problem: `Service annotation ${issue.annotation}: ${issue.message}` };
  const routePolicies = new Map<string, ServiceTrafficPolicy>();
  const routes: RouteResource[] = [];
  const validated = new Map<string, ValidatedRoute>();
  for (const r of set.routes) {
    const route = validatedRoute(r, kept, validated);
    if (typeof route === 'string') return { ok: false, problem: route };
    routes.push(route);
    if (route.annotations !== undefined)
      routePolicies.set(
        routePolicyKey(route),
        parseTrafficAnnotations({ ...set.serviceAnnotations, ...route.annotations }).policy,
      );
  }
  const faults = new Map<string, CompiledFault>();
  for (const e of set.extensions) {
    const where = `${e.kind} ${e.namespace}/${e.name}`;
    let spec: unknown;
    try {
      spec = JSON.parse(e.specJson);
    } catch {
      return { ok: false, problem: `${where}: spec is not JSON` };
    }
    const document = {
      apiVersion: FAULT_API_VERSION,
      kind: e.kind,
      metadata: { name: e.name, namespace: e.namespace },
      spec,
    };
    const { fault, issues } = validateFault(document);
    if (fault === null) {
      const issue = issues[0];
      return {
        ok: false,
        problem: `${where}: ${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid'}`,
      };
    }
    faults.set(`${fault.namespace}/${fault.name}`, compileFault(fault));
  }
  const unresolved = new Set(set.unresolvedBackends);
  try {
    enableLinearRegexFallback();
    const table = compileRouteTable(
      routes,
      (namespace, name, port) => !unresolved.has(`${namespace}/${name}:${port}`),
      (namespace, name) => faults.get(`${namespace}/${name}`) ?? null,
    );
    const policy = service.policy;
    // A budget alone changes nothing without routes (no retries); with routes, their retries draw on it.
    const keep = !isInert(policy) || (routes.length > 0 && !isDefaultBudget(policy.budget));
    return {
      ok: true,
      table: {
        ...table,
        ...(keep ? { policy } : {}),
        ...(routePolicies.size > 0 ? { routePolicies } : {}),
      },
      validated,
    };
  } catch (error) {
    return { ok: false, problem: `cannot compile the routes: ${(error as Error).message}` };
  }
}

/** The budget every Service has without annotations or an XBackendTrafficPolicy. */
function isDefaultBudget(budget: ServiceTrafficPolicy['budget']): boolean {
  return sameBudget(budget, DEFAULT_BUDGET);
}

/** A policy that changes nothing on the data path (NO_TRAFFIC_POLICY, or only a budget). */
export function isInert(policy: ServiceTrafficPolicy): boolean {
  return (
    policy.retry === null &&
    policy.requestTimeoutMs === null &&
    policy.failureAccrual === null &&
    policy.maxPendingRequests === null &&
    policy.maxConnections === null
  );
}
