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

function writeAttribute(w: Writer, a: SpanAttribute): void {
  w.string(KV_KEY, a[0]);
  w.message(KV_VALUE, a[1], (v, value) => {
    if (typeof value === 'number') v.int64(ANY_INT, value, a[0]);
    else v.string(ANY_STRING, value);
  });
}

/** Milliseconds since the epoch (fractional) as nanoseconds. */
function unixNanos(ms: number): bigint {
  return BigInt(Math.round(ms * 1000)) * 1000n;
}

function writeSpan(w: Writer, f: FinishedSpan): void {
  const s = f.span;
  w.bytes(SPAN_TRACE_ID, Buffer.from(s.traceId, 'hex'));
  w.bytes(SPAN_SPAN_ID, Buffer.from(s.spanId, 'hex'));
  if (s.traceState !== '') w.string(SPAN_TRACE_STATE, s.traceState);
  if (s.parentSpanId !== null) w.bytes(SPAN_PARENT_SPAN_ID, Buffer.from(s.parentSpanId, 'hex'));
  w.string(SPAN_NAME, f.name);
  w.uint32(SPAN_KIND, s.kind === 'server' ? KIND_SERVER : KIND_CLIENT);
  w.fixed64(SPAN_START, unixNanos(s.startMs).toString(), 'start_time_unix_nano');
  w.fixed64(SPAN_END, unixNanos(Math.max(f.endMs, s.startMs)).toString(), 'end_time_unix_nano');
  for (const a of f.attributes) w.message(SPAN_ATTRIBUTES, a, writeAttribute);
  if (f.error)
    w.message(SPAN_STATUS, f.statusMessage, (v, message) => {
      if (message !== '') v.string(STATUS_MESSAGE, message);
      v.uint32(STATUS_CODE, STATUS_ERROR);
    });
  // A parent came from another process (the caller); a root has none.
  w.fixed32(
    SPAN_FLAGS,
    FLAGS_SAMPLED | (s.parentSpanId !== null ? FLAGS_HAS_IS_REMOTE | FLAGS_IS_REMOTE : FLAGS_HAS_IS_REMOTE),
  );
}

/**
 * A batch of spans written as they finish: the `spans` entries of one ScopeSpans, in one growing
 * buffer. The export queue keeps these bytes rather than the spans' objects, which then die
 * young: held until export (up to a second), the objects of thousands of spans were copied by
 * every scavenge and promoted, and the garbage collector took more CPU than the rest of tracing.
 */
export class SpanBatch {
  private readonly w = new Writer();
  /** Spans written. */
  count = 0;

  /** Writes `span` (on error nothing of it stays, and the error is thrown on). */
  add(span: FinishedSpan): void {
    const at = this.w.pos;
    try {
      this.w.message(SCOPE_SPANS_SPANS, span, writeSpan);
    } catch (err) {
      this.w.pos = at;
      throw err;
    }
    this.count++;
  }

  /** The ScopeSpans.spans entries written so far. */
  get bytes(): Buffer {
    return this.w.buf.subarray(0, this.w.pos);
  }
}

/** The body of `POST /v1/traces` (Content-Type application/x-protobuf) for a batch. */
export function encodeTraceBatch(resource: OtlpResource, batch: SpanBatch): Buffer {
  const spans = batch.bytes;
  // ResourceSpans { resource, scope_spans: ScopeSpans { scope, spans... } }, the spans' bytes
  // copied once, after the prefixes whose lengths they decide.
  const scope = new Writer();
  scope.message(SCOPE_SPANS_SCOPE, resource, (sc, res) => {
    sc.string(SCOPE_NAME, res.scopeName);
    if (res.scopeVersion !== '') sc.string(SCOPE_VERSION, res.scopeVersion);
  });
  const resourceSpans = new Writer();
  resourceSpans.message(RESOURCE_SPANS_RESOURCE, resource.attributes, (r, attrs) => {
    for (const a of attrs) r.message(RESOURCE_ATTRIBUTES, a, writeAttribute);
  });
  resourceSpans.tag(RESOURCE_SPANS_SCOPE_SPANS, LENGTH_DELIMITED);
  resourceSpans.varint32(scope.pos + spans.length);
  const head = new Writer();
  head.tag(REQUEST_RESOURCE_SPANS, LENGTH_DELIMITED);
  head.varint32(resourceSpans.pos + scope.pos + spans.length);
  return Buffer.concat([head.finish(), resourceSpans.finish(), scope.finish(), spans]);
}

/** The same for a list of spans. */
export function encodeTraceRequest(resource: OtlpResource, spans: readonly FinishedSpan[]): Buffer {
  const batch = new SpanBatch();
  for (const f of spans) batch.add(f);
  return encodeTraceBatch(resource, batch);
}
