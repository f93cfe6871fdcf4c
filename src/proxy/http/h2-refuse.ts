// A node:http2 stream the proxy answers itself before any forwarding (denied by policy, a head
// over the limits): the response says why (h2-headers.ts proxyErrorResponse), the request body is
// read and dropped, a request still open is closed with NO_ERROR once the answer is out (RFC 9113
// 8.1), and the exchange counts like any other (request, proxy error, response).
import * as http2 from 'node:http2';
import type { ProxyErrorReason } from '../errors.ts';
import type { Direction, ProxyMetrics } from '../telemetry/metrics.ts';
import { isGrpc, proxyErrorResponse } from './h2-headers.ts';

type Metrics = Pick<ProxyMetrics, 'requestStarted' | 'responseFinished' | 'proxyError'>;

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
  metrics: Metrics,
  direction: Direction,
): void {
  const startedAt = performance.now();
  const { reason } = refusal;
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
  metrics.responseFinished(
    direction,
    'h2',
    Number(response.headers[':status']),
    performance.now() - startedAt,
    true,
  );
}
