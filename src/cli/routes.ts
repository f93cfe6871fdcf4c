// `trellis routes SERVICE`: the Gateway API routes attached to a Service on one machine (the
// state folder's routes/ and services/, as `trellis apply` wrote them): each route with its role
// (producer or consumer), its status per parent (Accepted, ResolvedRefs, PartiallyInvalid with
// their reasons), and its rules with their matches, filters, backends with weights and shares,
// timeouts and retry. The view is src/control/routes/view.ts.
import { ConfigError } from '../core/errors.ts';
import { silentLogger } from '../core/log.ts';
import { readLocalState } from '../control/discovery/local-state.ts';
import { localServiceIndex } from '../control/routes/services.ts';
import { readRouteState } from '../control/routes/state-files.ts';
import { serviceRoutesView, type RouteView, type ServiceRoutesView } from '../control/routes/view.ts';
import { type FlagSpec, formatHelp, parseInterleaved } from './flags.ts';
import { NAMESPACE_FLAG, outputFlag, outputOf, STATE_FLAG, stateFolder } from './targeting.ts';

export const summary =
  'the HTTPRoutes and GRPCRoutes attached to a service: status, rules, backends and weights';

const OUTPUTS = ['table', 'json'] as const;
const FLAGS: FlagSpec[] = [NAMESPACE_FLAG, outputFlag(OUTPUTS), STATE_FLAG];

const USAGE = `Usage: trellis routes [options] SERVICE

The Gateway API routes (HTTPRoute, GRPCRoute; apply them with \`trellis apply -f\`) whose
parentRefs name Service SERVICE: producer routes (in the Service's namespace, for every client)
and consumer routes (in another namespace, for that namespace's clients only, replacing the
producer routes there). For each: its status per parent (Accepted, ResolvedRefs,
PartiallyInvalid and their reasons) and its rules, in the order written, with their matches,
filters, and backends with their weights and share of the rule's requests. A backend marked
"missing" gets 500 for its share. Exit status 1 when the Service does not exist.`;

export async function run(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(formatHelp(USAGE, FLAGS) + '\n');
    return 0;
  }
  const { values, rest } = parseInterleaved(argv, FLAGS);
  if (rest.length === 0) throw new ConfigError('SERVICE', 'required: the service (trellis routes SERVICE)');
  if (rest.length > 1) throw new ConfigError('', `trellis routes: unexpected argument '${rest[1]}'`);
  const service = rest[0] as string;
  const namespace = (values.get('namespace') as string | undefined) ?? 'default';
  const output = outputOf(values, OUTPUTS);
  const root = stateFolder(values.get('state') as string | undefined);
  const [state, { routes, faults }] = await Promise.all([
    readLocalState(root, new Map(), silentLogger),
    readRouteState(root, new Map(), silentLogger),
  ]);
  const services = localServiceIndex(state);
  const view = serviceRoutesView(routes, services, namespace, service, faults);
  if (output === 'json') process.stdout.write(JSON.stringify(view, null, 2) + '\n');
  else process.stdout.write(routesTable(view).join('\n') + '\n');
  if (!services.has(`${namespace}/${service}`)) {
    process.stderr.write(
      `trellis routes: no service ${service} in namespace ${namespace} (state folder ${root})\n`,
    );
    return 1;
  }
  return 0;
}

export function routesTable(view: ServiceRoutesView): string[] {
  const lines = [
    `Service ${view.namespace}/${view.service}` +
      (view.ports.length === 0 ? '' : ` (ports ${view.ports.join(', ')})`) +
      `: ${view.routes.length === 0 ? 'no routes attached' : `${view.routes.length} route(s)`}`,
  ];
  for (const route of view.routes) lines.push('', ...routeLines(route));
  return lines;
}

function routeLines(route: RouteView): string[] {
  const lines = [
    `${route.kind} ${route.namespace}/${route.name}  ${route.role}  created ${route.creationTimestamp}`,
  ];
  for (const parent of route.parents) {
    const port = parent.parentRef.port === undefined ? 'every port' : `port ${parent.parentRef.port}`;
    lines.push(`  parent ${parent.parentRef.name} (${port})`);
    for (const c of parent.conditions)
      lines.push(
        `    ${c.type.padEnd(16)} ${c.status.padEnd(5)} ${c.reason}${c.status === 'True' && c.type !== 'PartiallyInvalid' ? '' : `: ${c.message}`}`,
      );
  }
  for (const rule of route.rules) {
    lines.push(
      `  rule ${rule.index}${rule.name === null ? '' : ` (${rule.name})`}: ${rule.matches.join(' | ')}`,
    );
    if (rule.filters.length > 0) lines.push(`    filters: ${rule.filters.join(', ')}`);
    if (rule.timeouts !== null)
      lines.push(
        `    timeouts: request ${rule.timeouts.request ?? '-'}, backendRequest ${rule.timeouts.backendRequest ?? '-'}`,
      );
    if (rule.retry !== null)
      lines.push(
        `    retry: codes ${rule.retry.codes.join(',') || '-'}, attempts ${rule.retry.attempts ?? '-'}, backoff ${rule.retry.backoff ?? '-'}`,
      );
    for (const b of rule.backends)
      lines.push(
        `    -> ${b.namespace}/${b.name}:${b.port ?? '-'}  weight ${b.weight}  ${b.share}%${b.resolved ? '' : '  missing (500)'}`,
      );
    if (rule.backends.length === 0 && !rule.filters.includes('RequestRedirect'))
      lines.push('    -> no backends (500)');
  }
  return lines;
}
