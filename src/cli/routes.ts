// `trellis routes SERVICE`: the Gateway API routes attached to a Service on one machine (the
// state folder's routes/ and services/, as `trellis apply` wrote them): each route with its role
// (producer or consumer), its status per parent (Accepted, ResolvedRefs, PartiallyInvalid with
// their reasons), and its rules with their matches, filters, backends with weights and shares,
// timeouts and retry. The view is src/control/routes/view.ts. Below it, the live numbers per route
// and per backend (success, rps, latency, retries, timeouts, circuit breakers) over the window of
// `trellis stat`, from the running control plane (GET /api/route-stats; src/cli/routes-live.ts).
// With --control URL (a control plane elsewhere, e.g. `trellis control` on Kubernetes, where
// `trellis get httproutes` shows the routes' status) only the live numbers are shown.
import { ConfigError } from '../core/errors.ts';
import { silentLogger } from '../core/log.ts';
import { readLocalState } from '../control/discovery/local-state.ts';
import type { RouteStatsAnswer } from '../control/metrics/route-stats.ts';
import { DEFAULT_STAT_WINDOW_MS, parseStatWindow } from '../control/metrics/stat-view.ts';
import { localServiceIndex } from '../control/routes/services.ts';
import { readRouteState } from '../control/routes/state-files.ts';
import { serviceRoutesView, type RouteView, type ServiceRoutesView } from '../control/routes/view.ts';
import { findControlPlane, getControl } from './control-api.ts';
import { type FlagSpec, formatHelp, parseInterleaved } from './flags.ts';
import { liveRows, liveTables } from './routes-live.ts';
import { CONTROL_FLAG, NAMESPACE_FLAG, outputFlag, outputOf, STATE_FLAG, stateFolder } from './targeting.ts';
import { SUMMARIES } from './summaries.ts';

export const summary = SUMMARIES.routes;

const OUTPUTS = ['table', 'json'] as const;
const FLAGS: FlagSpec[] = [
  NAMESPACE_FLAG,
  {
    name: 'time-window',
    short: 't',
    kind: 'string',
    help: 'the window of the live numbers, e.g. 30s, 1m, 10m (1s..10m; default 10s)',
  },
  outputFlag(OUTPUTS),
  STATE_FLAG,
  CONTROL_FLAG,
];

const USAGE = `Usage: trellis routes [options] SERVICE

The Gateway API routes (HTTPRoute, GRPCRoute; apply them with \`trellis apply -f\`) whose
parentRefs name Service SERVICE: producer routes (in the Service's namespace, for every client)
and consumer routes (in another namespace, for that namespace's clients only, replacing the
producer routes there). For each: its status per parent (Accepted, ResolvedRefs,
PartiallyInvalid and their reasons) and its rules, in the order written, with their matches,
filters, and backends with their weights and share of the rule's requests. A backend marked
"missing" gets 500 for its share. Exit status 1 when the Service does not exist.

Then the live numbers over the last 10 s (-t WINDOW: up to 10m), as the control plane scrapes
them from the proxies of the clients (the route is applied, and counted, in the caller's proxy),
summed over those proxies: per route SUCCESS, RPS, LATENCY_P50/P95/P99, RETRIES (attempts sent
again, their share of the requests, and "+N over budget": retries the retry budget refused) and
TIMEOUTS (requests ended by a timeout); per backend of each route its WEIGHT (one per rule naming
it), SUCCESS, RPS, LATENCY_P99 and BREAKER: its endpoints' circuit breakers in the client proxies
("closed", "N/M open", "N/M probing", trips in the window), "-" when no breaker guards it
(balancer.trellis.io/failure-accrual). Without a running control plane the routes are shown
without numbers. -o json: the view, plus window_s, stats_error, route_stats and backend_stats
(with requests, successes, failures, timeouts, retries, budget_exhausted counted in the window).
With --control URL only the numbers are shown (on Kubernetes \`trellis get httproutes\` shows the
routes' status).`;

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
  const windowText = (values.get('time-window') as string | undefined) ?? '10s';
  const windowMs =
    values.get('time-window') === undefined
      ? DEFAULT_STAT_WINDOW_MS
      : parseStatWindow('--time-window', windowText);
  const control = values.get('control') as string | undefined;
  const stateFlag = values.get('state') as string | undefined;
  const root = stateFolder(stateFlag);
  const numbers = liveNumbers(
    { control, stateFlag, root },
    `/api/route-stats?${new URLSearchParams({ namespace, service, window: `${windowMs}ms` }).toString()}`,
  );
  if (control !== undefined) {
    const { answer, error } = await numbers;
    const rows = liveRows(null, answer, error);
    if (output === 'json')
      process.stdout.write(JSON.stringify({ namespace, service, ...rows }, null, 2) + '\n');
    else
      process.stdout.write(
        [`Service ${namespace}/${service}`, ...liveTables(rows, windowText)].join('\n') + '\n',
      );
    return error === null ? 0 : 1;
  }
  const [state, { routes, faults }, { answer, error }] = await Promise.all([
    readLocalState(root, new Map(), silentLogger),
    readRouteState(root, new Map(), silentLogger),
    numbers,
  ]);
  const services = localServiceIndex(state);
  const view = serviceRoutesView(routes, services, namespace, service, faults);
  const rows = liveRows(view, answer, error);
  const known = services.has(`${namespace}/${service}`);
  // A missing Service is still shown when routes name it as their parent (they say what is wrong).
  if (known || view.routes.length > 0) {
    if (output === 'json') process.stdout.write(JSON.stringify({ ...view, ...rows }, null, 2) + '\n');
    else process.stdout.write([...routesTable(view), '', ...liveTables(rows, windowText)].join('\n') + '\n');
  }
  if (!known) {
    process.stderr.write(
      `trellis routes: no service ${service} in namespace ${namespace} (state folder ${root})\n`,
    );
    return 1;
  }
  return 0;
}

/** The control plane's numbers, or why there are none (never throws). */
async function liveNumbers(
  choice: { control: string | undefined; stateFlag: string | undefined; root: string },
  path: string,
): Promise<{ answer: RouteStatsAnswer | null; error: string | null }> {
  try {
    const api = await findControlPlane(choice);
    return { answer: await getControl<RouteStatsAnswer>(api, path, 'the route numbers'), error: null };
  } catch (error) {
    if (error instanceof ConfigError) throw error; // a malformed --control
    return { answer: null, error: (error as Error).message };
  }
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
