// `trellis stat`: the golden metrics of each workload (success rate, requests per second, latency
// percentiles of its inbound traffic, or with --direction outbound of the traffic it calls, open
// TCP connections; -o wide adds bytes per second), over the last 10 s or the window of -t; with
// --from RES only the requests it served that came from RES, with --to RES only those it made to
// RES (Linkerd's `viz stat --from/--to`; the proxies count requests by peer), as the
// control plane collects them from the workloads' proxies (GET /api/stat of
// src/control/server.ts). Printed as the table of `trellis demo` (src/cli/live-view.ts) or, with
// -o json, as one JSON array.
import { ConfigError } from '../core/errors.ts';
import { callControl, errorOf, findControlPlane } from './control-api.ts';
import { TrellisError } from '../core/errors.ts';
import type { WorkloadStat } from '../control/metrics/collector.ts';
import {
  DEFAULT_STAT_VIEW,
  parseDirection,
  parsePeerName,
  parseStatWindow,
  peerView,
  statQuery,
  type StatPeer,
  type StatView,
} from '../control/metrics/stat-view.ts';
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
import { SUMMARIES } from './summaries.ts';

export const summary = SUMMARIES.stat;

const OUTPUTS = ['table', 'wide', 'json'] as const;
const FLAGS: FlagSpec[] = [
  { name: 'namespace', short: 'n', kind: 'string', help: 'only this namespace (default: every namespace)' },
  { name: 'all-namespaces', short: 'A', kind: 'boolean', help: 'every namespace (what no -n means too)' },
  {
    name: 'time-window',
    short: 't',
    kind: 'string',
    help: 'the window of the rates and percentiles, e.g. 30s, 1m, 10m (1s..10m; default 10s)',
  },
  {
    name: 'direction',
    kind: 'string',
    help: 'inbound (default: the requests the workload serves) or outbound (the requests it makes)',
  },
  {
    name: 'from',
    kind: 'string',
    help: 'only the requests served that came from this workload (deploy/NAME or NAME; inbound)',
  },
  { name: 'from-namespace', kind: 'string', help: "the namespace of --from (default: -n's, else default)" },
  {
    name: 'to',
    kind: 'string',
    help: 'only the requests made to this workload (deploy/NAME or NAME; outbound)',
  },
  { name: 'to-namespace', kind: 'string', help: "the namespace of --to (default: -n's, else default)" },
  outputFlag(OUTPUTS),
  STATE_FLAG,
  CONTROL_FLAG,
];

const USAGE = `Usage: trellis stat [options] [KIND[/NAME]]

Golden metrics of each workload's inbound traffic (--direction outbound: the requests it makes)
over the last 10 s (-t WINDOW: up to 10m), as the control plane scrapes them from the proxies; the
instances of a workload are summed. KIND is deploy (also deployment, workload, wl, svc: on one
machine a workload is named after the service it serves) or ns/NAME (the same as -n NAME); a bare
NAME is a workload. Without NAME every workload is shown; a NAME that matches none is an error.
-o wide always shows the NAMESPACE column and adds READ_BYTES/SEC and WRITE_BYTES/SEC (bytes of
the workload's connections, counted as they close).
--from RES keeps to the inbound requests that came from workload RES (told by the identities its
instances registered with, so RES must be meshed), --to RES to the outbound requests that went to
RES (told by the workload discovery gave the endpoint); each implies its --direction and refuses
the other one, and the two do not go together. RES is in --from-namespace/--to-namespace, else
the namespace of -n, else default; a RES that is no registered workload is an error. TCP_CONN
and the bytes are not counted by peer ("-"). E.g. trellis stat deploy/web --from deploy/vote-bot -n emojivoto.`;

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
  if (values.get('all-namespaces') === true && namespace !== undefined) {
    throw new ConfigError('--all-namespaces', `give -A or a namespace (${namespace}), not both`);
  }
  const name = target?.kind === 'workload' ? target.name : null;

  const view = statViewOf(values, namespace);

  const api = await findControlPlane({
    control: values.get('control') as string | undefined,
    stateFlag: values.get('state') as string | undefined,
    root: stateFolder(values.get('state') as string | undefined),
  });
  const answer = await callControl(api, 'GET', `/api/stat${statQuery(namespace, view)}`);
  if (answer.status === 404 && view.peer != null) {
    // The peer is no registered workload (or, for --from, has no identity): the server says which.
    process.stderr.write(
      `trellis stat: ${(answer.body as { error?: string } | null)?.error ?? 'unknown peer'}\n`,
    );
    return 1;
  }
  if (answer.status !== 200) {
    throw new TrellisError(
      'TRELLIS_ERR_CONTROL_PLANE',
      `cannot get stats from ${api.base}: ${errorOf(answer.status, answer.body)}`,
    );
  }
  let stats = answer.body as WorkloadStat[];
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
  const wide = output === 'wide';
  process.stdout.write(statTable(stats, wide || namespace === undefined, wide).join('\n') + '\n');
  return 0;
}

/**
 * The direction, window and peer of the flags (their defaults when absent); ConfigError when
 * malformed or when --from, --to and --direction disagree (stat-view.ts peerView).
 */
function statViewOf(values: Map<string, unknown>, namespace: string | undefined): StatView {
  const window = values.get('time-window') as string | undefined;
  const direction = values.get('direction') as string | undefined;
  return {
    ...peerView(
      direction === undefined ? undefined : parseDirection('--direction', direction),
      peerOf(values, 'from', namespace),
      peerOf(values, 'to', namespace),
    ),
    windowMs: window === undefined ? DEFAULT_STAT_VIEW.windowMs : parseStatWindow('--time-window', window),
  };
}

/** The workload of --from or --to (`flag`) in its namespace; undefined when the flag is absent. */
function peerOf(
  values: Map<string, unknown>,
  flag: 'from' | 'to',
  namespace: string | undefined,
): StatPeer | undefined {
  const text = values.get(flag) as string | undefined;
  const peerNamespace = values.get(`${flag}-namespace`) as string | undefined;
  if (text === undefined) {
    if (peerNamespace !== undefined) throw new ConfigError(`--${flag}-namespace`, `needs --${flag}`);
    return undefined;
  }
  let target: Target;
  try {
    target = parseTarget(text, ['workload'], true);
  } catch {
    throw new ConfigError(`--${flag}`, `expected a workload (deploy/NAME or NAME), got '${text}'`);
  }
  return {
    namespace: parsePeerName(`--${flag}-namespace`, peerNamespace ?? namespace ?? 'default'),
    name: parsePeerName(`--${flag}`, target.name!),
  };
}

/** A control-plane stat as a row of the live table (src/cli/live-view.ts). */
export function statRow(s: WorkloadStat): WorkloadRow {
  return {
    name: s.name,
    direction: s.direction ?? 'inbound',
    meshed: s.meshed,
    success: s.success,
    rps: s.rps,
    latencyMsP50: s.latency_p50_ms,
    latencyMsP95: s.latency_p95_ms,
    latencyMsP99: s.latency_p99_ms,
    tcpConnections: s.tcp_conn,
  };
}

/** Bytes per second as `trellis stat -o wide` shows them ("-" without data). */
export function formatBytesPerSecond(bps: number | null | undefined): string {
  if (bps === null || bps === undefined) return '-';
  if (bps >= 1e6) return `${(bps / 1e6).toFixed(1)}MB/s`;
  if (bps >= 1e3) return `${(bps / 1e3).toFixed(1)}kB/s`;
  return `${bps.toFixed(1)}B/s`;
}

/**
 * The table of `trellis demo`, with a NAMESPACE column in front when several may show and, when
 * `withBytes`, READ_BYTES/SEC and WRITE_BYTES/SEC behind.
 */
export function statTable(
  stats: readonly WorkloadStat[],
  withNamespace: boolean,
  withBytes = false,
): string[] {
  const rows: WorkloadRow[] = stats.map(statRow);
  let lines = formatTable(rows);
  if (withBytes) {
    const widths = lines.map((l) => l.length);
    const base = Math.max(...widths);
    const read = ['READ_BYTES/SEC', ...stats.map((s) => formatBytesPerSecond(s.read_bytes_per_s))];
    const write = ['WRITE_BYTES/SEC', ...stats.map((s) => formatBytesPerSecond(s.write_bytes_per_s))];
    const readWidth = Math.max(...read.map((c) => c.length));
    lines = lines.map((line, i) => `${line.padEnd(base)}  ${read[i]!.padEnd(readWidth)}  ${write[i]}`);
  }
  if (!withNamespace) return lines;
  const namespaces = ['NAMESPACE', ...stats.map((s) => s.namespace)];
  const width = Math.max(...namespaces.map((n) => n.length));
  return lines.map((line, i) => `${namespaces[i]!.padEnd(width)}  ${line}`);
}
