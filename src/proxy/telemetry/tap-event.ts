// One tap event: the metadata of one finished HTTP exchange as a live tap streams it (one JSON
// object per line, tap-hub.ts), never a body or a header value beyond those named here. Built
// only for an exchange a tap wants, from the exchange's own description (its access log entry,
// its grpc-status, its peer and the route rule that forwarded it: exchange-record.ts).
import type { AccessLogEntry } from './access-log.ts';
import type { ExchangeRoute, TapPeer } from './exchange-record.ts';
import type { Direction, HttpProtocol } from './metrics.ts';

export interface TapExchangeEvent {
  readonly type: 'exchange';
  /** When the exchange finished, ISO 8601. */
  readonly ts: string;
  readonly direction: Direction;
  readonly protocol: HttpProtocol;
  readonly method: string;
  readonly scheme: 'http';
  readonly authority: string;
  readonly path: string;
  /** The status the client got; 0: none (the stream was reset or the connection broke). */
  readonly status: number;
  readonly grpc_status: string | null;
  readonly latency_ms: number;
  readonly request_bytes: number;
  readonly response_bytes: number;
  /** "HOST:PORT" of the client ('' when unknown: an mTLS client is known by its identity). */
  readonly source: string;
  /** "HOST:PORT" of the endpoint (outbound) or the authority served (inbound); '' when unknown. */
  readonly destination: string;
  readonly source_identity: string | null;
  readonly destination_identity: string | null;
  /** Whether the hop between the two proxies was mutual TLS. */
  readonly tls: boolean;
  /** Outbound: the route that forwarded the exchange, "NAMESPACE/NAME"; null when none matched. */
  readonly route: string | null;
  /** Its kind ("HTTPRoute", "GRPCRoute"); null without a route. */
  readonly route_kind: string | null;
  /** The matched rule: its name, else its index in the route ("0", ...); null without a route. */
  readonly route_rule: string | null;
  /** The `trellis-proxy-error` reason when the proxy answered or broke the exchange itself. */
  readonly proxy_error: string | null;
}

/** What the proxy counted for one tap, sent in the stream about once a second while it changes. */
export interface TapDropsEvent {
  readonly type: 'drops';
  /** Exchanges passed over while the tap was at its events-per-second cap. */
  readonly rate_capped: number;
  /** Events dropped because the tap's reader was slow (its buffer was full). */
  readonly slow_consumer: number;
}

/** The first line of a tap's stream: the proxy attached it, with this cap. */
export interface TapStartedEvent {
  readonly type: 'started';
  readonly max_rps: number;
}

/**
 * The event of an exchange. `own`: this proxy's identity. Inbound, the peer is the client;
 * outbound, the endpoint: a meshed peer's identity means the hop was mTLS (the proxy verified it).
 */
export function tapEvent(
  e: AccessLogEntry,
  peer: TapPeer | null,
  own: string | null,
  grpcStatus: string | undefined,
  route: ExchangeRoute | null = null,
): TapExchangeEvent {
  const inbound = e.direction === 'inbound';
  const peerIdentity = peer?.identity ?? null;
  const peerAddress = peer?.address ?? '';
  return {
    type: 'exchange',
    ts: isoTime(e.ts),
    direction: e.direction,
    protocol: e.protocol,
    method: e.method,
    scheme: 'http',
    authority: e.authority,
    path: e.path,
    status: e.status,
    grpc_status: grpcStatus ?? null,
    latency_ms: Math.round(e.durationMs * 1000) / 1000,
    request_bytes: e.bytesIn,
    response_bytes: e.bytesOut,
    source: inbound ? (peer === null ? e.peer : peerAddress) : e.peer,
    destination: inbound ? e.authority : peerAddress,
    source_identity: inbound ? peerIdentity : own,
    destination_identity: inbound ? own : peerIdentity,
    tls: peerIdentity !== null && own !== null,
    route: route === null ? null : route.route.label,
    route_kind: route === null ? null : route.route.kind,
    route_rule: route === null ? null : route.ruleLabel,
    proxy_error: e.error ?? null,
  };
}

function isoTime(ms: number): string {
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? new Date().toISOString() : d.toISOString();
}
