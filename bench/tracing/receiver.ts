// The trace collector of the tracing benchmark: an OTLP sink in the benchmark's own process (on
// the load generators' CPU, not charged to the pair) that takes OTLP/HTTP `POST /v1/traces` or
// OTLP/gRPC `TraceService/Export`, answers success at once and counts requests and bytes. It does
// not decode (a real collector would run elsewhere; decoding here would take CPU from wrk): the
// proxies' own trellis_trace_spans_exported_total says what arrived, and the tests check the
// encoding against the official messages.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { traceServiceDefinition } from '../../src/api/otlp-trace-service.ts';

export interface BenchReceiver {
  /** The collector URL to give the proxies. */
  readonly url: string;
  readonly requests: number;
  readonly bytes: number;
  close(): Promise<void>;
}

export async function startBenchReceiver(protocol: 'grpc' | 'http/protobuf'): Promise<BenchReceiver> {
  const counts = { requests: 0, bytes: 0 };
  if (protocol === 'grpc') {
    const server = new grpc.Server();
    server.addService(traceServiceDefinition, {
      Export(call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) {
        counts.requests++;
        counts.bytes += call.request.length;
        callback(null, Buffer.alloc(0));
      },
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
    return receiver(`grpc://127.0.0.1:${port}`, counts, async () => void server.forceShutdown());
  }
  const server = http.createServer((req, res) => {
    counts.requests++;
    req.on('data', (c: Buffer) => (counts.bytes += c.length));
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return receiver(`http://127.0.0.1:${port}`, counts, () => {
    server.closeAllConnections();
    return new Promise((r) => server.close(() => r()));
  });
}

function receiver(
  url: string,
  counts: { requests: number; bytes: number },
  close: () => Promise<void>,
): BenchReceiver {
  return {
    url,
    get requests() {
      return counts.requests;
    },
    get bytes() {
      return counts.bytes;
    },
    close,
  };
}
