// An OTLP/HTTP trace receiver for the tests (no collector can be installed here): it serves
// POST /v1/traces, decodes each body as an ExportTraceServiceRequest with protobufjs against
// test/fixtures/otlp-trace.proto (the official field numbers, independent of the proxy's own
// encoder), and keeps the spans. It can be told to answer with an error status or not at all.
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';

const root = protobuf.loadSync(fileURLToPath(new URL('../fixtures/otlp-trace.proto', import.meta.url)));
const RequestType = root.lookupType('opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest');
const ResponseType = root.lookupType('opentelemetry.proto.collector.trace.v1.ExportTraceServiceResponse');

export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  /** '' for a root span. */
  parentSpanId: string;
  traceState: string;
  name: string;
  kind: string;
  startNanos: bigint;
  endNanos: bigint;
  attributes: Record<string, string | number | boolean>;
  status: { code: string; message: string };
  flags: number;
  resource: Record<string, string | number | boolean>;
  scope: string;
}

export interface OtlpReceiver {
  /** The base URL to give the proxy (http://127.0.0.1:PORT). */
  readonly url: string;
  readonly spans: ReceivedSpan[];
  /** POST /v1/traces requests received (decoded or not). */
  requests: number;
  /** Anything that was not a valid ExportTraceServiceRequest. */
  readonly errors: string[];
  /** 'ok' answers 200; a number answers that status; 'hang' never answers. */
  mode: 'ok' | 'hang' | number;
  /** Resolves with the spans once `pred` holds for them (rejects after timeoutMs). */
  waitFor(pred: (spans: ReceivedSpan[]) => boolean, timeoutMs?: number): Promise<ReceivedSpan[]>;
  close(): Promise<void>;
}

type Attr = { key: string; value?: Record<string, unknown> };

function attributes(list: Attr[] | undefined): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const a of list ?? []) {
    const v = a.value ?? {};
    if (typeof v.stringValue === 'string') out[a.key] = v.stringValue;
    else if (v.intValue !== undefined) out[a.key] = Number(v.intValue);
    else if (typeof v.boolValue === 'boolean') out[a.key] = v.boolValue;
    else if (typeof v.doubleValue === 'number') out[a.key] = v.doubleValue;
  }
  return out;
}

const hex = (b: unknown): string => (b instanceof Uint8Array ? Buffer.from(b).toString('hex') : '');

export function decodeTraceRequest(body: Buffer): ReceivedSpan[] {
  const msg = RequestType.toObject(RequestType.decode(body), {
    longs: String,
    enums: String,
    bytes: Buffer,
    defaults: true,
  }) as { resourceSpans: Record<string, unknown>[] };
  const out: ReceivedSpan[] = [];
  for (const rs of msg.resourceSpans) {
    const resource = attributes((rs.resource as { attributes?: Attr[] } | null)?.attributes);
    for (const ss of rs.scopeSpans as Record<string, unknown>[]) {
      const scope = (ss.scope as { name?: string } | null)?.name ?? '';
      for (const s of ss.spans as Record<string, unknown>[]) {
        const status = (s.status as { code?: string; message?: string } | null) ?? {};
        out.push({
          traceId: hex(s.traceId),
          spanId: hex(s.spanId),
          parentSpanId: hex(s.parentSpanId),
          traceState: s.traceState as string,
          name: s.name as string,
          kind: s.kind as string,
          startNanos: BigInt(s.startTimeUnixNano as string),
          endNanos: BigInt(s.endTimeUnixNano as string),
          attributes: attributes(s.attributes as Attr[]),
          status: { code: status.code ?? 'STATUS_CODE_UNSET', message: status.message ?? '' },
          flags: s.flags as number,
          resource,
          scope,
        });
      }
    }
  }
  return out;
}

export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const waiters = new Set<() => void>();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method !== 'POST' || req.url !== '/v1/traces') {
        res.writeHead(404).end();
        return;
      }
      receiver.requests++;
      if (receiver.mode === 'hang') return;
      if (req.headers['content-type'] !== 'application/x-protobuf')
        receiver.errors.push(`content-type ${req.headers['content-type']}`);
      try {
        receiver.spans.push(...decodeTraceRequest(Buffer.concat(chunks)));
      } catch (err) {
        receiver.errors.push(String(err));
      }
      if (typeof receiver.mode === 'number') {
        res.writeHead(receiver.mode).end();
        return;
      }
      const body = ResponseType.encode(ResponseType.create({})).finish();
      res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end(Buffer.from(body));
      for (const w of waiters) w();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const receiver: OtlpReceiver = {
    url: `http://127.0.0.1:${port}`,
    spans: [],
    requests: 0,
    errors: [],
    mode: 'ok',
    waitFor(pred, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          if (!pred(receiver.spans)) return;
          waiters.delete(check);
          clearTimeout(timer);
          resolve(receiver.spans);
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(
            new Error(
              `spans not received in time; have ${JSON.stringify(receiver.spans, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v))}`,
            ),
          );
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    close() {
      server.closeAllConnections();
      return new Promise((r) => server.close(() => r()));
    },
  };
  return receiver;
}
