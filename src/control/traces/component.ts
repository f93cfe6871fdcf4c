// The embedded trace collector of `trellis up` (docs/tracing.md): without a collector of their
// own, the proxies `trellis run` starts export their spans to the control plane's HTTP API,
// which keeps the recent traces in bounded memory (store.ts) for `trellis trace`:
//
//   POST /v1/traces        OTLP/HTTP protobuf ExportTraceServiceRequest (no operator token: it
//                          only adds spans, bounded); 200 with an empty ExportTraceServiceResponse,
//                          400 when the body is not one, 415 for another content type
//   GET  /api/traces       200 [TraceSummary] most recent first (?service=S, &limit=N, default 50)
//   GET  /api/traces/ID    200 {trace_id, spans: [...]}, 404 when it is not (or no longer) kept
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../../core/log.ts';
import type { ControlPlaneComponent } from '../server.ts';
import { decodeExportTraceRequest } from './otlp-decode.ts';
import { DEFAULT_TRACE_STORE_LIMITS, TraceStore, type TraceStoreLimits } from './store.ts';

export const TRACES_PATH = '/v1/traces';
const LIST_PATH = '/api/traces';

export function traceCollectorComponent(
  log: Logger,
  limits: TraceStoreLimits = DEFAULT_TRACE_STORE_LIMITS,
): ControlPlaneComponent & { readonly store: TraceStore } {
  const store = new TraceStore(limits);
  let rejected = 0;
  const send = (res: ServerResponse, status: number, body: unknown): void => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body) + '\n');
  };
  return {
    store,
    openPostPaths: [TRACES_PATH],
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
        const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim();
        if (type !== 'application/x-protobuf') {
          send(res, 415, { error: 'expected application/x-protobuf (OTLP/HTTP protobuf)' });
          return true;
        }
        try {
          store.add(decodeExportTraceRequest(raw ?? Buffer.alloc(0)));
        } catch (error) {
          rejected++;
          log.debug('malformed trace export refused', { error });
          send(res, 400, { error: `not an ExportTraceServiceRequest: ${(error as Error).message}` });
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
        send(res, 200, store.list(query.get('service') ?? undefined, limit));
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
        '',
      ].join('\n');
    },
  };
}
