// `trellis edges`: who talks to whom in the mesh, with the client's and the server's identities
// and whether their connections are secured by mutual TLS (or why not), as the control plane
// reads them from the proxies' connection counters (GET /api/edges of src/control/server.ts,
// computed in src/control/metrics/edges.ts). Linkerd's `viz edges` layout: SRC DST SRC_NS DST_NS
// SECURED, -o wide adds the identities and the connection counts; -o json prints the API's array.
import { ConfigError } from '../core/errors.ts';
import type { Edge } from '../control/metrics/edges.ts';
import { alignColumns } from './columns.ts';
import { findControlPlane, getControl } from './control-api.ts';
import { type FlagSpec, formatHelp, parseInterleaved } from './flags.ts';
import { CONTROL_FLAG, outputFlag, outputOf, STATE_FLAG, stateFolder } from './targeting.ts';
import { SUMMARIES } from './summaries.ts';

export const summary = SUMMARIES.edges;

const OUTPUTS = ['table', 'wide', 'json'] as const;
const FLAGS: FlagSpec[] = [
  { name: 'namespace', short: 'n', kind: 'string', help: 'only edges with an end in this namespace' },
  { name: 'all-namespaces', short: 'A', kind: 'boolean', help: 'every namespace (the default without -n)' },
  outputFlag(OUTPUTS),
  STATE_FLAG,
  CONTROL_FLAG,
];

const USAGE = `Usage: trellis edges [options]

The edges between workloads: a client workload whose proxy opened connections to a server
workload (counted since the proxies started), seen by the client's proxy, the server's, or both.
SECURED is "√" for mutual TLS (the identities are the verified ones of each side, -o wide), or
"× (REASON)" when the client's proxy sent in plain text: not-meshed (the destination runs
without the mesh: discovery gives it no identity) or no-identity (the client's proxy runs without
one). For those the count is of requests and opaque connections. A workload that has no proxy
shows no edge as a client: only proxies count.`;

export async function run(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(formatHelp(USAGE, FLAGS) + '\n');
    return 0;
  }
  const { values, rest } = parseInterleaved(argv, FLAGS);
  if (rest.length > 0) throw new ConfigError('', `trellis edges: unexpected argument '${rest[0]}'`);
  const output = outputOf(values, OUTPUTS);
  const namespace = values.get('namespace') as string | undefined;
  if (namespace !== undefined && values.get('all-namespaces') === true)
    throw new ConfigError('--all-namespaces', 'give -n NAMESPACE or -A, not both');

  const api = await findControlPlane({
    control: values.get('control') as string | undefined,
    stateFlag: values.get('state') as string | undefined,
    root: stateFolder(values.get('state') as string | undefined),
  });
  const query = namespace === undefined ? '' : `?namespace=${encodeURIComponent(namespace)}`;
  const edges = await getControl<Edge[]>(api, `/api/edges${query}`, 'edges');
  if (output === 'json') {
    process.stdout.write(JSON.stringify(edges, null, 2) + '\n');
    return 0;
  }
  if (edges.length === 0) {
    const where = namespace === undefined ? '' : ` in namespace ${namespace}`;
    process.stderr.write(`No edges found${where} (none yet: traffic shows within a few seconds).\n`);
    return 0;
  }
  process.stdout.write(edgesTable(edges, output === 'wide').join('\n') + '\n');
  return 0;
}

/** "√" or "× (reason)". */
export function securedCell(edge: Edge): string {
  return edge.secured ? '√' : `× (${edge.no_tls_reason ?? 'unknown'})`;
}

/** The table of `trellis edges` (wide: with identities, connection counts and who saw the edge). */
export function edgesTable(edges: readonly Edge[], wide: boolean): string[] {
  const header = ['SRC', 'DST', 'SRC_NS', 'DST_NS', 'SECURED'];
  if (wide) header.push('CLIENT_ID', 'SERVER_ID', 'CONNECTIONS', 'SEEN_BY');
  const rows = edges.map((e) => {
    const row = [e.src, e.dst, e.src_namespace || '-', e.dst_namespace || '-', securedCell(e)];
    if (wide) row.push(e.client_identity ?? '-', e.server_identity ?? '-', String(e.connections), e.seen_by);
    return row;
  });
  return alignColumns([header, ...rows]);
}
