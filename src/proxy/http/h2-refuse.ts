// A node:http2 stream the proxy answers itself before any forwarding (denied by policy, a head
// over the limits): the response says why (h2-headers.ts proxyErrorResponse), the request body is
// read and dropped, a request still open is closed with NO_ERROR once the answer is out (RFC 9113
// 8.1), and the exchange counts like any other (request, proxy error, response).
import * as http2 from 'node:http2';
import type { ProxyErrorReason } from '../errors.ts';
import type { AccessLog, AccessLogEntry } from '../telemetry/access-log.ts';
import { recordExchange } from '../telemetry/exchange-record.ts';
import type { Direction, ProxyMetrics } from '../telemetry/metrics.ts';
import type { HeaderObject } from '../telemetry/trace-propagation.ts';
import type { Tracer } from '../telemetry/trace-tracer.ts';
import type { PeerSeries } from '../telemetry/peer-metrics.ts';
import { isGrpc, proxyErrorResponse } from './h2-headers.ts';

/** Where a refused stream is counted and logged, like any exchange (telemetry/exchange-record.ts). */
export interface RefusalRecords {
  readonly metrics: Pick<ProxyMetrics, 'requestStarted' | 'responseFinished' | 'proxyError' | 'peers'>;
  readonly accessLog: AccessLog | null;
  /** A sampled refused request still gets its span (null or absent: tracing is off). */
  readonly tracer?: Tracer | null;
}

const { NGHTTP2_NO_ERROR } = http2.constants;

export interface Refusal {
  readonly reason: ProxyErrorReason;
  /** The body (gRPC: grpc-message). */
  readonly message: string;
  /** trellis-proxy-error when it says more than the reason. */
  readonly headerValue?: string;
  /** The status when not the reason's usual one. */
  readonly status?: number;
}

export function refuseStream(
  stream: http2.ServerHttp2Stream,
  headers: http2.IncomingHttpHeaders,
  refusal: Refusal,
  records: RefusalRecords,
  direction: Direction,
  peer: string,
  peerSeries: PeerSeries | null = null,
): void {
  const startedAt = performance.now();
  const startedWallMs = Date.now();
  const { metrics, tracer } = records;
  const { reason } = refusal;
  // Joined on a copy: nothing of this request is forwarded.
  const traceSpan =
    tracer != null ? tracer.startObject({ ...headers } as HeaderObject, direction, '', null) : null;
  metrics.requestStarted(direction, 'h2');
  metrics.proxyError(direction, reason);
  const response = proxyErrorResponse(
    reason,
    isGrpc(headers),
    refusal.message,
    refusal.headerValue ?? reason,
    refusal.status,
  );
  stream.on('error', () => {});
  stream.respond(response.headers, { endStream: response.body === null });
  if (response.body !== null) stream.end(response.body);
  stream.resume(); // the request body is discarded
  if (!stream.endAfterHeaders) setImmediate(() => stream.closed || stream.close(NGHTTP2_NO_ERROR));
  const status = Number(response.headers[':status']);
  const durationMs = performance.now() - startedAt;
  recordExchange(records, direction, 'h2', status, durationMs, true, {
    traceSpan,
    peerSeries,
    accessLogEntry: (): AccessLogEntry => ({
      ts: startedWallMs,
      direction,
      protocol: 'h2',
      method: String(headers[':method'] ?? ''),
      authority: String(headers[':authority'] ?? headers.host ?? ''),
      path: String(headers[':path'] ?? ''),
      status,
      durationMs,
      bytesIn: 0,
      bytesOut: response.body === null ? 0 : Buffer.byteLength(response.body),
      peer,
      error: reason,
    }),
  });
}
