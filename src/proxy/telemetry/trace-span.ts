// One span of a traced exchange: made when a sampled request starts (trace-propagation.ts), and
// turned into a finished span with its attributes when the exchange is recorded
// (trace-tracer.ts). Ids are random, cut from a pool the CSPRNG fills (randomHexId).
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

// Ids are cut from a pool of random bytes held as hex: one CSPRNG call and one hex conversion per
// 4096 bytes (170 requests' trace and span ids), and each id a slice of that string (V8 keeps a
// slice as a view of its parent rather than a copy).
const POOL_BYTES = 4096;
const pool = Buffer.alloc(POOL_BYTES);
let poolHex = '';
let poolAt = POOL_BYTES * 2;
const ZERO_16 = '0'.repeat(16);
const ZERO_32 = '0'.repeat(32);

/** `bytes` random bytes as lower-case hex, never all zero (W3C forbids zero ids). */
export function randomHexId(bytes: 8 | 16): string {
  const digits = bytes * 2;
  for (;;) {
    if (poolAt + digits > POOL_BYTES * 2) {
      randomFillSync(pool);
      poolHex = pool.toString('hex');
      poolAt = 0;
    }
    const id = poolHex.slice(poolAt, poolAt + digits);
    poolAt += digits;
    if (id !== (bytes === 8 ? ZERO_16 : ZERO_32)) return id;
  }
}
