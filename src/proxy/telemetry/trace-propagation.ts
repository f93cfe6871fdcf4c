// Joining a request to a trace, where the proxy forwards it: the request's fields (a flat list
// [name, value, ...], names in any case: HTTP/1 heads as parsed, HTTP/2 fields in lower case) are
// read once for trace context; a request that arrives sampled is traced, one without a decision
// starts a trace at the configured ratio. A traced request's fields are rewritten in place so the
// next hop (the app inbound, the peer outbound) sees the proxy's span as its parent, in the format
// the context came in (W3C or B3); a new trace is sent as W3C `traceparent`. Context headers that
// did not parse are removed from a traced request (never forwarded half-parsed); an untraced
// request's fields are left exactly as they came.
//
// The cost for an untraced request is this one pass over the field names, which compares lengths
// and a first letter before it looks at a name, and allocates nothing when no trace field is there.
import {
  formatB3Single,
  formatTraceparent,
  parseB3Multi,
  parseB3Single,
  parseTraceparent,
  parseTracestate,
  type TraceContext,
} from './trace-context.ts';
import {
  takeSpanId,
  takeTraceIds,
  takenSpanId,
  takenSpanSuffix,
  takenTraceId,
  takenTraceparent,
  takenTraceSpanId,
  TraceSpan,
  wallNowMs,
  type SpanKind,
} from './trace-span.ts';

// Field slots found by the scan.
const TRACEPARENT = 0;
const TRACESTATE = 1;
const B3 = 2;
const B3_TRACEID = 3;
const B3_SPANID = 4;
const B3_PARENT = 5;
const B3_SAMPLED = 6;
const B3_FLAGS = 7;
const USER_AGENT = 8;
const SLOTS = 9;
const NAMES = [
  'traceparent',
  'tracestate',
  'b3',
  'x-b3-traceid',
  'x-b3-spanid',
  'x-b3-parentspanid',
  'x-b3-sampled',
  'x-b3-flags',
  'user-agent',
];
/** The format whose context a slot's field belongs to (it is kept when that context is carried on). */
const SLOT_FORMAT: readonly (string | undefined)[] = [
  'w3c',
  'w3c',
  'b3-single',
  'b3',
  'b3',
  'b3',
  'b3',
  'b3',
  undefined,
];
/** Found more than once (a repeated context field makes its context ambiguous: ignored). */
const REPEATED = -2;

/** The slot of a field name, or -1. */
function slotOf(name: string): number {
  const n = name.length;
  if (n !== 2 && n !== 10 && n !== 11 && n !== 12 && n !== 17) return -1;
  const c = name.charCodeAt(0) | 0x20;
  if (c !== 0x74 && c !== 0x62 && c !== 0x78 && c !== 0x75) return -1; // t b x u
  for (let s = 0; s < SLOTS; s++) if (NAMES[s]!.length === n && isNamed(name, NAMES[s]!)) return s;
  return -1;
}

/**
 * Whether `name` is `lower` (a lower-case name of the same length) in any case, compared in place:
 * a toLowerCase() copy per candidate name was garbage on every traced request.
 */
function isNamed(name: string, lower: string): boolean {
  for (let i = 0; i < lower.length; i++) {
    const c = name.charCodeAt(i);
    const want = lower.charCodeAt(i);
    if (c !== want && !(want >= 0x61 && want <= 0x7a && c === want - 0x20)) return false;
  }
  return true;
}

/**
 * Where joinTrace found each slot's field (-1: not there, REPEATED), one table for every call:
 * joinTrace runs to its end without yielding, so no two calls share it at once.
 */
const FOUND = new Int32Array(SLOTS);
/** The positions of the fields joinTrace removes (shared the same way; empty between calls). */
const DROP: number[] = [];

/** Whether a request without a sampling decision starts a trace (no draw at ratio 1 or 0). */
function draw(ratio: number): boolean {
  return ratio >= 1 || (ratio > 0 && Math.random() < ratio);
}

function valueAt(fields: readonly string[], at: number): string | undefined {
  return at >= 0 ? fields[at + 1] : undefined;
}

/**
 * Reads the trace context of `fields` and decides: a TraceSpan (the fields rewritten to carry it)
 * when the request is traced, null when not (the fields untouched). `ratio`: the share of requests
 * without a sampling decision that start a trace.
 */
export function joinTrace(fields: string[], kind: SpanKind, ratio: number): TraceSpan | null {
  // Nothing is allocated: the positions go to one table (FOUND), reset when a context field is there.
  const found = FOUND;
  let anyContext = false;
  let ua = -1;
  for (let i = 0; i < fields.length; i += 2) {
    const slot = slotOf(fields[i]!);
    if (slot === -1) continue;
    if (slot === USER_AGENT) {
      if (ua === -1) ua = i;
      continue;
    }
    if (!anyContext) {
      found.fill(-1);
      anyContext = true;
    }
    found[slot] = found[slot] === -1 ? i : REPEATED;
  }
  if (!anyContext) {
    if (!draw(ratio)) return null;
    return startTrace(fields, kind, null, ua >= 0 ? fields[ua + 1]! : '');
  }

  const tp = found[TRACEPARENT]!;
  const b3 = found[B3]!;
  const hasMulti =
    found[B3_TRACEID] !== -1 || found[B3_SPANID] !== -1 || found[B3_SAMPLED] !== -1 || found[B3_FLAGS] !== -1;
  const multiRepeated =
    found[B3_TRACEID] === REPEATED ||
    found[B3_SPANID] === REPEATED ||
    found[B3_SAMPLED] === REPEATED ||
    found[B3_FLAGS] === REPEATED;
  const w3c = tp >= 0 ? parseTraceparent(fields[tp + 1]!) : null;
  const single = b3 >= 0 ? parseB3Single(fields[b3 + 1]!) : null;
  const multi =
    hasMulti && !multiRepeated
      ? parseB3Multi({
          traceId: valueAt(fields, found[B3_TRACEID]!),
          spanId: valueAt(fields, found[B3_SPANID]!),
          sampled: valueAt(fields, found[B3_SAMPLED]!),
          flags: valueAt(fields, found[B3_FLAGS]!),
        })
      : null;
  const ctx: TraceContext | null = w3c ?? single ?? multi;

  const decided = ctx?.sampled ?? null;
  const sampled = decided !== null ? decided : draw(ratio);
  if (!sampled) return null;

  const userAgent = ua >= 0 ? fields[ua + 1]! : '';
  // Fields of a context that did not parse, and the other formats' fields of the one that is not
  // carried on: removed (a context is never forwarded half-parsed or contradicted).
  const drop = DROP;
  drop.length = 0;
  const carried = ctx !== null && ctx.spanId !== null ? ctx : null;
  const format = carried?.format;
  for (let slot = 0; slot < SLOTS; slot++) {
    if (slot === USER_AGENT || found[slot] === -1 || format === SLOT_FORMAT[slot]) continue;
    dropAll(fields, NAMES[slot]!, drop);
  }

  let span: TraceSpan;
  if (carried === null) span = startTrace(fields, kind, null, userAgent);
  else {
    let traceState = '';
    if (carried.format === 'w3c' && found[TRACESTATE]! >= 0) {
      const ts = found[TRACESTATE]!;
      const kept = parseTracestate(fields[ts + 1]!);
      if (kept === null) drop.push(ts);
      else {
        traceState = kept;
        fields[ts + 1] = kept;
      }
    } else if (carried.format === 'w3c' && found[TRACESTATE] === REPEATED)
      dropAll(fields, NAMES[TRACESTATE]!, drop);
    takeSpanId();
    span = new TraceSpan(
      kind,
      carried.traceId,
      takenSpanId(),
      carried.spanId,
      traceState,
      wallNowMs(),
      userAgent,
    );
    if (carried.format === 'w3c') fields[tp + 1] = carriedTraceparent(fields[tp + 1]!, carried.traceId);
    else if (carried.format === 'b3-single')
      fields[b3 + 1] = formatB3Single(carried.rawTraceId, span.spanId, carried.spanId);
    else {
      fields[found[B3_SPANID]! + 1] = span.spanId;
      setField(fields, found[B3_PARENT]!, 'x-b3-parentspanid', carried.spanId!, drop);
      if (found[B3_FLAGS] === -1) setField(fields, found[B3_SAMPLED]!, 'x-b3-sampled', '1', drop);
    }
  }
  if (drop.length > 0) {
    drop.sort((a, b) => b - a);
    let last = -1;
    for (const at of drop) {
      if (at !== last) fields.splice(at, 2);
      last = at;
    }
    drop.length = 0;
  }
  return span;
}

/** Adds the positions of every field named `name` (lower case) to `drop`. */
function dropAll(fields: readonly string[], name: string, drop: number[]): void {
  for (let i = 0; i < fields.length; i += 2)
    if (fields[i]!.length === name.length && isNamed(fields[i]!, name)) drop.push(i);
}

/** Sets a field found at `at` (-1: absent, REPEATED: every copy dropped) to `value`. */
function setField(fields: string[], at: number, name: string, value: string, drop: number[]): void {
  if (at >= 0) {
    fields[at + 1] = value;
    return;
  }
  if (at === REPEATED) dropAll(fields, name, drop);
  fields.push(name, value);
}

/**
 * The `traceparent` a joined W3C context goes on with: the one that came (`value`, valid) with the
 * taken span id in place of its caller's, from parts that exist already: its first 36 characters,
 * "00-{trace id}-", when it is of version 00 (the version sent), and the span id part of the taken
 * record with its flags "-01" (formatTraceparent's result, without concatenating five parts).
 */
function carriedTraceparent(value: string, traceId: string): string {
  const head =
    value.charCodeAt(0) === 0x30 && value.charCodeAt(1) === 0x30 ? value.slice(0, 36) : `00-${traceId}-`;
  return head + takenSpanSuffix();
}

/** A new trace: its root span, sent on as `traceparent` (ids and value from one pool record). */
function startTrace(fields: string[], kind: SpanKind, parent: string | null, userAgent: string): TraceSpan {
  takeTraceIds();
  const span = new TraceSpan(kind, takenTraceId(), takenTraceSpanId(), parent, '', wallNowMs(), userAgent);
  fields.push('traceparent', takenTraceparent());
  return span;
}

/** HTTP/2 request headers as node:http2 gives them (lower-case names, repeated ones as arrays). */
export type HeaderObject = Record<string, string | string[] | number | undefined>;

/**
 * joinTrace for a header object (the node:http2 paths): the trace fields are taken out as a list,
 * joined, and put back as rewritten. An untraced request's object is left as it was; the lookups
 * are the same nine names whatever the request.
 */
export function joinTraceObject(headers: HeaderObject, kind: SpanKind, ratio: number): TraceSpan | null {
  let fields: string[] | null = null;
  for (const name of NAMES) {
    const value = headers[name];
    if (value === undefined) continue;
    fields ??= [];
    if (Array.isArray(value)) for (const v of value) fields.push(name, v);
    else fields.push(name, String(value));
  }
  let decided = ratio;
  if (fields === null) {
    if (!draw(ratio)) return null;
    fields = [];
    decided = 1; // drawn already
  }
  const span = joinTrace(fields, kind, decided);
  if (span === null) return null;
  for (const name of NAMES) if (name !== 'user-agent') delete headers[name];
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i]!;
    if (name === 'user-agent') continue;
    const prior = headers[name];
    headers[name] =
      prior === undefined
        ? fields[i + 1]!
        : ([] as string[]).concat(prior as string | string[], fields[i + 1]!);
  }
  return span;
}

/**
 * A retry: the context fields of a traced request (as joinTrace left them: one format's) are
 * rewritten so that the next attempt carries `span` (nextAttemptSpan) as its parent.
 */
export function carryAttempt(fields: string[], span: TraceSpan): void {
  for (let i = 0; i < fields.length; i += 2) {
    const slot = slotOf(fields[i]!);
    if (slot === TRACEPARENT || slot === B3 || slot === B3_SPANID)
      fields[i + 1] = withSpanId(slot, fields[i + 1]!, span);
  }
}

/** carryAttempt for a node:http2 header object. */
export function carryAttemptObject(headers: HeaderObject, span: TraceSpan): void {
  for (const slot of [TRACEPARENT, B3, B3_SPANID]) {
    const value = headers[NAMES[slot]!];
    if (typeof value === 'string') headers[NAMES[slot]!] = withSpanId(slot, value, span);
  }
}

/** A context field's value (as joinTrace wrote it) carrying `span` instead. */
function withSpanId(slot: number, value: string, span: TraceSpan): string {
  if (slot === TRACEPARENT) return formatTraceparent(span.traceId, span.spanId);
  if (slot === B3_SPANID) return span.spanId;
  // b3: {TraceId}-{SpanId}-1[-{ParentSpanId}]
  const dash = value.indexOf('-');
  const next = value.indexOf('-', dash + 1);
  return value.slice(0, dash + 1) + span.spanId + (next === -1 ? '' : value.slice(next));
}
