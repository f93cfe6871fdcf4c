// `trellis trace`: the recent traces the embedded collector of `trellis up` keeps (GET
// /api/traces of src/control/traces/component.ts), most recent first; with a trace id, that trace
// as a tree of its spans (each under its parent, with its service, kind, name, status and
// duration). -o json prints the API's answer. Only spans exported to the control plane are here:
// with `trellis up --trace-collector URL` they go to that collector instead.
import { ConfigError } from '../core/errors.ts';
import type { ReceivedSpan } from '../control/traces/otlp-decode.ts';
import type { TraceSummary } from '../control/traces/store.ts';
import { alignColumns } from './columns.ts';
import { findControlPlane, getControl } from './control-api.ts';
import { type FlagSpec, formatHelp, parseInterleaved } from './flags.ts';
import {
  CONTROL_FLAG,
  OPERATOR_TOKEN_FLAG,
  outputFlag,
  outputOf,
  STATE_FLAG,
  stateFolder,
} from './targeting.ts';
import { SUMMARIES } from './summaries.ts';

export const summary = SUMMARIES.trace;

const OUTPUTS = ['table', 'json'] as const;
const FLAGS: FlagSpec[] = [
  { name: 'service', kind: 'string', help: 'only traces with a span of this service (its workload name)' },
  {
    name: 'namespace',
    short: 'n',
    kind: 'string',
    help: 'only traces with a span of a proxy in this namespace (with --service: that workload)',
  },
  { name: 'limit', kind: 'number', help: 'at most this many traces (default 20, at most 1000)' },
  outputFlag(OUTPUTS),
  STATE_FLAG,
  CONTROL_FLAG,
  OPERATOR_TOKEN_FLAG,
];

const USAGE = `Usage: trellis trace [TRACE_ID] [options]

Without TRACE_ID: the most recent traces the control plane keeps (the embedded collector of
\`trellis up\`, which the proxies of \`trellis run\` export to unless it was given
--trace-collector), one line each. With TRACE_ID: that trace as a tree of its spans, each proxy
hop a SERVER (inbound) or CLIENT (outbound) span under its parent.`;

export async function run(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(formatHelp(USAGE, FLAGS) + '\n');
    return 0;
  }
  const { values, rest } = parseInterleaved(argv, FLAGS);
  if (rest.length > 1) throw new ConfigError('', `trellis trace: unexpected argument '${rest[1]}'`);
  const output = outputOf(values, OUTPUTS);
  const limit = (values.get('limit') as number | undefined) ?? 20;
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000)
    throw new ConfigError('--limit', 'expected a whole number 1..1000');
  const id = rest[0];
  if (id !== undefined && !/^[0-9a-f]{32}$/.test(id))
    throw new ConfigError('', `trellis trace: '${id}' is not a trace id (32 lower-case hex digits)`);
  const api = await findControlPlane({
    control: values.get('control') as string | undefined,
    stateFlag: values.get('state') as string | undefined,
    root: stateFolder(values.get('state') as string | undefined),
    tokenFile: values.get('operator-token-file') as string | undefined,
  });

  if (id !== undefined) {
    const trace = await getControl<{ trace_id: string; spans: ReceivedSpan[] }>(
      api,
      `/api/traces/${id}`,
      `trace ${id}`,
    );
    if (output === 'json') process.stdout.write(JSON.stringify(trace, null, 2) + '\n');
    else process.stdout.write(traceTree(trace.spans).join('\n') + '\n');
    return 0;
  }
  const service = values.get('service') as string | undefined;
  const namespace = values.get('namespace') as string | undefined;
  const query = `?${new URLSearchParams({
    limit: String(limit),
    ...(service === undefined ? {} : { service }),
    ...(namespace === undefined ? {} : { namespace }),
  }).toString()}`;
  const traces = await getControl<TraceSummary[]>(api, `/api/traces${query}`, 'traces');
  if (output === 'json') {
    process.stdout.write(JSON.stringify(traces, null, 2) + '\n');
    return 0;
  }
  if (traces.length === 0) {
    const which =
      (service === undefined ? '' : ` with service ${service}`) +
      (namespace === undefined ? '' : ` in namespace ${namespace}`);
    process.stderr.write(`No traces${which} (none kept yet: spans arrive within a second or two).\n`);
    return 0;
  }
  process.stdout.write(tracesTable(traces, Date.now()).join('\n') + '\n');
  return 0;
}

const ms = (n: number): string => (n < 10 ? `${n.toFixed(2)}ms` : `${Math.round(n)}ms`);

function age(fromMs: number, nowMs: number): string {
  const s = Math.max(0, Math.round((nowMs - fromMs) / 1000));
  return s < 120 ? `${s}s` : s < 7200 ? `${Math.round(s / 60)}m` : `${Math.round(s / 3600)}h`;
}

/** The list: one line per trace. */
export function tracesTable(traces: readonly TraceSummary[], nowMs: number): string[] {
  const rows = traces.map((t) => [
    t.trace_id,
    t.root_service || '-',
    t.root_name || '-',
    String(t.spans),
    ms(t.duration_ms),
    t.error ? 'error' : 'ok',
    age(t.start_ms, nowMs),
  ]);
  return alignColumns([['TRACE', 'ROOT SERVICE', 'ROOT', 'SPANS', 'DURATION', 'STATUS', 'AGE'], ...rows]);
}

function spanLine(s: ReceivedSpan, start: number): string {
  const a = s.attributes;
  const what = [a['http.request.method'], a['url.path']].filter((x) => x !== undefined).join(' ');
  const status = a['http.response.status_code'];
  const grpc = a['rpc.grpc.status_code'];
  const outcome = [
    status === undefined ? '' : String(status),
    grpc === undefined ? '' : `grpc ${String(grpc)}`,
    s.error ? `ERROR${s.statusMessage === '' ? '' : ` ${s.statusMessage}`}` : '',
  ]
    .filter((x) => x !== '')
    .join(' ');
  return `${s.service || '?'} ${s.kind.toUpperCase()} ${what || s.name}  ${outcome}  ${ms(s.endMs - s.startMs)} (+${ms(s.startMs - start)})  ${s.spanId}`;
}

/** One trace as a tree: each span under its parent, children by start time; orphans at the top. */
export function traceTree(spans: readonly ReceivedSpan[]): string[] {
  const ids = new Set(spans.map((s) => s.spanId));
  const children = new Map<string, ReceivedSpan[]>();
  const roots: ReceivedSpan[] = [];
  for (const s of spans) {
    if (s.parentSpanId !== '' && ids.has(s.parentSpanId) && s.parentSpanId !== s.spanId) {
      const list = children.get(s.parentSpanId) ?? [];
      list.push(s);
      children.set(s.parentSpanId, list);
    } else roots.push(s);
  }
  const byStart = (a: ReceivedSpan, b: ReceivedSpan) => a.startMs - b.startMs;
  const start = Math.min(...spans.map((s) => s.startMs));
  const out: string[] = [`trace ${spans[0]?.traceId ?? ''}: ${spans.length} spans`];
  const seen = new Set<string>();
  const walk = (s: ReceivedSpan, prefix: string, last: boolean): void => {
    if (seen.has(s.spanId)) return; // a cycle from a confused sender
    seen.add(s.spanId);
    out.push(`${prefix}${last ? '└─ ' : '├─ '}${spanLine(s, start)}`);
    const kids = (children.get(s.spanId) ?? []).sort(byStart);
    kids.forEach((k, i) => walk(k, prefix + (last ? '   ' : '│  '), i === kids.length - 1));
  };
  const top = roots.sort(byStart);
  top.forEach((r, i) => walk(r, '', i === top.length - 1));
  return out;
}
