// `trellis stat`: the golden metrics of each workload (success rate, requests per second, latency
// percentiles of its inbound traffic, open TCP connections), as the control plane collects them
// from the workloads' proxies (GET /api/stat of src/control/server.ts). Printed as the table of
// `trellis demo` (src/cli/live-view.ts) or, with -o json, as one JSON array.
import { ConfigError, TrellisError } from '../core/errors.ts';
import { controlUrl } from './control-url.ts';
import type { WorkloadStat } from '../control/metrics/collector.ts';
import { type FlagSpec, formatHelp, parseInterleaved } from './flags.ts';
import { formatTable, type WorkloadRow } from './live-view.ts';

export const summary = 'golden metrics per workload (success, rps, latency), from the control plane';

const FLAGS: FlagSpec[] = [
  { name: 'namespace', kind: 'string', help: 'only this namespace (default: every namespace); also -n' },
  { name: 'output', kind: 'string', help: 'table (default) or json; also -o' },
  { name: 'state', kind: 'string', help: 'the state folder of `trellis up` (default .trellis)' },
  { name: 'control', kind: 'string', help: "the control plane's HTTP API URL (instead of --state)" },
];

const USAGE = `Usage: trellis stat [options] [KIND/NAME]

Golden metrics of each workload's inbound traffic over the last 10 s, as the control plane scrapes
them from the proxies. KIND is workload (also wl, service, svc: on one machine a workload is named
after the service it serves); without KIND/NAME every workload is shown.`;

const KINDS = new Set(['workload', 'workloads', 'wl', 'service', 'services', 'svc']);

export async function run(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(formatHelp(USAGE, FLAGS) + '\n');
    return 0;
  }
  // Options may come before and after the positional argument.
  const { values, rest } = parseInterleaved(argv, FLAGS, { '-o': '--output', '-n': '--namespace' });
  if (rest.length > 1) throw new ConfigError('', `trellis stat: unexpected argument '${rest[1]}'`);
  const output = (values.get('output') as string | undefined) ?? 'table';
  if (output !== 'table' && output !== 'json') throw new ConfigError('--output', 'must be table or json');
  const namespace = values.get('namespace') as string | undefined;
  const name = rest.length === 1 ? parseResource(rest[0]!) : undefined;

  const base = await controlUrl(
    values.get('control') as string | undefined,
    values.get('state') as string | undefined,
  );
  const query = namespace === undefined ? '' : `?namespace=${encodeURIComponent(namespace)}`;
  let stats: WorkloadStat[];
  try {
    const res = await fetch(`${base}/api/stat${query}`, { signal: AbortSignal.timeout(5000) });
    if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
    stats = (await res.json()) as WorkloadStat[];
  } catch (error) {
    throw new TrellisError(
      'TRELLIS_ERR_CONTROL_PLANE',
      `cannot get stats from ${base}: ${(error as Error).message}`,
    );
  }
  if (name !== undefined) stats = stats.filter((s) => s.name === name);
  if (output === 'json') {
    process.stdout.write(JSON.stringify(stats, null, 2) + '\n');
    return 0;
  }
  if (stats.length === 0) {
    process.stderr.write(
      `No workloads found${namespace === undefined ? '' : ` in namespace ${namespace}`}.\n`,
    );
    return 0;
  }
  process.stdout.write(statTable(stats, namespace === undefined).join('\n') + '\n');
  return 0;
}

/** KIND/NAME (or NAME) -> NAME. */
function parseResource(arg: string): string {
  const slash = arg.indexOf('/');
  const kind = slash === -1 ? 'workload' : arg.slice(0, slash);
  if (!KINDS.has(kind)) throw new ConfigError('KIND', `expected workload or service, got '${kind}'`);
  return arg.slice(slash + 1);
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
