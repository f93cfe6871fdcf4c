// `trellis stat`: the golden metrics of each workload (success rate, requests per second, latency
// percentiles of its inbound traffic, open TCP connections), as the control plane collects them
// from the workloads' proxies (GET /api/stat of src/control/server.ts). Printed as the table of
// `trellis demo` (src/cli/live-view.ts) or, with -o json, as one JSON array.
import { ConfigError } from '../core/errors.ts';
import { findControlPlane, getControl } from './control-api.ts';
import type { WorkloadStat } from '../control/metrics/collector.ts';
import { type FlagSpec, formatHelp, parseInterleaved } from './flags.ts';
import { formatTable, type WorkloadRow } from './live-view.ts';
import {
  CONTROL_FLAG,
  namespaceOf,
  outputFlag,
  outputOf,
  parseTarget,
  STATE_FLAG,
  stateFolder,
  type Target,
} from './targeting.ts';

export const summary = 'golden metrics per workload (success, rps, latency), from the control plane';

const OUTPUTS = ['table', 'wide', 'json'] as const;
const FLAGS: FlagSpec[] = [
  { name: 'namespace', short: 'n', kind: 'string', help: 'only this namespace (default: every namespace)' },
  outputFlag(OUTPUTS),
  STATE_FLAG,
  CONTROL_FLAG,
];

const USAGE = `Usage: trellis stat [options] [KIND[/NAME]]

Golden metrics of each workload's inbound traffic over the last 10 s, as the control plane scrapes
them from the proxies; the instances of a workload are summed. KIND is deploy (also deployment,
workload, wl, svc: on one machine a workload is named after the service it serves) or ns/NAME (the
same as -n NAME); a bare NAME is a workload. Without NAME every workload is shown; a NAME that
matches none is an error. -o wide always shows the NAMESPACE column.`;

export async function run(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(formatHelp(USAGE, FLAGS) + '\n');
    return 0;
  }
  // Options may come before and after the positional argument.
  const { values, rest } = parseInterleaved(argv, FLAGS);
  if (rest.length > 1) throw new ConfigError('', `trellis stat: unexpected argument '${rest[1]}'`);
  const output = outputOf(values, OUTPUTS);
  const target: Target | null = rest.length === 1 ? parseTarget(rest[0]!, ['workload', 'namespace']) : null;
  const namespace = namespaceOf(values, target);
  const name = target?.kind === 'workload' ? target.name : null;

  const api = await findControlPlane({
    control: values.get('control') as string | undefined,
    stateFlag: values.get('state') as string | undefined,
    root: stateFolder(values.get('state') as string | undefined),
  });
  const query = namespace === undefined ? '' : `?namespace=${encodeURIComponent(namespace)}`;
  let stats = await getControl<WorkloadStat[]>(api, `/api/stat${query}`, 'stats');
  const where = namespace === undefined ? '' : ` in namespace ${namespace}`;
  if (name !== null) {
    stats = stats.filter((s) => s.name === name);
    if (stats.length === 0) {
      process.stderr.write(`trellis stat: no workload ${name}${where}\n`);
      return 1;
    }
  }
  if (output === 'json') {
    process.stdout.write(JSON.stringify(stats, null, 2) + '\n');
    return 0;
  }
  if (stats.length === 0) {
    process.stderr.write(`No workloads found${where}.\n`);
    return 0;
  }
  process.stdout.write(statTable(stats, output === 'wide' || namespace === undefined).join('\n') + '\n');
  return 0;
}

/** A control-plane stat as a row of the live table (src/cli/live-view.ts). */
export function statRow(s: WorkloadStat): WorkloadRow {
  return {
    name: s.name,
    direction: 'inbound',
    meshed: s.meshed,
    success: s.success,
    rps: s.rps,
    latencyMsP50: s.latency_p50_ms,
    latencyMsP95: s.latency_p95_ms,
    latencyMsP99: s.latency_p99_ms,
    tcpConnections: s.tcp_conn,
  };
}

/** The table of `trellis demo`, with a NAMESPACE column in front when several may show. */
export function statTable(stats: readonly WorkloadStat[], withNamespace: boolean): string[] {
  const rows: WorkloadRow[] = stats.map(statRow);
  const lines = formatTable(rows);
  if (!withNamespace) return lines;
  const namespaces = ['NAMESPACE', ...stats.map((s) => s.namespace)];
  const width = Math.max(...namespaces.map((n) => n.length));
  return lines.map((line, i) => `${namespaces[i]!.padEnd(width)}  ${line}`);
}
