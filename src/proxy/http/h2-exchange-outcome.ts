// What happened in one HTTP/2 exchange, collected while it runs and reported once when the
// downstream stream closes: to the request metrics (status, latency, failed) and to the access
// log. An exchange failed when a stream was reset, the proxy had to answer or break it itself, or
// gRPC reported a status other than OK.
import type { IncomingHttpHeaders } from 'node:http2';
import type { AccessLog } from '../telemetry/access-log.ts';
import type { Direction, ProxyMetrics } from '../telemetry/metrics.ts';

export interface OutcomeSink {
  direction: Direction;
  metrics: Pick<ProxyMetrics, 'responseFinished'>;
  accessLog: AccessLog | null;
  peer: string;
}

export class ExchangeOutcome {
  private readonly startedAt = performance.now();
  private readonly startedWallMs = Date.now();
  /** The response status sent downstream; 0 while none was. */
  status = 0;
  /** grpc-status from the response headers (trailers-only) or trailers. */
  grpcStatus: string | undefined;
  /** Why the exchange failed: a proxy error reason, or "upstream-rst:N" / "downstream-rst:N". */
  error: string | undefined;
  bytesIn = 0;
  bytesOut = 0;

  /** Notes a grpc-status header if `headers` carry one. */
  noteGrpcStatus(headers: IncomingHttpHeaders | undefined): void {
    const value = headers?.['grpc-status'];
    if (typeof value === 'string') this.grpcStatus = value;
  }

  report(sink: OutcomeSink, request: IncomingHttpHeaders, authority: string, failedByReset: boolean): void {
    const durationMs = performance.now() - this.startedAt;
    const failed =
      failedByReset || this.error !== undefined || (this.grpcStatus !== undefined && this.grpcStatus !== '0');
    sink.metrics.responseFinished(sink.direction, 'h2', this.status, durationMs, failed);
    if (sink.accessLog === null) return;
    sink.accessLog.record({
      ts: this.startedWallMs,
      direction: sink.direction,
      protocol: 'h2',
      method: String(request[':method'] ?? ''),
      authority,
      path: String(request[':path'] ?? ''),
      status: this.status,
      durationMs,
      bytesIn: this.bytesIn,
      bytesOut: this.bytesOut,
      peer: sink.peer,
      ...(this.error !== undefined ? { error: this.error } : {}),
    });
  }
}
