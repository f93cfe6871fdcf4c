// OTLP trace receivers for the tests (no collector can be installed here): OTLP/HTTP serves
// POST /v1/traces, OTLP/gRPC serves opentelemetry.proto.collector.trace.v1.TraceService/Export
// on a grpc-js server; both decode each request as an ExportTraceServiceRequest with protobufjs
// against test/fixtures/otlp-trace.proto (the official field numbers, independent of the proxy's
// own encoder), and keep the spans. They can be told to answer with an error status or not at all.
import http from 'node:http';
import * as grpc from '@grpc/grpc-js';
import { traceServiceDefinition } from '../../src/api/otlp-trace-service.ts';
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
  /** The base URL to give the proxy (http://127.0.0.1:PORT, or grpc://127.0.0.1:PORT). */
  readonly url: string;
  readonly spans: ReceivedSpan[];
  /** Export requests received (decoded or not). */
  requests: number;
  /** The authorization header (metadata) of each request, '' when it had none. */
  readonly authorizations: string[];
  /** Anything that was not a valid ExportTraceServiceRequest. */
  readonly errors: string[];
  /**
   * 'ok' answers 200 (gRPC: OK); a number answers that HTTP status (gRPC: that status code);
   * 'hang' never answers.
   */
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

/** The receiver's state and waitFor; `close` stops its server. */
function receiverOf(url: string, close: () => Promise<void>): OtlpReceiver & { notify(): void } {
  const waiters = new Set<() => void>();
  const receiver = {
    url,
    spans: [] as ReceivedSpan[],
    requests: 0,
    authorizations: [] as string[],
    errors: [] as string[],
    mode: 'ok' as OtlpReceiver['mode'],
    notify(): void {
      for (const w of waiters) w();
    },
    waitFor(pred: (spans: ReceivedSpan[]) => boolean, timeoutMs = 10_000): Promise<ReceivedSpan[]> {
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
    close,
  };
  return receiver;
}

/** Decodes one request into the receiver (an error is noted, not thrown). */
function take(receiver: OtlpReceiver, body: Buffer): void {
  try {
    receiver.spans.push(...decodeTraceRequest(body));
  } catch (err) {
    receiver.errors.push(String(err));
  }
}

export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method !== 'POST' || req.url !== '/v1/traces') {
        res.writeHead(404).end();
        return;
      }
      receiver.requests++;
      receiver.authorizations.push(req.headers.authorization ?? '');
      if (receiver.mode === 'hang') return;
      if (req.headers['content-type'] !== 'application/x-protobuf')
        receiver.errors.push(`content-type ${req.headers['content-type']}`);
      take(receiver, Buffer.concat(chunks));
      if (typeof receiver.mode === 'number') {
        res.writeHead(receiver.mode).end();
        return;
      }
      const body = ResponseType.encode(ResponseType.create({})).finish();
      res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end(Buffer.from(body));
      receiver.notify();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const receiver = receiverOf(`http://127.0.0.1:${port}`, () => {
    server.closeAllConnections();
    return new Promise((r) => server.close(() => r()));
  });
  return receiver;
}

export async function startOtlpGrpcReceiver(): Promise<OtlpReceiver> {
  const server = new grpc.Server();
  server.addService(traceServiceDefinition, {
    Export(call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) {
      receiver.requests++;
      receiver.authorizations.push(String(call.metadata.get('authorization')[0] ?? ''));
      if (receiver.mode === 'hang') return;
      take(receiver, call.request);
      if (typeof receiver.mode === 'number') {
        callback({ code: receiver.mode, details: 'told to refuse' });
        return;
      }
      callback(null, Buffer.from(ResponseType.encode(ResponseType.create({})).finish()));
      receiver.notify();
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  const receiver = receiverOf(`grpc://127.0.0.1:${port}`, async () => {
    server.forceShutdown();
  });
  return receiver;
}
