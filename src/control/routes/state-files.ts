// Gateway API routes in the state folder of one-machine mode, beside services/ and policy/:
//
//   <root>/routes/<namespace>/httproute-<name>.yaml   an HTTPRoute
//   <root>/routes/<namespace>/grpcroute-<name>.yaml   a GRPCRoute
//   <root>/routes/<namespace>/httpfault-<name>.yaml   an HTTPFault (src/core/routes/fault.ts)
//
// Each file holds the route as `trellis apply -f` accepted it, normalized (the CRD's defaults
// filled in) with metadata.creationTimestamp (the first apply's time, kept by later applies: the
// spec orders equal matches by it), and is read back through the same validation
// (src/core/routes/parse.ts), so a hand-edited file is held to the same rules. A bad file is
// logged with the field that is wrong and skipped; the rest of the folder still applies.
import { basename, join } from 'node:path';
import { parse, stringify } from 'yaml';
import type { Logger } from '../../core/log.ts';
import { faultDocument, validateFault, type FaultResource } from '../../core/routes/fault.ts';
import { routeDocument, validateRoute } from '../../core/routes/parse.ts';
import type { RouteResource } from '../../core/routes/schema.ts';
import { type FileCache, readYamlFolder, removeFile, writeAtomically } from '../discovery/state-file-io.ts';

type RouteKey = Pick<RouteResource | FaultResource, 'kind' | 'namespace' | 'name'>;

export function routesDir(root: string): string {
  return join(root, 'routes');
}

export function routePath(root: string, route: RouteKey): string {
  return join(routesDir(root), route.namespace, `${route.kind.toLowerCase()}-${route.name}.yaml`);
}

export async function writeRouteFile(root: string, route: RouteResource | FaultResource): Promise<void> {
  const document = route.kind === 'HTTPFault' ? faultDocument(route) : routeDocument(route);
  await writeAtomically(routePath(root, route), stringify(document));
}

/** Removes a route's file; false when there was none. */
export async function deleteRouteFile(root: string, route: RouteKey): Promise<boolean> {
  return removeFile(routePath(root, route));
}

export type RouteFileCache = FileCache<RouteResource | FaultResource | null>;

/** Every valid route of the folder. Never throws: unreadable or invalid files are logged and skipped. */
export async function readRouteFolder(
  root: string,
  cache: RouteFileCache,
  log: Logger,
): Promise<RouteResource[]> {
  return (await readRouteState(root, cache, log)).routes;
}

/** Every valid route and HTTPFault of the folder. Never throws, as readRouteFolder. */
export async function readRouteState(
  root: string,
  cache: RouteFileCache,
  log: Logger,
): Promise<{ routes: RouteResource[]; faults: FaultResource[] }> {
  const all = await readYamlFolder(routesDir(root), cache, log, 'route file', (text, file, namespace) =>
    parseRouteFile(text, file, namespace, basename(file), log),
  );
  const routes: RouteResource[] = [];
  const faults: FaultResource[] = [];
  for (const r of all) {
    if (r.kind === 'HTTPFault') faults.push(r);
    else routes.push(r);
  }
  return { routes, faults };
}

function parseRouteFile(
  text: string,
  file: string,
  namespace: string,
  name: string,
  log: Logger,
): RouteResource | FaultResource | null {
  let raw: unknown;
  try {
    raw = parse(text, { maxAliasCount: 100 });
  } catch (error) {
    log.warn('invalid route file skipped', {
      file,
      problem: `not valid YAML (${(error as Error).message.split('\n')[0]})`,
    });
    return null;
  }
  const checked =
    (raw as { kind?: unknown } | null)?.kind === 'HTTPFault' ? validateFault(raw) : validateRoute(raw);
  const route = 'fault' in checked ? checked.fault : checked.route;
  const issues = checked.issues;
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
