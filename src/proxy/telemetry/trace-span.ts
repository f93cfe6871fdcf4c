// One span of a traced exchange: made when a sampled request starts (trace-propagation.ts), and
// turned into a finished span with its attributes when the exchange is recorded
// (trace-tracer.ts). Ids are random, cut from pools the CSPRNG fills (IdPool).
import { randomFillSync } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Target } from '../../core/target.ts';

/** 'internal': the span of a retried request a proxy started the trace of (nextAttemptSpan). */
export type SpanKind = 'server' | 'client' | 'internal';

export class TraceSpan {
  readonly kind: SpanKind;
  /** 32 lower-case hex digits. */
  readonly traceId: string;
  /** 16 lower-case hex digits. */
  readonly spanId: string;
  /** The caller's span, null for the root of a trace. */
  readonly parentSpanId: string | null;
  /** The W3C tracestate sent on ('' when none). */
  readonly traceState: string;
  /** Milliseconds since the Unix epoch (fractional). */
  readonly startMs: number;
  /** The request's User-Agent ('' when none). */
  readonly userAgent: string;
  // What the forwarding hook adds (Tracer.start): plain fields rather than a WeakMap entry, which
  // cost the garbage collector an ephemeron per traced request.
  /** The other side's address ('' when not known). */
  peerAddress = '';
  /** The verified client and server identities ('' when not known). */
  clientIdentity = '';
  serverIdentity = '';
  /** Outbound: the routed target, when the hook knows it. */
  server: Target | null = null;
  /** A CLIENT span: the attempt it stands for (0 the first, 1 the first retry, ...). */
  retryCount = 0;
  /**
   * An attempt whose parent is the request span this proxy made (nextAttemptSpan: a retry in a
   * trace the proxy started), which the last attempt's finish ends; null otherwise.
   */
  request: TraceSpan | null = null;

  constructor(
    kind: SpanKind,
    traceId: string,
    spanId: string,
    parentSpanId: string | null,
    traceState: string,
    startMs: number,
    userAgent: string,
  ) {
    this.kind = kind;
    this.traceId = traceId;
    this.spanId = spanId;
    this.parentSpanId = parentSpanId;
    this.traceState = traceState;
    this.startMs = startMs;
    this.userAgent = userAgent;
  }
}

/** One attribute: a string or an integer value. */
export type SpanAttribute = readonly [key: string, value: string | number];

/**
 * The span of the next attempt of the same request (a retry): a sibling of `span` (same trace,
 * parent and tracestate, a new id), starting now, with the retry count one more.
 */
export function nextAttemptSpan(span: TraceSpan): TraceSpan {
  const next = attemptSpan(span, randomHexId(8), span.parentSpanId, wallNowMs());
  next.request = span.request;
  next.retryCount = span.retryCount + 1;
  return next;
}

/**
 * A retry in a trace this proxy started (the first attempt is a root): the attempts get a common
 * parent, an INTERNAL span for the whole request made now, from the first attempt's start to the
 * last one's end (a collector sees one trace with one root, not a root per attempt). Returns the
 * first attempt as a child of it (same id, as already sent upstream), to be finished in its place.
 */
export function underRequestSpan(first: TraceSpan): TraceSpan {
  const request = new TraceSpan(
    'internal',
    first.traceId,
    randomHexId(8),
    null,
    '',
    first.startMs,
    first.userAgent,
  );
  copyPeer(first, request);
  const child = attemptSpan(first, first.spanId, request.spanId, first.startMs);
  child.request = request;
  child.retryCount = first.retryCount;
  return child;
}

function attemptSpan(span: TraceSpan, spanId: string, parent: string | null, startMs: number): TraceSpan {
  const next = new TraceSpan(
    span.kind,
    span.traceId,
    spanId,
    parent,
    span.traceState,
    startMs,
    span.userAgent,
  );
  copyPeer(span, next);
  return next;
}

function copyPeer(from: TraceSpan, to: TraceSpan): void {
  to.peerAddress = from.peerAddress;
  to.clientIdentity = from.clientIdentity;
  to.serverIdentity = from.serverIdentity;
  to.server = from.server;
}

/** Attributes as one flat list, key then value: [key, value, key, value, ...] (no pair arrays). */
export type SpanAttributes = readonly (string | number)[];

/** A span whose exchange is over: what is exported. */
export interface FinishedSpan {
  readonly span: TraceSpan;
  readonly name: string;
  readonly endMs: number;
  /** Keys at even indices (strings), their values after them. */
  readonly attributes: SpanAttributes;
  /** OTLP status: true = ERROR (with `statusMessage`), false = UNSET. */
  readonly error: boolean;
  readonly statusMessage: string;
  /**
   * Where the attributes that repeat from span to span begin (an even index; undefined: none do):
   * those of one connection, peer or route (method aside), encoded once and copied while they
   * repeat (trace-otlp.ts). The attributes before it change per request (path, status).
   */
  readonly stableFrom?: number;
}

// The process's time origin, read once: the performance.timeOrigin getter allocates per call.
const TIME_ORIGIN_MS = performance.timeOrigin;

/** Now, in milliseconds since the Unix epoch, with the monotonic clock's resolution. */
export function wallNowMs(): number {
  return TIME_ORIGIN_MS + performance.now();
}

/** A performance.now() reading as milliseconds since the Unix epoch. */
export function wallMsAt(monotonicMs: number): number {
  return TIME_ORIGIN_MS + monotonicMs;
}

// Ids come from pools of text records, each refilled from one CSPRNG call per POOL_RECORDS records
// and written (the hex digits by table, in place) into one latin1 string: a new trace takes a
// record shaped as its `traceparent`, "00-{trace id}-{span id}-01", a joined trace one shaped as
// the end of it, "{span id}-01". The values and ids a request needs are then slices of that
// string (V8 keeps a slice as a view of its parent): no value is concatenated per request, and
// none has to be flattened when it is written out (a concatenated traceparent was, by the HPACK
// encoder, per request).
const POOL_RECORDS = 256;

/** Each byte's two lower-case hex digits, as character codes: HEX_CHARS[2b], HEX_CHARS[2b + 1]. */
const HEX_CHARS = Buffer.from(
  Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, '0')).join(''),
  'latin1',
);

class IdPool {
  /** The records as text; the last one taken starts at `taken`. */
  text = '';
  taken = 0;
  private next: number;
  private readonly recordChars: number;
  /** Where each id of a record starts, and its bytes. */
  private readonly ids: readonly (readonly [at: number, bytes: number])[];
  private readonly recordBytes: number;
  private readonly random: Buffer;
  private readonly chars: Buffer;

  /** `template`: one record with its ids as zeros, at the `ids` positions. */
  constructor(template: string, ids: readonly (readonly [at: number, bytes: number])[]) {
    this.recordChars = template.length;
    this.ids = ids;
    this.recordBytes = ids.reduce((n, [, bytes]) => n + bytes, 0);
    this.random = Buffer.alloc(POOL_RECORDS * this.recordBytes);
    this.chars = Buffer.from(template.repeat(POOL_RECORDS), 'latin1');
    this.next = this.chars.length;
  }

  /** Takes the next record (at `taken` in `text`). */
  take(): void {
    if (this.next === this.chars.length) this.refill();
    this.taken = this.next;
    this.next += this.recordChars;
  }

  private refill(): void {
    const { random, chars } = this;
    randomFillSync(random);
    for (let r = 0; r < POOL_RECORDS; r++) {
      let from = r * this.recordBytes;
      // W3C forbids all-zero ids: such a record is drawn again.
      while (this.anyZeroId(from)) randomFillSync(random.subarray(from, from + this.recordBytes));
      for (let k = 0; k < this.ids.length; k++) {
        const bytes = this.ids[k]![1];
        const to = r * this.recordChars + this.ids[k]![0];
        for (let i = 0; i < bytes; i++) {
          const b = random[from + i]! << 1;
          chars[to + 2 * i] = HEX_CHARS[b]!;
          chars[to + 2 * i + 1] = HEX_CHARS[b + 1]!;
        }
        from += bytes;
      }
    }
    this.text = chars.toString('latin1');
    this.next = 0;
  }

  private anyZeroId(from: number): boolean {
    for (let k = 0; k < this.ids.length; k++) {
      const bytes = this.ids[k]![1];
      let or = 0;
      for (let i = from; i < from + bytes; i++) or |= this.random[i]!;
      if (or === 0) return true;
      from += bytes;
    }
    return false;
  }
}

const TRACE_AT = 3;
const SPAN_AT = 36;
/** Records of a new trace: its traceparent. */
const traces = new IdPool(`00-${'0'.repeat(32)}-${'0'.repeat(16)}-01`, [
  [TRACE_AT, 16],
  [SPAN_AT, 8],
]);
/** Records of a span in a trace that came: the end of its traceparent. */
const spans = new IdPool(`${'0'.repeat(16)}-01`, [[0, 8]]);

/** Takes a new trace's ids: the takenTrace*() functions read them until the next take. */
export function takeTraceIds(): void {
  traces.take();
}

/** The taken trace as its root span's `traceparent`: "00-{trace id}-{span id}-01". */
export function takenTraceparent(): string {
  return traces.text.slice(traces.taken, traces.taken + 55);
}

/** The taken trace id (32 lower-case hex digits, not all zero). */
export function takenTraceId(): string {
  return traces.text.slice(traces.taken + TRACE_AT, traces.taken + TRACE_AT + 32);
}

/** The taken trace's root span id (16 lower-case hex digits, not all zero). */
export function takenTraceSpanId(): string {
  return traces.text.slice(traces.taken + SPAN_AT, traces.taken + SPAN_AT + 16);
}

/** Takes a span id: takenSpanId() and takenSpanSuffix() read it until the next take. */
export function takeSpanId(): void {
  spans.take();
}

/** The taken span id (16 lower-case hex digits, not all zero). */
export function takenSpanId(): string {
  return spans.text.slice(spans.taken, spans.taken + 16);
}

/** The end of a traceparent carrying the taken span id: "{span id}-01". */
export function takenSpanSuffix(): string {
  return spans.text.slice(spans.taken, spans.taken + 19);
}

/** `bytes` random bytes as lower-case hex, never all zero (W3C forbids zero ids). */
export function randomHexId(bytes: 8 | 16): string {
  if (bytes === 16) {
    takeTraceIds();
    return takenTraceId();
  }
  takeSpanId();
  return takenSpanId();
}
