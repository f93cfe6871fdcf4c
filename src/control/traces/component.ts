// The embedded trace collector of `trellis up` (docs/tracing.md): without a collector of their
// own, the proxies `trellis run` starts export their spans to the control plane, which keeps the
// recent traces in bounded memory (store.ts) for `trellis trace`:
//
//   POST /v1/traces        OTLP/HTTP protobuf ExportTraceServiceRequest; 200 with an empty
//                          ExportTraceServiceResponse, 400 when the body is not one, 415 for another
//                          content type, 401 without the trace token
//   TraceService/Export    the same over OTLP/GRPC, on the control plane's gRPC server
//                          (opentelemetry.proto.collector.trace.v1; UNAUTHENTICATED without the
//                          token, INVALID_ARGUMENT when malformed, RESOURCE_EXHAUSTED over 1 MiB)
//   GET  /api/traces       200 [TraceSummary] most recent first (?service=S, &namespace=NS: with a
//                          span of that workload; &limit=N, default 50)
//   GET  /api/traces/ID    200 {trace_id, spans: [...]}, 404 when it is not (or no longer) kept
//
// Adding spans needs the trace token (token.ts) as `authorization: Bearer TOKEN`, not the operator
// token: it is what the proxies hold. A refusal is counted
// (trellis_control_trace_unauthenticated_total{reason}) and logged at most once per 10 s.
import type { IncomingMessage, ServerResponse } from 'node:http';
import * as grpc from '@grpc/grpc-js';
import { bearerToken, matchesSecret, secretDigest } from '../../core/bearer.ts';
import type { Logger } from '../../core/log.ts';
import { LogThrottle } from '../../core/log-rate-limit.ts';
import { traceServiceDefinition } from '../../api/otlp-trace-service.ts';
import type { ControlPlaneComponent } from '../server.ts';
import { decodeExportTraceRequest } from './otlp-decode.ts';
import { DEFAULT_TRACE_STORE_LIMITS, TraceStore, type TraceStoreLimits } from './store.ts';

export const TRACES_PATH = '/v1/traces';
const LIST_PATH = '/api/traces';
/** The largest export accepted over gRPC (the HTTP API's body bound is the same). */
const MAX_GRPC_EXPORT_BYTES = 1 << 20;

type Refusal = 'missing' | 'invalid';

export interface TraceCollectorOptions {
  readonly log: Logger;
  /** The trace token; null: no one may add spans. */
  readonly token: string | null;
  readonly limits?: TraceStoreLimits;
}

const EMPTY_RESPONSE = Buffer.alloc(0);

export function traceCollectorComponent(
  options: TraceCollectorOptions,
): ControlPlaneComponent & { readonly store: TraceStore } {
  const { log } = options;
  const store = new TraceStore(options.limits ?? DEFAULT_TRACE_STORE_LIMITS);
  const digest = options.token === null ? null : secretDigest(options.token);
  const refused: Record<Refusal, number> = { missing: 0, invalid: 0 };
  const throttle = new LogThrottle();
  let rejected = 0;
  const send = (res: ServerResponse, status: number, body: unknown): void => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body) + '\n');
  };
  /** null when `authorization` carries the trace token; else counted and logged (throttled). */
  const refusal = (authorization: string | undefined, transport: string, remote: unknown): Refusal | null => {
    const token = bearerToken(authorization);
    const why =
      token === null ? 'missing' : digest !== null && matchesSecret(token, digest) ? null : 'invalid';
    if (why === null) return null;
    refused[why]++;
    throttle.note((skipped) =>
      log.warn('trace export refused: no valid trace token', {
        transport,
        remote,
        reason: why,
        unloggedBefore: skipped,
      }),
    );
    return why;
  };
  /** Adds an export's spans; the error message when it is not an ExportTraceServiceRequest. */
  const intake = (raw: Buffer): string | null => {
    try {
      store.add(decodeExportTraceRequest(raw));
      return null;
    } catch (error) {
      rejected++;
      log.debug('malformed trace export refused', { error });
      return `not an ExportTraceServiceRequest: ${(error as Error).message}`;
    }
  };
  return {
    store,
    // The component checks the trace token itself (the operator token is not for proxies).
    openPostPaths: [TRACES_PATH],
    admitPost(req: IncomingMessage, res: ServerResponse): boolean {
      const why = refusal(req.headers.authorization, 'http', req.socket.remoteAddress);
      if (why === null) return true;
      // The body is not read: the connection closes after the answer.
      res.writeHead(401, {
        'content-type': 'application/json',
        'www-authenticate': 'Bearer realm="trellis-traces"',
        connection: 'close',
      });
      res.end(
        JSON.stringify({
          error: `adding spans needs the trace token (${why === 'missing' ? 'no bearer token' : 'wrong token'})`,
          authenticate: "proxies started by `trellis run` send the state folder's trace-token",
        }) + '\n',
      );
      return false;
    },
    addGrpcServices(server: grpc.Server): void {
      server.addService(traceServiceDefinition, {
        Export(call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>): void {
          const auth = call.metadata.get('authorization')[0];
          if (refusal(typeof auth === 'string' ? auth : undefined, 'grpc', call.getPeer()) !== null) {
            callback({ code: grpc.status.UNAUTHENTICATED, details: 'adding spans needs the trace token' });
            return;
          }
          if (call.request.length > MAX_GRPC_EXPORT_BYTES) {
            callback({ code: grpc.status.RESOURCE_EXHAUSTED, details: 'export over 1 MiB' });
            return;
          }
          const error = intake(call.request);
          if (error === null) callback(null, EMPTY_RESPONSE);
          else callback({ code: grpc.status.INVALID_ARGUMENT, details: error });
        },
      });
    },
    handleHttp(
      req: IncomingMessage,
      res: ServerResponse,
      path: string,
      _body: string,
      raw?: Buffer,
    ): boolean {
      if (path === TRACES_PATH) {
        if (req.method !== 'POST') {
          res.setHeader('allow', 'POST');
          send(res, 405, { error: 'method not allowed' });
          return true;
        }
        // admitPost checked the trace token before the body was read.
        const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim();
        if (type !== 'application/x-protobuf') {
          send(res, 415, { error: 'expected application/x-protobuf (OTLP/HTTP protobuf)' });
          return true;
        }
        const error = intake(raw ?? Buffer.alloc(0));
        if (error !== null) {
          send(res, 400, { error });
          return true;
        }
        // An empty ExportTraceServiceResponse (no partial_success).
        res.writeHead(200, { 'content-type': 'application/x-protobuf', 'content-length': 0 });
        res.end();
        return true;
      }
      if (path !== LIST_PATH && !path.startsWith(LIST_PATH + '/')) return false;
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.setHeader('allow', 'GET, HEAD');
        send(res, 405, { error: 'method not allowed' });
        return true;
      }
      if (path === LIST_PATH) {
        const query = new URL(req.url ?? '/', 'http://control').searchParams;
        const limit = Number(query.get('limit') ?? '50');
        if (!Number.isInteger(limit) || limit < 1 || limit > 1000) {
          send(res, 400, { error: 'limit: expected a whole number 1..1000' });
          return true;
        }
        send(
          res,
          200,
          store.list(query.get('service') ?? undefined, limit, query.get('namespace') ?? undefined),
        );
        return true;
      }
      const id = path.slice(LIST_PATH.length + 1);
      const spans = /^[0-9a-f]{32}$/.test(id) ? store.trace(id) : null;
      if (spans === null) send(res, 404, { error: `trace ${id} is not kept (or never came)` });
      else send(res, 200, { trace_id: id, spans });
      return true;
    },
    metrics(): string {
      const { traces, spans } = store.size;
      return [
        '# HELP trellis_control_traces_kept Traces the embedded collector keeps now.',
        '# TYPE trellis_control_traces_kept gauge',
        `trellis_control_traces_kept ${traces}`,
        '# HELP trellis_control_trace_spans_kept Spans the embedded collector keeps now.',
        '# TYPE trellis_control_trace_spans_kept gauge',
        `trellis_control_trace_spans_kept ${spans}`,
        "# HELP trellis_control_trace_spans_dropped_total Spans the embedded collector let go: evicted with their trace, or past a trace's bound.",
        '# TYPE trellis_control_trace_spans_dropped_total counter',
        `trellis_control_trace_spans_dropped_total ${store.spansDropped}`,
        '# HELP trellis_control_trace_exports_rejected_total Trace export requests refused as malformed.',
        '# TYPE trellis_control_trace_exports_rejected_total counter',
        `trellis_control_trace_exports_rejected_total ${rejected}`,
        '# HELP trellis_control_trace_unauthenticated_total Trace export requests refused for want of the trace token, by reason.',
        '# TYPE trellis_control_trace_unauthenticated_total counter',
        `trellis_control_trace_unauthenticated_total{reason="missing"} ${refused.missing}`,
        `trellis_control_trace_unauthenticated_total{reason="invalid"} ${refused.invalid}`,
        '',
      ].join('\n');
    },
  };
}
