// OTLP trace export as protobuf: an ExportTraceServiceRequest (opentelemetry-proto,
// opentelemetry/proto/collector/trace/v1/trace_service.proto and trace/v1/trace.proto) written
// with the project's own wire writer (src/api/wire-writer.ts).
//
// Why not the OpenTelemetry SDK: the SDK with its OTLP exporter adds about 16 MB to a process
// whose whole budget is 60 MB, and brings a context manager, span processors and a protobuf
// runtime for what is, in a proxy, one message shape written from spans that already exist. The
// few message types below are written by hand with the official field numbers (the test receiver
// decodes them with protobufjs against a .proto of the same fields, test/fixtures/otlp-trace.proto).
import { LENGTH_DELIMITED } from '../../api/wire-reader.ts';
import { Writer } from '../../api/wire-writer.ts';
import type { FinishedSpan, SpanAttribute } from './trace-span.ts';

// Field numbers (opentelemetry-proto v1).
// ExportTraceServiceRequest
const REQUEST_RESOURCE_SPANS = 1;
// ResourceSpans
const RESOURCE_SPANS_RESOURCE = 1;
const RESOURCE_SPANS_SCOPE_SPANS = 2;
// Resource
const RESOURCE_ATTRIBUTES = 1;
// ScopeSpans
const SCOPE_SPANS_SCOPE = 1;
const SCOPE_SPANS_SPANS = 2;
// InstrumentationScope
const SCOPE_NAME = 1;
const SCOPE_VERSION = 2;
// Span
const SPAN_TRACE_ID = 1;
const SPAN_SPAN_ID = 2;
const SPAN_TRACE_STATE = 3;
const SPAN_PARENT_SPAN_ID = 4;
const SPAN_NAME = 5;
const SPAN_KIND = 6;
const SPAN_START = 7;
const SPAN_END = 8;
const SPAN_ATTRIBUTES = 9;
const SPAN_STATUS = 15;
const SPAN_FLAGS = 16;
// Status
const STATUS_MESSAGE = 2;
const STATUS_CODE = 3;
// KeyValue / AnyValue
const KV_KEY = 1;
const KV_VALUE = 2;
const ANY_STRING = 1;
const ANY_INT = 3;

/** SpanKind enum values. */
const KIND_SERVER = 2;
const KIND_CLIENT = 3;
const KIND_INTERNAL = 1;
/** Status.StatusCode ERROR. */
const STATUS_ERROR = 2;
/** SpanFlags: the W3C sampled flag, and "has_is_remote" (bit 8) with the parent's remoteness (bit 9). */
const FLAGS_SAMPLED = 0x01;
const FLAGS_HAS_IS_REMOTE = 0x100;
const FLAGS_IS_REMOTE = 0x200;

/** What every span of one proxy shares: its resource and instrumentation scope. */
export interface OtlpResource {
  readonly attributes: readonly SpanAttribute[];
  readonly scopeName: string;
  readonly scopeVersion: string;
}

/**
 * KeyValue.key fields (tag, length, UTF-8) by key, encoded once: a proxy's spans use the same
 * dozen or so keys, each copied as bytes rather than written character by character per span.
 * Bounded: keys past the first KEY_CACHE_SIZE are written as strings.
 */
const KEY_FIELDS = new Map<string, Buffer>();
const KEY_CACHE_SIZE = 64;

/**
 * The key last written at each attribute position of a span, and its field: a tracer puts its
 * keys in the same order span after span, so a key is mostly found here by identity (the same
 * string constant), not by a map lookup per attribute.
 * Bounded like KEY_FIELDS (positions past KEY_CACHE_SIZE look the map up).
 */
const keyAt: string[] = [];
const keyFieldAt: Buffer[] = [];

/** A KeyValue.key field; `at`: the attribute's position in its span (-1: not a span's). */
function writeKey(w: Writer, key: string, at: number): void {
  if (at >= 0 && keyAt[at] === key) {
    w.raw(keyFieldAt[at]!);
    return;
  }
  let bytes = KEY_FIELDS.get(key);
  if (bytes === undefined) {
    if (KEY_FIELDS.size >= KEY_CACHE_SIZE) {
      w.string(KV_KEY, key);
      return;
    }
    const k = new Writer();
    k.string(KV_KEY, key);
    KEY_FIELDS.set(key, (bytes = k.finish()));
  }
  if (at >= 0 && at < KEY_CACHE_SIZE) {
    keyAt[at] = key;
    keyFieldAt[at] = bytes;
  }
  w.raw(bytes);
}

/** One KeyValue (an OTLP attribute) as field `field` of the message being written. */
function writeAttribute(w: Writer, field: number, key: string, value: string | number, at = -1): void {
  const kv = w.begin(field);
  writeKey(w, key, at);
  const any = w.begin(KV_VALUE);
  if (typeof value === 'number') w.int64(ANY_INT, value, key);
  else w.string(ANY_STRING, value);
  w.end(any);
  w.end(kv);
}

/**
 * The KeyValue last written at each position of the attributes that change per request (method,
 * path, status, retry count: mostly the same from span to span of a proxy), as bytes in a buffer
 * of its own per position: a span whose attribute at a position has the key and value of the last
 * one copies them (one copy instead of the key, two nested lengths and the value written anew).
 * A miss writes the attribute and copies its bytes into the position's buffer (nothing allocated
 * once the buffer is there). Bounded: KEY_CACHE_SIZE positions, KV_CACHE_BYTES bytes each
 * (a longer attribute is written, not kept).
 */
const KV_CACHE_BYTES = 128;
const kvKeyAt: string[] = [];
const kvValueAt: (string | number)[] = [];
const kvBytesAt: Buffer[] = [];
const kvLengthAt: number[] = [];

function writeVaryingAttribute(w: Writer, key: string, value: string | number, at: number): void {
  if (at >= KEY_CACHE_SIZE) {
    writeAttribute(w, SPAN_ATTRIBUTES, key, value, at);
    return;
  }
  if (kvKeyAt[at] === key && kvValueAt[at] === value) {
    w.raw(kvBytesAt[at]!, kvLengthAt[at]!);
    return;
  }
  const start = w.pos;
  writeAttribute(w, SPAN_ATTRIBUTES, key, value, at);
  const n = w.pos - start;
  if (n > KV_CACHE_BYTES) return;
  const bytes = (kvBytesAt[at] ??= Buffer.alloc(KV_CACHE_BYTES));
  w.buf.copy(bytes, 0, start, w.pos);
  kvKeyAt[at] = key;
  kvValueAt[at] = value;
  kvLengthAt[at] = n;
}

const TWO_32 = 2 ** 32;

/**
 * Milliseconds since the epoch (fractional, rounded to the microsecond) as a fixed64 of
 * nanoseconds, computed in 32-bit halves: exact without a BigInt (microseconds stay below 2^53).
 */
function writeUnixNanos(w: Writer, field: number, ms: number): void {
  const micros = Math.max(0, Math.round(ms * 1000));
  const microsHigh = Math.floor(micros / TWO_32);
  const lowNanos = (micros - microsHigh * TWO_32) * 1000; // < 2^42: exact
  const low = lowNanos % TWO_32;
  w.fixed64Parts(field, low, microsHigh * 1000 + (lowNanos - low) / TWO_32);
}

/**
 * A run of attributes as last encoded: its keys and values ([key, value, ...]) and their bytes
 * (the KeyValue fields with their tags).
 */
interface AttributeRun {
  values: (string | number)[];
  bytes: Buffer;
}

/**
 * The last few runs of repeating attributes (FinishedSpan.stableFrom on): a proxy's spans repeat
 * the same method-independent facts (server, peer, identities, user agent, route) for every
 * request of a connection or route, and encoding them was a third of what a span cost. A run is
 * compared value by value and its bytes copied; a miss encodes it and takes the oldest slot.
 * Bounded: RUN_CACHE_SIZE runs, each at most the attributes of one span.
 */
const RUN_CACHE_SIZE = 4;
const runs: AttributeRun[] = [];
let oldestRun = 0;

function isRun(run: AttributeRun, attrs: readonly (string | number)[], from: number): boolean {
  const values = run.values;
  if (values.length !== attrs.length - from) return false;
  for (let i = 0; i < values.length; i++) if (values[i] !== attrs[from + i]) return false;
  return true;
}

function writeRun(w: Writer, attrs: readonly (string | number)[], from: number): void {
  for (let r = 0; r < runs.length; r++) {
    if (isRun(runs[r]!, attrs, from)) {
      w.raw(runs[r]!.bytes);
      return;
    }
  }
  const at = w.pos;
  for (let i = from; i + 1 < attrs.length; i += 2)
    writeAttribute(w, SPAN_ATTRIBUTES, attrs[i] as string, attrs[i + 1]!, i);
  const run: AttributeRun = { values: attrs.slice(from), bytes: Buffer.from(w.buf.subarray(at, w.pos)) };
  if (runs.length < RUN_CACHE_SIZE) runs.push(run);
  else {
    runs[oldestRun] = run;
    oldestRun = (oldestRun + 1) % RUN_CACHE_SIZE;
  }
}

function writeSpan(w: Writer, f: FinishedSpan): void {
  const s = f.span;
  w.hexBytes(SPAN_TRACE_ID, s.traceId);
  w.hexBytes(SPAN_SPAN_ID, s.spanId);
  if (s.traceState !== '') w.string(SPAN_TRACE_STATE, s.traceState);
  if (s.parentSpanId !== null) w.hexBytes(SPAN_PARENT_SPAN_ID, s.parentSpanId);
  w.string(SPAN_NAME, f.name);
  w.uint32(SPAN_KIND, s.kind === 'server' ? KIND_SERVER : s.kind === 'client' ? KIND_CLIENT : KIND_INTERNAL);
  writeUnixNanos(w, SPAN_START, s.startMs);
  writeUnixNanos(w, SPAN_END, Math.max(f.endMs, s.startMs));
  const attrs = f.attributes;
  const stable = f.stableFrom ?? attrs.length;
  for (let i = 0; i + 1 < stable; i += 2) writeVaryingAttribute(w, attrs[i] as string, attrs[i + 1]!, i);
  if (stable < attrs.length) writeRun(w, attrs, stable);
  if (f.error) {
    const status = w.begin(SPAN_STATUS);
    if (f.statusMessage !== '') w.string(STATUS_MESSAGE, f.statusMessage);
    w.uint32(STATUS_CODE, STATUS_ERROR);
    w.end(status);
  }
  // A parent came from another process (the caller), except a retry's request span; a root has none.
  w.fixed32(
    SPAN_FLAGS,
    FLAGS_SAMPLED |
      (s.parentSpanId !== null && s.request === null
        ? FLAGS_HAS_IS_REMOTE | FLAGS_IS_REMOTE
        : FLAGS_HAS_IS_REMOTE),
  );
}

/** The bytes of an unsigned varint of up to 32 bits. */
function varintLength(n: number): number {
  let size = 1;
  for (n >>>= 0; n > 0x7f; n >>>= 7) size++;
  return size;
}

/**
 * What every export of one proxy starts with, encoded once: the ResourceSpans.resource field and
 * the ScopeSpans.scope field. A batch keeps room for them (and the two lengths that enclose the
 * spans) before its first span, so that its request is written around the spans where they are.
 */
export class BatchPrefix {
  /** ResourceSpans.resource: tag, length and the Resource. */
  readonly resource: Buffer;
  /** ScopeSpans.scope: tag, length and the InstrumentationScope. */
  readonly scope: Buffer;
  /** The room a batch keeps: both fields, two one-byte tags and two lengths of up to 5 bytes. */
  readonly room: number;

  constructor(resource: OtlpResource) {
    const r = new Writer();
    r.message(RESOURCE_SPANS_RESOURCE, resource.attributes, (w, attrs) => {
      for (const [key, value] of attrs) writeAttribute(w, RESOURCE_ATTRIBUTES, key, value);
    });
    this.resource = r.finish();
    const s = new Writer();
    s.message(SCOPE_SPANS_SCOPE, resource, (w, res) => {
      w.string(SCOPE_NAME, res.scopeName);
      if (res.scopeVersion !== '') w.string(SCOPE_VERSION, res.scopeVersion);
    });
    this.scope = s.finish();
    this.room = this.resource.length + this.scope.length + 2 * (1 + 5);
  }
}

/**
 * A batch of spans written as they finish: the `spans` entries of one ScopeSpans, in one growing
 * buffer, after room for what encloses them (BatchPrefix). The export queue keeps these bytes
 * rather than the spans' objects, which then die young: held until export (up to a second), the
 * objects of thousands of spans were copied by every scavenge and promoted, and the garbage
 * collector took more CPU than the rest of tracing. body() writes the enclosing fields into that
 * room, so the request is never copied (a Buffer.concat per export was a fresh allocation of the
 * batch's whole size, page faults included).
 */
export class SpanBatch {
  private readonly prefix: BatchPrefix;
  private readonly w: Writer;
  /** Spans written. */
  count = 0;

  /** `capacity`: bytes to start with (an exporter passes what a full batch took before). */
  constructor(prefix: BatchPrefix, capacity = 0) {
    this.prefix = prefix;
    this.w = new Writer(Math.max(capacity, prefix.room + 64));
    this.w.pos = prefix.room;
  }

  /** Writes `span` (on error nothing of it stays, and the error is thrown on). */
  add(span: FinishedSpan): void {
    const w = this.w;
    const at = w.pos;
    try {
      // Two bytes kept for the span's length: a span takes 128 to 16383 bytes (one byte would
      // have the span moved along once written, a copy per span).
      const length = w.begin(SCOPE_SPANS_SPANS, 2);
      writeSpan(w, span);
      w.end(length, 2);
    } catch (err) {
      w.pos = at;
      throw err;
    }
    this.count++;
  }

  /** The bytes the batch holds (about its body's size). */
  get size(): number {
    return this.w.pos;
  }

  /**
   * The body of `POST /v1/traces` (Content-Type application/x-protobuf): ExportTraceServiceRequest
   * { ResourceSpans { resource, ScopeSpans { scope, spans... } } }, the spans where add() wrote them.
   */
  body(): Buffer {
    const { resource, scope, room } = this.prefix;
    const w = this.w;
    const end = w.pos;
    const scopeSpans = scope.length + (end - room);
    const resourceSpans = resource.length + 1 + varintLength(scopeSpans) + scopeSpans;
    const start = room - scope.length - (resourceSpans - scopeSpans) - 1 - varintLength(resourceSpans);
    w.pos = start;
    w.tag(REQUEST_RESOURCE_SPANS, LENGTH_DELIMITED);
    w.varint32(resourceSpans);
    w.raw(resource);
    w.tag(RESOURCE_SPANS_SCOPE_SPANS, LENGTH_DELIMITED);
    w.varint32(scopeSpans);
    w.raw(scope);
    w.pos = end;
    return w.buf.subarray(start, end);
  }
}

/** The body of `POST /v1/traces` for a list of spans. */
export function encodeTraceRequest(resource: OtlpResource, spans: readonly FinishedSpan[]): Buffer {
  const batch = new SpanBatch(new BatchPrefix(resource));
  for (const f of spans) batch.add(f);
  return batch.body();
}
