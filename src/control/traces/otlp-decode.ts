// Reading OTLP/HTTP trace export bodies (ExportTraceServiceRequest, protobuf) for the control
// plane's embedded collector: the fields `trellis trace` shows, read with the project's defensive
// wire reader (src/api/wire-reader.ts: every read bounded, malformed bytes throw a WireError).
// Field numbers are opentelemetry-proto v1's, as the proxy writes them
// (src/proxy/telemetry/trace-otlp.ts). What one span may hold is capped here: strings are cut at
// MAX_STRING characters and attributes past MAX_ATTRIBUTES are left out, so a span from any
// sender costs a bounded amount of the store's memory.
import { FIXED32, FIXED64, LENGTH_DELIMITED, Reader, VARINT } from '../../api/wire-reader.ts';

export const MAX_STRING = 512;
export const MAX_ATTRIBUTES = 32;

export type AttributeValue = string | number | boolean;

export interface ReceivedSpan {
  readonly traceId: string;
  readonly spanId: string;
  /** '' for a root. */
  readonly parentSpanId: string;
  readonly name: string;
  readonly kind: 'server' | 'client' | 'internal' | 'producer' | 'consumer' | 'unspecified';
  readonly startMs: number;
  readonly endMs: number;
  readonly attributes: Record<string, AttributeValue>;
  readonly error: boolean;
  readonly statusMessage: string;
  /** service.name of its resource ('' when none). */
  readonly service: string;
  /** service.namespace of its resource ('' when none): the proxy's workload namespace. */
  readonly namespace: string;
}

const KINDS = ['unspecified', 'internal', 'server', 'client', 'producer', 'consumer'] as const;

const cut = (s: string): string => (s.length > MAX_STRING ? s.slice(0, MAX_STRING) : s);
const hexId = (b: Buffer, bytes: number): string => (b.length === bytes ? b.toString('hex') : '');

/** Runs `field(number, wireType)` for each field of the message being read; it must read or skip. */
function fields(r: Reader, field: (n: number, wire: number) => boolean): void {
  while (r.pos < r.end) {
    const tag = r.tag();
    if (!field(tag >>> 3, tag & 7)) r.skip(tag & 7);
  }
}

function anyValue(r: Reader): AttributeValue | undefined {
  let v: AttributeValue | undefined;
  fields(r, (n, w) => {
    if (n === 1 && w === LENGTH_DELIMITED) v = cut(r.string());
    else if (n === 2 && w === VARINT) v = r.bool();
    else if (n === 3 && w === VARINT) v = r.int64();
    else if (n === 4 && w === FIXED64) v = r.double();
    else return false;
    return true;
  });
  return v;
}

function keyValue(r: Reader, into: Record<string, AttributeValue>): void {
  let key = '';
  let value: AttributeValue | undefined;
  fields(r, (n, w) => {
    if (n === 1 && w === LENGTH_DELIMITED) key = cut(r.string());
    else if (n === 2 && w === LENGTH_DELIMITED) value = r.message(anyValue);
    else return false;
    return true;
  });
  if (value !== undefined && key !== '__proto__' && Object.keys(into).length < MAX_ATTRIBUTES)
    into[key] = value;
}

function span(r: Reader): ReceivedSpan {
  let traceId = '';
  let spanId = '';
  let parentSpanId = '';
  let name = '';
  let kind = 0;
  let start = 0;
  let end = 0;
  const attributes: Record<string, AttributeValue> = Object.create(null) as Record<string, AttributeValue>;
  let error = false;
  let statusMessage = '';
  fields(r, (n, w) => {
    if (w === LENGTH_DELIMITED && n === 1) traceId = hexId(r.bytes(), 16);
    else if (w === LENGTH_DELIMITED && n === 2) spanId = hexId(r.bytes(), 8);
    else if (w === LENGTH_DELIMITED && n === 4) parentSpanId = hexId(r.bytes(), 8);
    else if (w === LENGTH_DELIMITED && n === 5) name = cut(r.string());
    else if (w === VARINT && n === 6) kind = r.uint32();
    else if (w === FIXED64 && n === 7) start = r.fixed64();
    else if (w === FIXED64 && n === 8) end = r.fixed64();
    else if (w === LENGTH_DELIMITED && n === 9) r.message((m) => keyValue(m, attributes));
    else if (w === LENGTH_DELIMITED && n === 15)
      r.message((m) =>
        fields(m, (sn, sw) => {
          if (sn === 2 && sw === LENGTH_DELIMITED) statusMessage = cut(m.string());
          else if (sn === 3 && sw === VARINT) error = m.uint32() === 2;
          else return false;
          return true;
        }),
      );
    else if (w === FIXED32 && n === 16) r.fixed32();
    else return false;
    return true;
  });
  return {
    traceId,
    spanId,
    parentSpanId,
    name,
    kind: KINDS[kind] ?? 'unspecified',
    startMs: start / 1e6,
    endMs: end / 1e6,
    attributes: { ...attributes },
    error,
    statusMessage,
    service: '',
    namespace: '',
  };
}

function resourceService(r: Reader): { service: string; namespace: string } {
  const attrs: Record<string, AttributeValue> = Object.create(null) as Record<string, AttributeValue>;
  fields(r, (n, w) => {
    if (n === 1 && w === LENGTH_DELIMITED) r.message((m) => keyValue(m, attrs));
    else return false;
    return true;
  });
  const name = attrs['service.name'];
  const namespace = attrs['service.namespace'];
  return {
    service: typeof name === 'string' ? name : '',
    namespace: typeof namespace === 'string' ? namespace : '',
  };
}

/**
 * The spans of an ExportTraceServiceRequest; spans without a valid trace and span id are left
 * out. Throws WireError on malformed bytes.
 */
export function decodeExportTraceRequest(body: Uint8Array): ReceivedSpan[] {
  const out: ReceivedSpan[] = [];
  const r = new Reader(body);
  fields(r, (n, w) => {
    if (n !== 1 || w !== LENGTH_DELIMITED) return false;
    r.message((rs) => {
      // The resource may come after the spans on the wire: spans are named once it is known.
      let resource = { service: '', namespace: '' };
      const spans: ReceivedSpan[] = [];
      fields(rs, (rn, rw) => {
        if (rw !== LENGTH_DELIMITED) return false;
        if (rn === 1) resource = rs.message(resourceService);
        else if (rn === 2)
          rs.message((ss) =>
            fields(ss, (sn, sw) => {
              if (sn !== 2 || sw !== LENGTH_DELIMITED) return false;
              spans.push(ss.message(span));
              return true;
            }),
          );
        else return false;
        return true;
      });
      for (const s of spans) if (s.traceId !== '' && s.spanId !== '') out.push({ ...s, ...resource });
    });
    return true;
  });
  return out;
}
