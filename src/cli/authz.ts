// `trellis authz NAME`: the effective inbound authorization policy of a workload, as the control
// plane serves it to the workload's proxy (GET /api/authz of src/control/policy/component.ts):
// each Server that selects it (name, port, protocol) with its authorizations (who, routes), and
// the default policy of the workload's proxy for every other port, read from the proxy's admin
// `GET /config` (policy.default) when the state folder names its admin address, else "unknown".
// A named port shows as written with the number it resolves to, or, where instances resolve it
// to different numbers (each `trellis run` has its own app port), with each instance's number.
import { ConfigError } from '../core/errors.ts';
import { silentLogger } from '../core/log.ts';
import { type LocalState, readLocalState } from '../control/discovery/local-state.ts';
import type { AuthzServer, AuthzView } from '../control/policy/component.ts';
import { findControlPlane, getControl } from './control-api.ts';
import { type FlagSpec, formatHelp, parseInterleaved } from './flags.ts';
import {
  CONTROL_FLAG,
  NAMESPACE_FLAG,
  outputFlag,
  outputOf,
  parseTarget,
  selectRegistrations,
  STATE_FLAG,
  stateFolder,
} from './targeting.ts';
import { SUMMARIES } from './summaries.ts';

export const summary = SUMMARIES.authz;

const OUTPUTS = ['table', 'json'] as const;
const FLAGS: FlagSpec[] = [NAMESPACE_FLAG, outputFlag(OUTPUTS), STATE_FLAG, CONTROL_FLAG];

const USAGE = `Usage: trellis authz [options] NAME | deploy/NAME

The inbound policy the control plane serves to workload NAME (deploy/NAME, also deployment,
workload, wl, svc): each Server selecting one of its ports, with the AuthorizationPolicies that
admit clients to it, and the default policy of the workload's proxy for the ports no Server
selects. A Server's port given by name shows as "NAME (NUMBER)", or, when the instances of the
workload each have their own app port (trellis run), as "NAME (differs per instance)" with a line
giving each instance's number. On one machine a NAME that is neither registered nor a Service is
an error.`;

export async function run(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(formatHelp(USAGE, FLAGS) + '\n');
    return 0;
  }
  // Options may come before and after the positional argument.
  const { values, rest } = parseInterleaved(argv, FLAGS);
  if (rest.length === 0) throw new ConfigError('NAME', 'required: the workload (trellis authz NAME)');
  if (rest.length > 1) throw new ConfigError('', `trellis authz: unexpected argument '${rest[1]}'`);
  const name = parseTarget(rest[0]!, ['workload'], true).name!;
  const output = outputOf(values, OUTPUTS);
  const namespace = (values.get('namespace') as string | undefined) ?? 'default';
  const control = values.get('control') as string | undefined;
  const stateFlag = values.get('state') as string | undefined;
  const root = stateFolder(stateFlag);

  const api = await findControlPlane({ control, stateFlag, root });
  // Only the state folder of one machine says which workloads exist and where their admin listens.
  const state = control === undefined ? await readLocalState(root, new Map(), silentLogger) : null;
  if (state !== null && !workloadExists(state, namespace, name)) {
    process.stderr.write(
      `trellis authz: no workload ${name} in namespace ${namespace} (none registered, no such Service; state folder ${root})\n`,
    );
    return 1;
  }
  const query = `?namespace=${encodeURIComponent(namespace)}&workload=${encodeURIComponent(name)}`;
  const view = await getControl<AuthzView>(api, `/api/authz${query}`, 'the policy');
  const proxyDefault = state !== null ? await readProxyDefault(state, namespace, name) : null;
  if (output === 'json') {
    process.stdout.write(JSON.stringify({ ...view, proxyDefault }, null, 2) + '\n');
  } else {
    process.stdout.write(authzTable(view, proxyDefault).join('\n') + '\n');
  }
  return 0;
}

/** Whether the state folder registers an instance of the workload or has a Service of its name. */
function workloadExists(state: LocalState, namespace: string, name: string): boolean {
  return (
    state.services.has(`${namespace}/${name}`) ||
    selectRegistrations(state.workloads, { namespace, workload: name }).length > 0
  );
}

/** The default policy of a running proxy of the workload (policy.default of its /config), or null. */
async function readProxyDefault(state: LocalState, namespace: string, name: string): Promise<string | null> {
  const admins = selectRegistrations(state.workloads, { namespace, workload: name })
    .filter((w) => w.spec.admin !== undefined)
    .map((w) => w.spec.admin!);
  for (const admin of admins) {
    try {
      const res = await fetch(`http://${admin}/config`, { signal: AbortSignal.timeout(2000) });
      if (res.status !== 200) continue;
      const value = ((await res.json()) as { policy?: { default?: unknown } } | null)?.policy?.default;
      if (typeof value === 'string') return value;
    } catch {
      // That instance is gone or busy: try the next one.
    }
  }
  return null;
}

/** The table `trellis authz` prints: one line per authorization, server columns on its first. */
export function authzTable(view: AuthzView, proxyDefault: string | null): string[] {
  const header = ['SERVER', 'PORT', 'PROTOCOL', 'AUTHORIZATION', 'WHO', 'ROUTES'];
  const rows: string[][] = [];
  const perInstance: string[] = [];
  for (const server of view.servers ?? []) {
    const port = describePort(server);
    if (port.perInstance !== null) perInstance.push(port.perInstance);
    const first = [server.name ?? '', port.cell, server.protocol ?? ''];
    const authorizations = server.authorizations ?? [];
    if (authorizations.length === 0) rows.push([...first, '(none: every client denied)', '', '']);
    authorizations.forEach((authz, i) => {
      rows.push([
        ...(i === 0 ? first : ['', '', '']),
        authz.name ?? '',
        describeWho(authz),
        describeRoutes(authz),
      ]);
    });
  }
  const lines: string[] = [];
  if (rows.length === 0) {
    lines.push(`No Server selects ${view.namespace}/${view.workload}: every port follows the proxy default.`);
  } else {
    const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
    for (const row of [header, ...rows])
      lines.push(
        row
          .map((cell, c) => cell.padEnd(widths[c]!))
          .join('  ')
          .trimEnd(),
      );
  }
  lines.push(...perInstance);
  for (const skipped of view.skipped ?? []) lines.push(`skipped ${skipped.server}: ${skipped.reason}`);
  lines.push(`proxy default: ${proxyDefault ?? 'unknown'} (ports no Server selects)`);
  return lines;
}

/** The PORT cell of a Server, and the line of its numbers per instance when they differ. */
function describePort(server: AuthzServer): { cell: string; perInstance: string | null } {
  const number = String(server.port ?? '');
  if (server.portName === undefined) return { cell: number, perInstance: null };
  const instances = server.instancePorts ?? [];
  const numbers = new Set(instances.map((i) => i.port));
  if (numbers.size <= 1)
    return { cell: `${server.portName} (${instances[0]?.port ?? number})`, perInstance: null };
  const each = instances.map((i) => `${i.instance} ${i.port}`).join(', ');
  return {
    cell: `${server.portName} (differs per instance)`,
    perInstance: `port ${server.portName} of ${server.name ?? ''} per instance: ${each}`,
  };
}

type ViewAuthorization = NonNullable<NonNullable<AuthzView['servers']>[number]['authorizations']>[number];

function describeWho(authz: ViewAuthorization): string {
  if (authz.unauthenticated) return 'anyone (unauthenticated)';
  const parts: string[] = [];
  const identities = authz.identities ?? [];
  if (identities.includes('*')) parts.push('any authenticated');
  const named = identities.filter((i) => i !== '*');
  if (named.length > 0) parts.push(`identities ${named.join(',')}`);
  if ((authz.namespaces ?? []).length > 0) parts.push(`namespaces ${authz.namespaces!.join(',')}`);
  if ((authz.networks ?? []).length > 0) parts.push(`networks ${authz.networks!.join(',')}`);
  return parts.join('; ') || 'nobody';
}

function describeRoutes(authz: ViewAuthorization): string {
  const routes = authz.routes ?? [];
  if (routes.length === 0) return '(whole server)';
  return routes
    .map((r) => `${(r.methods ?? []).length === 0 ? '*' : r.methods!.join('|')} ${r.path}`)
    .join(', ');
}
