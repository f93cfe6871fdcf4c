// The inbound end of ALPN trellis-h2h1/1: an mTLS connection from another Trellis proxy whose
// HTTP/2 streams (the project's own connection, src/proxy/h2/) are HTTP/1.1 requests for the app.
// Per stream, before anything reaches the app: the head is held to the HTTP/1 limits (431/414, as
// on every path: src/proxy/http/h2-head-limits.ts); the client-identity header is removed as sent
// and set to the verified peer identity; authorization policy decides (denied: 403 naming the
// policy, as on every inbound path); then the request goes to the app as HTTP/1.1 (h2-to-h1.ts).
// The connection's own limits (src/proxy/h2/limits.ts) count per peer identity, and each hit is
// counted and logged (h2-limit-report.ts).
//
// The connections are remembered so that drain can send GOAWAY on each: the streams in flight
// finish, the peer opens new ones elsewhere.
import type tls from 'node:tls';
import { performance } from 'node:perf_hooks';
import type { ProxyErrorReason } from '../errors.ts';
import { headLimitMessage, requestHeadLimitStatus } from '../http/h2-head-limits.ts';
import { proxyErrorResponse } from '../http/h2-headers.ts';
import { H2LimitReport } from '../http/h2-limit-report.ts';
import { H2Connection } from '../h2/connection.ts';
import type { H2Stream } from '../h2/stream.ts';
import type { Target } from '../../core/target.ts';
import { fieldValue } from './h1-fields.ts';
import { type BridgeContext, H2ToH1Exchange, respondWhole } from './h2-to-h1.ts';
import type { InboundPolicy } from './inbound-policy.ts';
import { refusalReason } from '../policy/inbound-hooks.ts';
import { isClientIdField } from '../policy/client-id-field.ts';
import { forwardedAddress, forwardFieldsFor } from '../inbound/forwarded-for.ts';
import type { AccessLogEntry } from '../telemetry/access-log.ts';
import { recordExchange } from '../telemetry/exchange-record.ts';
import type { PeerSeries } from '../telemetry/peer-metrics.ts';

export class MeshH2H1Inbound {
  private readonly policy: InboundPolicy;
  private readonly bridge: BridgeContext;
  private readonly conns = new Set<H2Connection>();
  private readonly limitReport: H2LimitReport;
  private draining = false;

  constructor(policy: InboundPolicy, bridge: BridgeContext) {
    this.policy = policy;
    this.bridge = bridge;
    this.limitReport = new H2LimitReport(bridge.metrics, bridge.log, 'inbound');
  }

  /** Serves a connection whose handshake completed (ALPN trellis-h2h1/1) from `identity`. */
  accept(socket: tls.TLSSocket, target: Target | null, identity: string): void {
    const ip = socket.remoteAddress ?? '';
    // What a live tap shows as the source: address and port, as the HTTP/1 paths show it.
    const source = `${ip}:${socket.remotePort ?? ''}`;
    const peer = this.bridge.metrics.peers.inbound(identity); // once per connection
    const conn = new H2Connection(socket, {
      role: 'server',
      peer: identity,
      onStream: (stream, fields, end) =>
        this.onStream(stream, fields, end, target, identity, ip, source, peer),
      onLimit: (limit, message) => this.limitReport.hit(limit, message, identity),
      onClose: () => this.conns.delete(conn),
    });
    this.conns.add(conn);
    if (this.draining) conn.shutdown();
    socket.resume();
  }

  private onStream(
    stream: H2Stream,
    fields: string[],
    endStream: boolean,
    target: Target | null,
    identity: string,
    ip: string,
    source: string,
    peer: PeerSeries,
  ): void {
    const tooLarge = requestHeadLimitStatus(fields, this.bridge.limits);
    if (tooLarge !== 0) {
      const what = headLimitMessage(tooLarge);
      this.refuse(
        stream,
        fields,
        identity,
        ip,
        peer,
        'request-header-too-large',
        what,
        'request-header-too-large',
        tooLarge,
      );
      return;
    }
    const idHeader = this.policy.clientIdHeader;
    if (idHeader !== '') {
      // Whatever the peer sent under this name is dropped: only the verified identity is kept.
      for (let i = fields.length - 2; i >= 0; i -= 2)
        if (isClientIdField(fields[i]!, idHeader)) fields.splice(i, 2);
      fields.push(idHeader, identity);
    }
    if (this.policy.appendForwardedFor) forwardFieldsFor(fields, forwardedAddress(ip));
    if (target === null) {
      this.refuse(
        stream,
        fields,
        identity,
        ip,
        peer,
        'unknown-destination',
        'no app for this connection',
        'unknown-destination',
      );
      return;
    }
    const denied = this.policy.checkRequest(
      target.port,
      identity,
      ip,
      fieldValue(fields, ':method') ?? '',
      fieldValue(fields, ':path') ?? '',
    );
    if (denied !== null) {
      this.refuse(stream, fields, identity, ip, peer, refusalReason(denied), denied, denied);
      return;
    }
    const exchange = new H2ToH1Exchange(this.bridge, stream, fields, endStream, identity);
    exchange.peerSeries = peer;
    exchange.clientAddress = source; // (a live tap reports it)
    // Tracing: the request's context fields carry this hop's span to the app.
    const tracer = this.bridge.tracer;
    if (tracer != null) exchange.traceSpan = tracer.start(fields, 'inbound', ip, identity);
    exchange.start(target);
  }

  /** Answers a stream the proxy will not forward (403 forbidden, 431, ...), counted like any request. */
  private refuse(
    stream: H2Stream,
    fields: readonly string[],
    peer: string,
    ip: string,
    peerSeries: PeerSeries,
    reason: ProxyErrorReason,
    message: string,
    headerValue: string,
    status?: number,
  ): void {
    const { metrics, tracer } = this.bridge;
    // A sampled request gets its SERVER span even so (its fields are not forwarded: a copy joins).
    const traceSpan = tracer != null ? tracer.start([...fields], 'inbound', ip, peer) : null;
    const startedAt = performance.now();
    const startedWallMs = Date.now();
    metrics.requestStarted('inbound', 'http1');
    metrics.proxyError('inbound', reason);
    const response = proxyErrorResponse(reason, false, message, headerValue, status);
    respondWhole(stream, response.headers, response.body);
    const answered = Number(response.headers[':status']);
    const durationMs = performance.now() - startedAt;
    recordExchange(this.bridge, 'inbound', 'http1', answered, durationMs, true, {
      traceSpan,
      peerSeries,
      accessLogEntry: (): AccessLogEntry => ({
        ts: startedWallMs,
        direction: 'inbound',
        protocol: 'http1',
        method: fieldValue(fields, ':method') ?? '',
        authority: fieldValue(fields, ':authority') ?? '',
        path: fieldValue(fields, ':path') ?? '',
        status: answered,
        durationMs,
        bytesIn: 0,
        bytesOut: response.body === null ? 0 : Buffer.byteLength(response.body),
        peer,
        error: reason,
      }),
    });
  }

  /** GOAWAY on every connection: the open streams finish, then each closes. */
  drain(): void {
    this.draining = true;
    for (const conn of this.conns) conn.shutdown();
  }
}
