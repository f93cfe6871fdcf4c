// What happened in one HTTP/2 exchange, collected while it runs and reported once when the
// downstream stream closes: to the request metrics (status, latency, failed) and to the access
// log. An exchange failed when a stream was reset, the proxy had to answer or break it itself, or
// gRPC reported a status other than OK.
import type { RouteSeries } from '../telemetry/route-metrics.ts';
import { isTimeoutReason } from '../outbound/routes.ts';
import type { IncomingHttpHeaders } from 'node:http2';
import type { AccessLogEntry } from '../telemetry/access-log.ts';
import {
  recordExchange,
  type DescribedExchange,
  type ExchangeRecords,
  type ExchangeRoute,
  type TapPeer,
} from '../telemetry/exchange-record.ts';
import type { Direction } from '../telemetry/metrics.ts';
import { wallMsAt, type TraceSpan } from '../telemetry/trace-span.ts';
import type { PeerSeries } from '../telemetry/peer-metrics.ts';
import { endpointTapPeer } from '../telemetry/tap-peer.ts';
import type { Pick } from '../outbound/discovery.ts';

export interface OutcomeSink extends ExchangeRecords {
  direction: Direction;
  peer: string;
  /** Inbound: the client's address and verified identity (a live tap reports them). */
  tracePeer?: TapPeer;
}

export class ExchangeOutcome implements DescribedExchange {
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
  /** The matched route rule's backend metrics (outbound/routes.ts), null: none. */
  routeSeries: RouteSeries | null = null;
  /** The route rule that forwarded the exchange (a tap event and the span name it), null: none. */
  matchedRoute: ExchangeRoute | null = null;
  /** The exchange's span when it is traced (recordExchange ends it). */
  traceSpan: TraceSpan | null = null;
  /** The workload at the other end: the client inbound, the picked endpoint outbound. */
  peerSeries: PeerSeries | null = null;
  /** Outbound: the endpoint the last attempt went to (a live tap reports it). */
  endpoint: Pick | null = null;

  /** Notes a grpc-status header if `headers` carry one. */
  noteGrpcStatus(headers: IncomingHttpHeaders | undefined): void {
    const value = headers?.['grpc-status'];
    if (typeof value === 'string') this.grpcStatus = value;
  }

  private durationMs = 0;
  /** performance.now() when the response's end went downstream; 0 while it has not. */
  private respondedAt = 0;
  private reportedTo: OutcomeSink | null = null;
  private request: IncomingHttpHeaders | null = null;
  private authority = '';

  /** The request it describes before report() (the span of an attempt that ends earlier). */
  describe(request: IncomingHttpHeaders, authority: string): this {
    this.request = request;
    this.authority = authority;
    return this;
  }

  /**
   * The response's end (its trailers, or its last frame) went downstream: the exchange's latency
   * and its span end here, not when the stream closes. The close waits for the peer's end of the
   * request and node:http2's callback, which on a busy machine came milliseconds later, so that
   * a server span outlasted the client span it answered.
   */
  markResponseEnded(): void {
    if (this.respondedAt === 0) this.respondedAt = performance.now();
  }

  /** Whether the whole response was handed downstream (END_STREAM or trailers queued). */
  get responseEnded(): boolean {
    return this.respondedAt !== 0;
  }

  /** When the response ended (ms since the Unix epoch), if it did (the span's end). */
  get endedWallMs(): number | undefined {
    return this.respondedAt === 0 ? undefined : wallMsAt(this.respondedAt);
  }

  report(sink: OutcomeSink, request: IncomingHttpHeaders, authority: string, failedByReset: boolean): void {
    this.durationMs = (this.respondedAt === 0 ? performance.now() : this.respondedAt) - this.startedAt;
    this.reportedTo = sink;
    this.request = request;
    this.authority = authority;
    const failed =
      failedByReset || this.error !== undefined || (this.grpcStatus !== undefined && this.grpcStatus !== '0');
    recordExchange(sink, sink.direction, 'h2', this.status, this.durationMs, failed, this);
    this.routeSeries?.record(this.durationMs, this.status, failed, isTimeoutReason(this.error));
  }

  /** A live tap's view of the other side: the client inbound, the endpoint outbound. */
  tapPeer(): TapPeer {
    const sink = this.reportedTo;
    if (sink?.direction !== 'inbound') return endpointTapPeer(this.endpoint);
    return sink.tracePeer ?? { address: sink.peer, identity: null };
  }

  accessLogEntry(): AccessLogEntry {
    const request = this.request;
    return {
      ts: this.startedWallMs,
      direction: this.reportedTo?.direction ?? 'outbound',
      protocol: 'h2',
      method: String(request?.[':method'] ?? ''),
      authority: this.authority,
      path: String(request?.[':path'] ?? ''),
      status: this.status,
      durationMs: this.durationMs,
      bytesIn: this.bytesIn,
      bytesOut: this.bytesOut,
      peer: this.reportedTo?.peer ?? '',
      ...(this.error !== undefined ? { error: this.error } : {}),
    };
  }
}
