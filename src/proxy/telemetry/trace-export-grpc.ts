// OTLP/gRPC span transport: the unary call opentelemetry.proto.collector.trace.v1.TraceService/
// Export on one grpc-js channel, plaintext (grpc://, or http:// with protocol grpc) or TLS
// (grpcs://, https://; system CAs). The request is the ExportTraceServiceRequest trace-otlp.ts
// already wrote: the serializer passes those bytes through, so grpc-js only frames them. Accepted:
// status OK (the ExportTraceServiceResponse, partial_success included, is not read). The batching,
// bounds and backoff around it are trace-export.ts's.
//
// @grpc/grpc-js is loaded on the first export, not with the proxy: a proxy that exports over
// OTLP/HTTP (or has no control plane) does not pay its memory (docs/tracing.md gives the numbers).
import type * as grpc from '@grpc/grpc-js';
import { passThrough, TRACE_EXPORT_METHOD } from '../../api/otlp-trace-service.ts';
import { EXPORT_BACKOFF, type SpanTransport } from './trace-export.ts';

/** The largest ExportTraceServiceResponse read (it is empty, or a partial_success note). */
const MAX_RESPONSE_BYTES = 64 * 1024;

export class OtlpGrpcTransport implements SpanTransport {
  private readonly address: string;
  private readonly tls: boolean;
  private readonly headers: Readonly<Record<string, string>>;
  private client: Promise<{ grpc: typeof grpc; client: grpc.Client }> | null = null;
  private closed = false;

  /** `address`: "host:port"; `headers`: call metadata sent with every export (the bearer token). */
  constructor(address: string, tls: boolean, headers: Readonly<Record<string, string>> = {}) {
    this.address = address;
    this.tls = tls;
    this.headers = headers;
  }

  private grpcClient(): Promise<{ grpc: typeof grpc; client: grpc.Client }> {
    this.client ??= (async () => {
      const [g, { reconnectBackoffOptions }] = await Promise.all([
        import('@grpc/grpc-js'),
        import('../../api/client.ts'),
      ]);
      const credentials = this.tls ? g.credentials.createSsl() : g.credentials.createInsecure();
      const client = new g.Client(this.address, credentials, {
        // A collector that comes back is called again within our own backoff, not grpc-js's 120 s.
        ...reconnectBackoffOptions(EXPORT_BACKOFF),
        'grpc.max_receive_message_length': MAX_RESPONSE_BYTES,
      });
      return { grpc: g, client };
    })();
    return this.client;
  }

  async send(body: Buffer, timeoutMs: number): Promise<string | Error | null> {
    let loaded: { grpc: typeof grpc; client: grpc.Client };
    try {
      loaded = await this.grpcClient();
    } catch (err) {
      return err as Error;
    }
    if (this.closed) return 'closed';
    const { grpc: g, client } = loaded;
    const metadata = new g.Metadata();
    for (const [k, v] of Object.entries(this.headers)) metadata.set(k, v);
    return new Promise((resolve) => {
      client.makeUnaryRequest(
        TRACE_EXPORT_METHOD,
        passThrough,
        passThrough,
        body,
        metadata,
        { deadline: Date.now() + timeoutMs },
        (err) => {
          resolve(err === null ? null : `gRPC ${g.status[err.code] ?? err.code}: ${err.details}`);
        },
      );
    });
  }

  close(): void {
    this.closed = true;
    void this.client?.then(
      ({ client }) => client.close(),
      () => undefined,
    );
  }
}
