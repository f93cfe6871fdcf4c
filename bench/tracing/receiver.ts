// The trace collector of the tracing benchmark: an OTLP sink in the benchmark's own process, which
// is pinned to the load generators' CPU (not the proxies': what it costs is not charged to the
// pair, as a real deployment's collector runs elsewhere; the embedded control plane, which
// decodes and stores spans, is deliberately not the collector here). It takes OTLP/HTTP
// `POST /v1/traces` or OTLP/gRPC `TraceService/Export`, answers success at once, and counts
// requests, bytes and spans: the spans by a shallow walk of the message's length-delimited fields
// (ResourceSpans > ScopeSpans > spans), nothing decoded, so that the report can hold the spans
// received against those the proxies say they exported. The tests check the encoding itself
// against the official messages.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { traceServiceDefinition } from '../../src/api/otlp-trace-service.ts';

export interface BenchReceiver {
  /** The collector URL to give the proxies. */
  readonly url: string;
  readonly requests: number;
  readonly bytes: number;
  /** Spans in the requests received (a shallow count, no decoding). */
  readonly spans: number;
  close(): Promise<void>;
}

export async function startBenchReceiver(protocol: 'grpc' | 'http/protobuf'): Promise<BenchReceiver> {
  const counts = { requests: 0, bytes: 0, spans: 0 };
  if (protocol === 'grpc') {
    const server = new grpc.Server();
    server.addService(traceServiceDefinition, {
      Export(call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) {
        counts.requests++;
        counts.bytes += call.request.length;
        counts.spans += countSpans(call.request);
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
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => {
      counts.bytes += c.length;
      chunks.push(c);
    });
    req.on('end', () => {
      counts.spans += countSpans(Buffer.concat(chunks));
      res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return receiver(`http://127.0.0.1:${port}`, counts, () => {
    server.closeAllConnections();
    return new Promise((r) => server.close(() => r()));
  });
}

/** The entries of field `field` (length-delimited) of the message in buf[from, to), as ranges. */
function* fieldsOf(buf: Buffer, from: number, to: number, field: number): Generator<[number, number]> {
  let at = from;
  const varint = (): number => {
    let n = 0;
    for (let shift = 0; ; shift += 7) {
      const b = buf[at++]!;
      n += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return n;
    }
  };
  while (at < to) {
    const tag = varint();
    const type = tag & 7;
    if (type === 0) varint();
    else if (type === 1) at += 8;
    else if (type === 5) at += 4;
    else if (type === 2) {
      const len = varint();
      if (Math.floor(tag / 8) === field) yield [at, at + len];
      at += len;
    } else throw new Error(`wire type ${type} in an ExportTraceServiceRequest`);
  }
}

/** Spans in an ExportTraceServiceRequest: resource_spans (1) > scope_spans (2) > spans (2). */
export function countSpans(body: Buffer): number {
  let n = 0;
  for (const [rs, rsEnd] of fieldsOf(body, 0, body.length, 1))
    for (const [ss, ssEnd] of fieldsOf(body, rs, rsEnd, 2)) for (const _ of fieldsOf(body, ss, ssEnd, 2)) n++;
  return n;
}

function receiver(
  url: string,
  counts: { requests: number; bytes: number; spans: number },
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
    get spans() {
      return counts.spans;
    },
    close,
  };
}
