// Trace context as requests carry it: W3C Trace Context (`traceparent`, `tracestate`) and B3
// (multi-header `x-b3-*` and single `b3`). The parsers are strict and bounded: a value that is
// too long, not lower-case hex where hex belongs, all zero, or otherwise off the grammar gives
// null (the context is ignored), never a half-parsed context; nothing here throws on any input.
// Trace ids are kept as 32 lower-case hex digits (a 64-bit B3 id is left-padded with zeros, as
// OpenTelemetry does) and span ids as 16.

/** Where an incoming context came from (it is propagated onward in the same form). */
export type ContextFormat = 'w3c' | 'b3' | 'b3-single';

export interface TraceContext {
  readonly format: ContextFormat;
  /** 32 lower-case hex digits, not all zero. */
  readonly traceId: string;
  /** B3 only: the id as it came (16 or 32 digits), so it is sent on unchanged. */
  readonly rawTraceId: string;
  /** The caller's span (16 hex digits); null for a B3 single value that carries only a decision. */
  readonly spanId: string | null;
  /** true/false: the caller decided; null: it deferred the decision (B3 without a sampling state). */
  readonly sampled: boolean | null;
}

/** Longest `traceparent` accepted (version 00 is exactly 55 characters; later versions may add). */
export const MAX_TRACEPARENT_LENGTH = 256;
/** Longest `tracestate` kept (W3C: at least 512 must be propagated); longer ones are dropped. */
export const MAX_TRACESTATE_LENGTH = 512;
/** Most list members in a kept `tracestate` (W3C's limit). */
export const MAX_TRACESTATE_MEMBERS = 32;
/** Longest single `b3` value: 32 + 1 + 16 + 1 + 1 + 1 + 16. */
export const MAX_B3_LENGTH = 68;

const ZERO_32 = '00000000000000000000000000000000';
const ZERO_16 = '0000000000000000';

/** Whether s[from, from+n) is lower-case hex. */
function isLowerHex(s: string, from: number, n: number): boolean {
  for (let i = from; i < from + n; i++) {
    const c = s.charCodeAt(i);
    if (!((c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66))) return false;
  }
  return true;
}

function isSpanId(s: string): boolean {
  return s.length === 16 && isLowerHex(s, 0, 16) && s !== ZERO_16;
}

/** A B3 trace id (16 or 32 hex) as 32 digits, or null. */
function b3TraceId(s: string): string | null {
  if ((s.length !== 16 && s.length !== 32) || !isLowerHex(s, 0, s.length)) return null;
  const id = s.length === 16 ? ZERO_16 + s : s;
  return id === ZERO_32 ? null : id;
}

/** `traceparent` (W3C Trace Context level 1, section 3.2), or null when it is not valid. */
export function parseTraceparent(value: string): TraceContext | null {
  const n = value.length;
  if (n < 55 || n > MAX_TRACEPARENT_LENGTH) return null;
  if (!isLowerHex(value, 0, 2) || value.charCodeAt(2) !== 0x2d) return null;
  const v0 = value.charCodeAt(0);
  const v1 = value.charCodeAt(1);
  if (v0 === 0x66 && v1 === 0x66) return null; // version ff
  // Version 00 is exactly 55 characters; a later version may append "-..." after the flags.
  if (v0 === 0x30 && v1 === 0x30 ? n !== 55 : n > 55 && value.charCodeAt(55) !== 0x2d) return null;
  if (value.charCodeAt(35) !== 0x2d || value.charCodeAt(52) !== 0x2d) return null;
  if (!isLowerHex(value, 3, 32) || !isLowerHex(value, 36, 16) || !isLowerHex(value, 53, 2)) return null;
  const traceId = value.slice(3, 35);
  const spanId = value.slice(36, 52);
  if (traceId === ZERO_32 || spanId === ZERO_16) return null;
  // The sampled flag is bit 0 of the flags byte: its low hex digit is odd.
  const low = value.charCodeAt(54);
  const sampled = ((low <= 0x39 ? low - 0x30 : low - 0x57) & 1) === 1;
  return { format: 'w3c', traceId, rawTraceId: traceId, spanId, sampled };
}

const TRACESTATE_KEY =
  /^([a-z0-9][_0-9a-z\-*/]{0,255}|[a-z0-9][_0-9a-z\-*/]{0,240}@[a-z][_0-9a-z\-*/]{0,13})$/;
// Printable ASCII except ',' and '=', not ending in a space (W3C 3.3.1.3.2).
const TRACESTATE_VALUE = /^[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$/;

/**
 * A `tracestate` to send on (members trimmed of optional spaces), or null when it is too long,
 * has too many members, a duplicate key or a member off the grammar: then it is dropped whole.
 */
export function parseTracestate(value: string): string | null {
  if (value.length > MAX_TRACESTATE_LENGTH) return null;
  const members = value.split(',');
  if (members.length > MAX_TRACESTATE_MEMBERS * 2) return null;
  const kept: string[] = [];
  const keys = new Set<string>();
  for (const raw of members) {
    const member = raw.trim();
    if (member === '') continue; // empty list members are allowed and dropped
    const eq = member.indexOf('=');
    if (eq <= 0) return null;
    const key = member.slice(0, eq);
    if (!TRACESTATE_KEY.test(key) || !TRACESTATE_VALUE.test(member.slice(eq + 1)) || keys.has(key))
      return null;
    keys.add(key);
    kept.push(member);
  }
  if (kept.length === 0 || kept.length > MAX_TRACESTATE_MEMBERS) return null;
  return kept.join(',');
}

/** B3 multi-header fields (each value as it came, or undefined when absent). */
export interface B3Fields {
  traceId?: string | undefined;
  spanId?: string | undefined;
  sampled?: string | undefined;
  flags?: string | undefined;
}

/** The sampling state of `x-b3-sampled` / `x-b3-flags`: true, false, null (deferred), undefined (invalid). */
function b3Sampled(sampled: string | undefined, flags: string | undefined): boolean | null | undefined {
  if (flags !== undefined) {
    if (flags === '1') return true; // debug implies accept
    if (flags !== '0') return undefined;
  }
  if (sampled === undefined) return null;
  if (sampled === '1' || sampled === 'true') return true;
  if (sampled === '0' || sampled === 'false') return false;
  return undefined;
}

/** B3 multi-header context (`x-b3-traceid`, `x-b3-spanid`, `x-b3-sampled`, `x-b3-flags`), or null. */
export function parseB3Multi(f: B3Fields): TraceContext | null {
  const sampled = b3Sampled(f.sampled, f.flags);
  if (sampled === undefined || f.traceId === undefined || f.spanId === undefined) return null;
  const traceId = b3TraceId(f.traceId);
  if (traceId === null || !isSpanId(f.spanId)) return null;
  return { format: 'b3', traceId, rawTraceId: f.traceId, spanId: f.spanId, sampled };
}

/**
 * The single `b3` header: `{TraceId}-{SpanId}[-{SamplingState}[-{ParentSpanId}]]`, or only a
 * sampling state (`0`, `1`, `d`), which gives a context without ids (spanId null).
 */
export function parseB3Single(value: string): TraceContext | null {
  if (value.length > MAX_B3_LENGTH) return null;
  if (value.length === 1) {
    if (value === '0' || value === '1' || value === 'd')
      return { format: 'b3-single', traceId: '', rawTraceId: '', spanId: null, sampled: value !== '0' };
    return null;
  }
  const parts = value.split('-');
  if (parts.length < 2 || parts.length > 4) return null;
  const traceId = b3TraceId(parts[0]!);
  if (traceId === null || !isSpanId(parts[1]!)) return null;
  let sampled: boolean | null = null;
  if (parts.length >= 3) {
    const s = parts[2]!;
    if (s === '1' || s === 'd') sampled = true;
    else if (s === '0') sampled = false;
    else return null;
  }
  if (parts.length === 4 && !isSpanId(parts[3]!)) return null;
  return { format: 'b3-single', traceId, rawTraceId: parts[0]!, spanId: parts[1]!, sampled };
}

/** The `traceparent` of a sampled span. */
export function formatTraceparent(traceId: string, spanId: string): string {
  return `00-${traceId}-${spanId}-01`;
}

/** The single `b3` value of a sampled span (with its parent when it has one). */
export function formatB3Single(rawTraceId: string, spanId: string, parentSpanId: string | null): string {
  return parentSpanId === null ? `${rawTraceId}-${spanId}-1` : `${rawTraceId}-${spanId}-1-${parentSpanId}`;
}
