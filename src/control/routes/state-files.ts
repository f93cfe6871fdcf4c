// Gateway API routes in the state folder of one-machine mode, beside services/ and policy/:
//
//   <root>/routes/<namespace>/httproute-<name>.yaml   an HTTPRoute
//   <root>/routes/<namespace>/grpcroute-<name>.yaml   a GRPCRoute
//   <root>/routes/<namespace>/httpfault-<name>.yaml   an HTTPFault (src/core/routes/fault.ts)
//   <root>/routes/<namespace>/xbackendtrafficpolicy-<name>.yaml   an XBackendTrafficPolicy
//                                                  (src/core/routes/backend-traffic-policy.ts)
//
// Each file holds the route as `trellis apply -f` accepted it, normalized (the CRD's defaults
// filled in) with metadata.creationTimestamp (the first apply's time, kept by later applies: the
// spec orders equal matches by it, and the older of two policies on one Service wins), and is read back through the same validation
// (src/core/routes/parse.ts), so a hand-edited file is held to the same rules. A bad file is
// logged with the field that is wrong and skipped; the rest of the folder still applies.
import { basename, join } from 'node:path';
import { stringify } from 'yaml';
import type { Logger } from '../../core/log.ts';
import {
  backendPolicyDocument,
  BACKEND_POLICY_KIND,
  validateBackendPolicy,
  type BackendPolicyResource,
} from '../../core/routes/backend-traffic-policy.ts';
import { faultDocument, validateFault, type FaultResource } from '../../core/routes/fault.ts';
import { routeDocument, validateRoute, type RouteIssue } from '../../core/routes/parse.ts';
import type { RouteResource } from '../../core/routes/schema.ts';
import { parseYaml } from '../../core/yaml-position.ts';
import {
  type FileCache,
  readYamlFolder,
  removeFile,
  writeIfChanged,
  type WriteOutcome,
} from '../discovery/state-file-io.ts';

/** What the routes folder holds. */
export type RouteFolderResource = RouteResource | FaultResource | BackendPolicyResource;

type RouteKey = Pick<RouteFolderResource, 'kind' | 'namespace' | 'name'>;

export function routesDir(root: string): string {
  return join(root, 'routes');
}

export function routePath(root: string, route: RouteKey): string {
  return join(routesDir(root), route.namespace, `${route.kind.toLowerCase()}-${route.name}.yaml`);
}

/** Writes a route's (fault's, policy's) file unless it holds the same already; says which. */
export async function writeRouteFile(root: string, route: RouteFolderResource): Promise<WriteOutcome> {
  const document =
    route.kind === 'HTTPFault'
      ? faultDocument(route)
      : route.kind === BACKEND_POLICY_KIND
        ? backendPolicyDocument(route)
        : routeDocument(route);
  return writeIfChanged(routePath(root, route), stringify(document));
}

/** Removes a route's file; false when there was none. */
export async function deleteRouteFile(root: string, route: RouteKey): Promise<boolean> {
  return removeFile(routePath(root, route));
}

export type RouteFileCache = FileCache<RouteFolderResource | null>;

/** Every valid route of the folder. Never throws: unreadable or invalid files are logged and skipped. */
export async function readRouteFolder(
  root: string,
  cache: RouteFileCache,
  log: Logger,
): Promise<RouteResource[]> {
  return (await readRouteState(root, cache, log)).routes;
}

/** Every valid route, HTTPFault and XBackendTrafficPolicy of the folder. Never throws, as readRouteFolder. */
export async function readRouteState(
  root: string,
  cache: RouteFileCache,
  log: Logger,
): Promise<{ routes: RouteResource[]; faults: FaultResource[]; backendPolicies: BackendPolicyResource[] }> {
  const all = await readYamlFolder(routesDir(root), cache, log, 'route file', (text, file, namespace) =>
    parseRouteFile(text, file, namespace, basename(file), log),
  );
  const routes: RouteResource[] = [];
  const faults: FaultResource[] = [];
  const backendPolicies: BackendPolicyResource[] = [];
  for (const r of all) {
    if (r.kind === 'HTTPFault') faults.push(r);
    else if (r.kind === BACKEND_POLICY_KIND) backendPolicies.push(r);
    else routes.push(r);
  }
  return { routes, faults, backendPolicies };
}

function parseRouteFile(
  text: string,
  file: string,
  namespace: string,
  name: string,
  log: Logger,
): RouteFolderResource | null {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (error) {
    log.warn('invalid route file skipped', {
      file,
      problem: `not valid YAML (${(error as Error).message.split('\n')[0]})`,
    });
    return null;
  }
  const { resource: route, issues } = validateRouteFolderResource(raw);
  if (route === null) {
    const problem = issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    log.warn('invalid route file skipped', { file, problem });
    return null;
  }
  // The file's place must agree with its content, or `apply --delete` would miss it.
  if (
    route.namespace !== namespace ||
    `${route.kind.toLowerCase()}-${route.name}.yaml` !== name.replace(/\.yml$/, '.yaml')
  ) {
    log.warn('invalid route file skipped', {
      file,
      problem: `holds ${route.kind} ${route.namespace}/${route.name}, which belongs in another file`,
    });
    return null;
  }
  return route;
}

/** A document of the routes folder's kinds validated by its kind's schema (a route's by default). */
export function validateRouteFolderResource(
  raw: unknown,
  createdMs = 0,
): { resource: RouteFolderResource | null; issues: RouteIssue[] } {
  const kind = (raw as { kind?: unknown } | null)?.kind;
  if (kind === 'HTTPFault') {
    const { fault, issues } = validateFault(raw);
    return { resource: fault, issues };
  }
  if (kind === BACKEND_POLICY_KIND) {
    const { policy, issues } = validateBackendPolicy(raw, createdMs);
    return { resource: policy, issues };
  }
  const { route, issues } = validateRoute(raw, createdMs);
  return { resource: route, issues };
}
