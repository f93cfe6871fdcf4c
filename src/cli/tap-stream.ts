// What `trellis tap` and `trellis top` share: their flags (the resource as `trellis stat` names
// it, the filters, the bounds for scripts), the query of the control plane's GET /api/tap, and
// reading that stream (src/control/tap/tap-api.ts) until it ends, a bound is reached, or Ctrl-C.
// A proxy that cannot be tapped is said on stderr as soon as the control plane says it; a resource
// that matches no proxy is an error at once (the control plane answers 404 without waiting).
import { ConfigError, TrellisError } from '../core/errors.ts';
import { parseDuration } from '../core/duration.ts';
import { NdjsonReader } from '../core/ndjson.ts';
import { parseTapFilter, tapFilterQuery, TAP_HARD_MAX_RPS } from '../core/tap-filter.ts';
import { errorOf, fetchFailure, findControlPlane, requestHeaders, type ControlApi } from './control-api.ts';
import type { FlagSpec, ParsedFlags } from './flags.ts';
import { readTapLine, type TapExchange, type TapLine } from './tap-lines.ts';
import {
  CONTROL_FLAG,
  namespaceOf,
  OPERATOR_TOKEN_FLAG,
  parseTarget,
  STATE_FLAG,
  stateFolder,
} from './targeting.ts';

export const TAP_FLAGS: FlagSpec[] = [
  {
    name: 'namespace',
    short: 'n',
    kind: 'string',
    help: 'the namespace of RESOURCE (default: every namespace)',
  },
  {
    name: 'to',
    kind: 'string',
    help: 'only requests RESOURCE sends to this workload (its outbound traffic)',
  },
  { name: 'to-namespace', kind: 'string', help: 'the namespace of --to (default: that of -n)' },
  { name: 'method', kind: 'string', help: 'only requests with this method (e.g. GET)' },
  { name: 'path', kind: 'string', help: 'only requests whose path starts with this prefix' },
  { name: 'authority', kind: 'string', help: 'only requests with this authority (Host), e.g. web:8080' },
  {
    name: 'max-rps',
    kind: 'number',
    help: `events per second at most, per proxy (default 100, at most ${TAP_HARD_MAX_RPS})`,
  },
  { name: 'max-events', kind: 'number', help: 'stop after this many requests (for scripts)' },
  { name: 'duration', kind: 'string', help: 'stop after this long, e.g. 10s (for scripts)' },
  STATE_FLAG,
  CONTROL_FLAG,
  OPERATOR_TOKEN_FLAG,
];

export interface TapCommand {
  readonly api: ControlApi;
  /** The query of GET /api/tap, without '?'. */
  readonly query: string;
  readonly maxEvents: number | null;
  readonly durationMs: number | null;
}

/** The API query and bounds of the flags and RESOURCE; ConfigError when they cannot be read. */
export async function tapCommandOf(
  command: string,
  values: ParsedFlags['values'],
  rest: readonly string[],
): Promise<TapCommand> {
  if (rest.length === 0)
    throw new ConfigError(
      'RESOURCE',
      `required: what to tap, e.g. web or deploy/web (trellis ${command} RESOURCE)`,
    );
  if (rest.length > 1) throw new ConfigError('', `trellis ${command}: unexpected argument '${rest[1]}'`);
  const target = parseTarget(rest[0]!, ['workload', 'pod', 'namespace']);
  const namespace = namespaceOf(values, target);
  const q = new URLSearchParams();
  if (namespace !== undefined) q.set('namespace', namespace);
  if (target.kind === 'workload' && target.name !== null) q.set('workload', target.name);
  if (target.kind === 'pod' && target.name !== null) q.set('instance', target.name);
  const to = values.get('to') as string | undefined;
  const toNamespace = values.get('to-namespace') as string | undefined;
  if (toNamespace !== undefined && to === undefined) throw new ConfigError('--to-namespace', 'needs --to');
  if (to !== undefined) q.set('to', parseTarget(to, ['workload'], true).name!);
  if (toNamespace !== undefined) q.set('to_namespace', toNamespace);
  const filterQuery = new URLSearchParams();
  for (const [flag, param] of [
    ['method', 'method'],
    ['path', 'path'],
    ['authority', 'authority'],
  ] as const) {
    const value = values.get(flag) as string | undefined;
    if (value !== undefined) filterQuery.set(param, value);
  }
  const maxRps = values.get('max-rps') as number | undefined;
  if (maxRps !== undefined) filterQuery.set('max_rps', String(maxRps));
  const filter = parseTapFilter(filterQuery);
  if (typeof filter === 'string') {
    const { flag, problem } = flagOf(filter);
    throw new ConfigError(flag === '' ? '' : `--${flag}`, problem);
  }
  const maxEvents = (values.get('max-events') as number | undefined) ?? null;
  if (maxEvents !== null && (!Number.isInteger(maxEvents) || maxEvents < 1))
    throw new ConfigError('--max-events', 'expected a whole number, at least 1');
  const duration = values.get('duration') as string | undefined;
  // Every flag is checked before the control plane is looked for: a typo is said as such.
  const durationMs = duration === undefined ? null : parseDuration('--duration', duration);
  const api = await findControlPlane({
    control: values.get('control') as string | undefined,
    stateFlag: values.get('state') as string | undefined,
    root: stateFolder(values.get('state') as string | undefined),
    tokenFile: values.get('operator-token-file') as string | undefined,
  });
  const filterPart = tapFilterQuery(filter);
  return {
    api,
    query: [q.toString(), filterPart].filter((s) => s !== '').join('&'),
    maxEvents,
    durationMs,
  };
}

/**
 * The flag a filter's message is about and what is wrong with it ("'max_rps' must be ..." ->
 * max-rps, "must be ..."): the user typed the flag, not the query parameter.
 */
function flagOf(message: string): { flag: string; problem: string } {
  const m = /^'([a-z_]+)' /.exec(message);
  if (m === null) return { flag: '', problem: message };
  return { flag: m[1]!.replaceAll('_', '-'), problem: message.slice(m[0].length).replace(/^is /, '') };
}

/**
 * Streams the tap: each exchange to `onExchange`, proxies that cannot be tapped and drop counts
 * to stderr. Resolves when the stream ends, --max-events or --duration is reached, or on Ctrl-C
 * (SIGINT) or SIGTERM; TRELLIS_ERR_TAP when the control plane refuses the tap or cannot be reached.
 */
export async function streamTap(
  cmd: TapCommand,
  command: string,
  onExchange: (e: TapExchange) => void,
): Promise<void> {
  const abort = new AbortController();
  const stop = (): void => abort.abort();
  // SIGTERM too: `timeout 10 trellis top web > top.txt` and supervisors stop it that way.
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const timer = cmd.durationMs === null ? null : setTimeout(stop, cmd.durationMs);
  let events = 0;
  const onLine = (line: TapLine): void => {
    if (abort.signal.aborted) return;
    if (line.type === 'exchange') {
      onExchange(line);
      if (cmd.maxEvents !== null && ++events >= cmd.maxEvents) stop();
    } else if (line.type === 'error') {
      process.stderr.write(`trellis ${command}: cannot tap ${line.proxy}: ${line.error}\n`);
    } else if (line.type === 'drops') {
      process.stderr.write(
        `trellis ${command}: ${line.proxy} left out ${line.rateCapped} requests over the rate cap, ` +
          `${line.slowConsumer} for a slow reader (so far)\n`,
      );
    }
  };
  try {
    let res: Response;
    try {
      const headers = await requestHeaders(cmd.api, 'GET', '/api/tap');
      res = await fetch(`${cmd.api.base}/api/tap?${cmd.query}`, { headers, signal: abort.signal });
    } catch (error) {
      if (abort.signal.aborted) return;
      throw new TrellisError(
        'TRELLIS_ERR_CONTROL_PLANE',
        `cannot reach the control plane at ${cmd.api.base}: ${fetchFailure(error)}`,
      );
    }
    if (res.status !== 200) {
      const text = await res.text();
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        body = { error: text.trim() };
      }
      throw new TrellisError('TRELLIS_ERR_TAP', `cannot tap: ${errorOf(res.status, body)}`);
    }
    const reader = new NdjsonReader(1 << 20, (o) => {
      const line = readTapLine(o);
      if (line !== null) onLine(line);
    });
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        reader.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
        if (abort.signal.aborted) break;
      }
      reader.end();
    } catch (error) {
      if (!abort.signal.aborted)
        throw new TrellisError('TRELLIS_ERR_TAP', `the tap broke: ${(error as Error).message}`);
    }
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    if (timer !== null) clearTimeout(timer);
    abort.abort();
  }
}
