// Inbound authorization and the client-identity header, in one place for every inbound path
// (HTTP/1, HTTP/2, opaque TCP; plaintext or mTLS). The authorizer (src/proxy/policy/) decides;
// this module asks it at the right moments and acts on the answer:
//
// - HTTP requests: before anything is forwarded. Denied: 403 (gRPC: PERMISSION_DENIED) with
//   `trellis-proxy-error: forbidden: <policy>`; the proxy error reason is `forbidden`. A path with
//   a dot-segment must be allowed both as sent and as an app would resolve it, else it is refused
//   the same way (`forbidden: path has dot-segments`).
// - Opaque TCP: at accept. Denied: closed. Open opaque connections are remembered, and when the
//   policy changes each is checked again; those no longer allowed are closed, nothing else is.
// - The policy port is the app port the connection goes to; the peer is its verified identity
//   (mTLS) or null, and its IP.
//
// - Rate limits: an allowed HTTP request over its Server's HTTPLocalRateLimitPolicy
//   (policy/rate-limit.ts) gets 429 (gRPC: RESOURCE_EXHAUSTED) with `trellis-proxy-error:
//   rate-limited`, counted in trellis_inbound_rate_limited_total{limit}.
//
// Every decision counts in trellis_inbound_authz_total{server, policy, decision}.
import type net from 'node:net';
import type { Logger } from '../../core/log.ts';
import { RATE_LIMITED, type InboundHttpGate } from '../policy/inbound-hooks.ts';
import type { Decision, InboundAuthorizer, InboundPeer } from '../policy/types.ts';
import { hasDotSegment, resolveDotSegments } from '../policy/match.ts';
import type { ProxyMetrics } from '../telemetry/metrics.ts';

/** The trellis-proxy-error value of a request allowed as sent but denied once its dot-segments resolve. */
const DOT_SEGMENT_REFUSAL = 'forbidden: path has dot-segments';

/** checkConnection with the optional traffic kind of the real authorizer (policy/authorizer.ts). */
type ConnectionCheck = (port: number, peer: InboundPeer, traffic?: 'http' | 'opaque') => Decision;

interface OpenConnection {
  readonly port: number;
  readonly peer: InboundPeer;
  /** An upgraded HTTP connection: the request that began it (checked again as a request). */
  readonly request?: { readonly method: string; readonly path: string };
}

export class InboundPolicy implements InboundHttpGate {
  readonly clientIdHeader: string;
  readonly appendForwardedFor: boolean;
  private readonly authorizer: InboundAuthorizer | null;
  private readonly metrics: Pick<ProxyMetrics, 'authorized' | 'proxyError'> &
    Partial<Pick<ProxyMetrics, 'rateLimited'>>;
  private readonly log: Logger;
  private readonly open = new Map<net.Socket, OpenConnection>();
  private readonly unsubscribe: () => void;

  constructor(opts: {
    authorizer: InboundAuthorizer | null;
    clientIdHeader: string;
    /** Default true (mesh.appendForwardedFor). */
    appendForwardedFor?: boolean;
    metrics: Pick<ProxyMetrics, 'authorized' | 'proxyError'> & Partial<Pick<ProxyMetrics, 'rateLimited'>>;
    log: Logger;
  }) {
    this.authorizer = opts.authorizer;
    this.clientIdHeader = opts.clientIdHeader;
    this.appendForwardedFor = opts.appendForwardedFor ?? true;
    this.metrics = opts.metrics;
    this.log = opts.log;
    this.unsubscribe = opts.authorizer?.onChange(() => this.recheck()) ?? (() => {});
  }

  checkRequest(
    port: number,
    identity: string | null,
    ip: string,
    method: string,
    path: string,
  ): string | null {
    const authorizer = this.authorizer;
    if (authorizer === null) return null;
    const refusal = this.judgeRequest(
      authorizer,
      port,
      { identity, ip },
      { method, path: withoutQuery(path) },
    );
    if (refusal !== null || authorizer.rateLimit === undefined) return refusal;
    // Allowed: within the Server's rate limit (policy/rate-limit.ts)?
    const limited = authorizer.rateLimit(port, identity);
    if (limited === null) return null;
    this.metrics.rateLimited?.(limited);
    return RATE_LIMITED;
  }

  /**
   * One request (its path without the query), at first or again after a policy change: counted;
   * null when allowed, else the trellis-proxy-error value. The path is forwarded as sent, and an
   * app may resolve its dot-segments (merging repeated slashes first, or not): a request allowed
   * as sent but not as resolved either way ("/public/../admin", "/public//../admin" under a rule
   * for "/public/*") is refused.
   */
  private judgeRequest(
    authorizer: InboundAuthorizer,
    port: number,
    peer: InboundPeer,
    request: { readonly method: string; readonly path: string },
  ): string | null {
    const decision = authorizer.checkRequest(port, peer, request);
    if (decision.allowed && hasDotSegment(request.path)) {
      const resolved = resolveDotSegments(request.path);
      const merged = resolveDotSegments(request.path, true);
      const allowed = (path: string) =>
        authorizer.checkRequest(port, peer, { method: request.method, path }).allowed;
      if (!allowed(resolved) || (merged !== resolved && !allowed(merged))) {
        this.metrics.authorized(decision, 'deny');
        return DOT_SEGMENT_REFUSAL;
      }
    }
    return this.record(decision);
  }

  /**
   * An opaque connection to the app port `port`: true when allowed (it is then watched for policy
   * changes until it closes); false when denied (the caller closes it).
   */
  admitConnection(socket: net.Socket, port: number, peer: InboundPeer): boolean {
    const authorizer = this.authorizer;
    if (authorizer === null) return true;
    if (this.record(this.checkOpaque(authorizer, port, peer)) !== null) {
      this.metrics.proxyError('inbound', 'forbidden');
      return false;
    }
    this.watch(socket, { port, peer });
    return true;
  }

  /**
   * Whether policy lets `peer` talk to the app port `port` at all (HTTP, or opaque traffic): asked
   * before a connection whose protocol is not known yet reaches the app (late detection). Only a
   * denial is counted here; what the connection turns out to carry is decided again.
   */
  admitsAny(port: number, peer: InboundPeer): boolean {
    const authorizer = this.authorizer;
    if (authorizer === null) return true;
    const d = (authorizer.checkConnection as ConnectionCheck)(port, peer, 'http');
    if (!d.allowed) this.record(d);
    return d.allowed;
  }

  watchUpgrade(
    socket: net.Socket,
    port: number,
    identity: string | null,
    ip: string,
    method: string,
    path: string,
  ): void {
    if (this.authorizer === null) return;
    this.watch(socket, { port, peer: { identity, ip }, request: { method, path: withoutQuery(path) } });
  }

  private watch(socket: net.Socket, c: OpenConnection): void {
    this.open.set(socket, c);
    socket.once('close', () => this.open.delete(socket));
  }

  /** Open opaque and upgraded connections (tests and drain). */
  get openConnections(): number {
    return this.open.size;
  }

  close(): void {
    this.unsubscribe();
    this.open.clear();
  }

  private checkOpaque(authorizer: InboundAuthorizer, port: number, peer: InboundPeer): Decision {
    return (authorizer.checkConnection as ConnectionCheck)(port, peer, 'opaque');
  }

  /** After a policy change: closes the open opaque and upgraded connections the policy no longer allows. */
  private recheck(): void {
    const authorizer = this.authorizer;
    if (authorizer === null) return;
    let closed = 0;
    for (const [socket, c] of [...this.open]) {
      const refusal =
        c.request === undefined
          ? this.record(this.checkOpaque(authorizer, c.port, c.peer))
          : this.judgeRequest(authorizer, c.port, c.peer, c.request);
      if (refusal === null) continue;
      this.open.delete(socket);
      this.metrics.proxyError('inbound', 'forbidden');
      socket.destroy();
      closed++;
    }
    if (closed > 0) this.log.info('closed connections the new policy denies', { connections: closed });
  }

  /**
   * Counts a decision; returns null when allowed, else the trellis-proxy-error value. (The
   * caller that answers or closes counts the proxy error itself.)
   */
  private record(d: Decision): string | null {
    this.metrics.authorized(d, !d.allowed ? 'deny' : d.audited ? 'audit' : 'allow');
    return d.allowed ? null : `forbidden: ${d.policy}`;
  }
}

function withoutQuery(path: string): string {
  const q = path.indexOf('?');
  return q === -1 ? path : path.slice(0, q);
}
