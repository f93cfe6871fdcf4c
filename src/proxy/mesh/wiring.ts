// The mesh parts of one proxy, assembled once from its identity and authorizer and shared by the
// listeners and the HTTP paths (runtime.ts holds one): the credentials, the outbound transport
// (mTLS to meshed endpoints), the inbound termination and its hand-over by ALPN, inbound policy,
// the outbound HTTP/2 session pool of the app's HTTP/2 streams (node:http2), and the inbound end
// of HTTP/1 requests carried over the own HTTP/2 connection.
import type net from 'node:net';
import type tls from 'node:tls';
import type { Logger } from '../../core/log.ts';
import type { ProxyConfig } from '../config.ts';
import type { H2UpstreamPool } from '../http/h2-upstream-pool.ts';
import type { UpstreamPool } from '../http/upstream-pool.ts';
import type { WorkloadIdentity } from '../identity/provider.ts';
import type { InboundAuthorizer } from '../policy/types.ts';
import type { ProxyMetrics } from '../telemetry/metrics.ts';
import type { Target } from '../../core/target.ts';
import type { MeshCredentials } from './credentials.ts';
import type { BridgeContext } from './h2-to-h1.ts';
import type { InboundStreamHook } from '../policy/inbound-hooks.ts';
import type { MeshH2H1Inbound } from './inbound-h2h1.ts';
import { InboundPolicy } from './inbound-policy.ts';
import { transparentAppTarget } from '../inbound/app-target.ts';
import type { MeshInbound } from './inbound.ts';
import type { MeshOutbound } from './outbound.ts';
import type { AccessLog } from '../telemetry/access-log.ts';
import type { Tracer } from '../telemetry/trace-tracer.ts';

/** The transport's classes (transport.ts), loaded only when the proxy has an identity. */
export type MeshTransport = typeof import('./transport.ts');

/** The identity the proxy presents, with the transport that carries it. */
export interface MeshIdentity {
  readonly identity: WorkloadIdentity;
  readonly transport: MeshTransport;
}

export function loadMeshTransport(): Promise<MeshTransport> {
  return import('./transport.ts');
}

/** What the mesh needs from the proxy runtime. */
export interface MeshHost {
  readonly config: ProxyConfig;
  readonly log: Logger;
  readonly metrics: ProxyMetrics;
  readonly accessLog: AccessLog | null;
  /** Distributed tracing (null: off). */
  readonly tracer?: Tracer | null;
  readonly pool: UpstreamPool;
  readonly ownPorts: ReadonlySet<number>;
  /** The inbound listener's bound port (0 before it is bound). */
  inboundPort(): number;
  /** Runs the inbound HTTP/2 path on a connection (mTLS: with the client's identity). */
  startH2(socket: net.Socket, target: Target | null, identity: string): void;
  /** Runs the inbound HTTP/1 path on a connection (mTLS: with the client's identity). */
  startH1(socket: net.Socket, target: Target | null, identity: string | null): void;
  /** An opaque stream from a verified peer for the app at `target` (inbound/accept.ts). */
  inboundOpaque(socket: net.Socket, target: Target, identity: string, rest: Buffer | null): void;
}

export class MeshWiring {
  readonly credentials: MeshCredentials | null;
  readonly outbound: MeshOutbound | null;
  readonly inbound: MeshInbound | null;
  readonly h2h1Inbound: MeshH2H1Inbound | null;
  readonly policy: InboundPolicy;
  readonly authorizer: InboundAuthorizer | null;
  private readonly host: MeshHost;
  private h2Pool: Promise<H2UpstreamPool> | null = null;
  private readonly unsubscribe: () => void = () => {};

  constructor(host: MeshHost, mesh: MeshIdentity | null, authorizer: InboundAuthorizer | null) {
    this.host = host;
    const { config, log, metrics } = host;
    this.authorizer = authorizer;
    this.policy = new InboundPolicy({
      authorizer,
      clientIdHeader: config.mesh.clientIdHeader,
      appendForwardedFor: config.mesh.appendForwardedFor,
      metrics,
      log: log.child({ component: 'policy' }),
    });
    if (mesh === null) {
      this.credentials = null;
      this.outbound = null;
      this.inbound = null;
      this.h2h1Inbound = null;
      return;
    }
    const { MeshCredentials, MeshInbound, MeshOutbound, MeshH2H1Inbound } = mesh.transport;
    const credentials = new MeshCredentials(mesh.identity);
    this.credentials = credentials;
    const now = credentials.current();
    if (now !== null) metrics.identityExpiry(now.expiresAtMs);
    this.unsubscribe = credentials.onChange((key) => metrics.identityExpiry(key.expiresAtMs));
    this.outbound = new MeshOutbound({
      credentials,
      metrics,
      pool: host.pool,
      limits: config.http1,
      connectTimeoutMs: config.timeouts.connectMs,
      idleTimeoutMs: config.timeouts.idleMs,
      maxIdlePerEndpoint: config.pool.maxIdlePerHost,
      log: log.child({ component: 'mesh-outbound' }),
    });
    const h2h1Inbound = new MeshH2H1Inbound(this.policy, this.bridgeContext());
    this.h2h1Inbound = h2h1Inbound;
    this.inbound = new MeshInbound({
      credentials,
      metrics,
      log: log.child({ component: 'mesh-inbound' }),
      handshakeTimeoutMs: config.detect.timeoutMs,
      h2: (socket, target, id) => host.startH2(socket, target, id),
      h2h1: (socket, target, id) => h2h1Inbound.accept(socket, target, id),
      http1: (socket, target, id) => host.startH1(socket, target, id),
      tcp: (socket, target, id, port, rest) => this.startTcp(socket, target, id, port, rest),
    });
  }

  /** The outbound HTTP/2 upstream pool (mTLS sessions to meshed endpoints, plaintext others). */
  outboundH2Pool(): Promise<H2UpstreamPool> {
    const { config, log } = this.host;
    return (this.h2Pool ??= import('../http/h2-upstream-pool.ts').then(
      ({ H2UpstreamPool }) =>
        new H2UpstreamPool({
          connectTimeoutMs: config.timeouts.connectMs,
          idleTimeoutMs: config.timeouts.idleMs,
          headLimits: config.http1,
          log: log.child({ direction: 'outbound' }),
          ...(this.outbound !== null ? { secure: this.outbound } : {}),
        }),
    ));
  }

  /**
   * The inbound HTTP/2 path's per-stream hook (identity header, policy), loaded with the HTTP/2
   * forwarder (runtime.ts) that alone uses it.
   */
  async inboundStreamHook(): Promise<InboundStreamHook> {
    const { inboundStreamHook } = await import('./inbound-h2.ts');
    return inboundStreamHook(this.policy, this.host);
  }

  private bridgeContext(): BridgeContext {
    const { config, log, metrics, accessLog, pool, tracer } = this.host;
    return {
      pool,
      limits: config.http1,
      metrics,
      accessLog,
      tracer: tracer ?? null,
      log,
      responseTimeoutMs: config.timeouts.responseMs,
    };
  }

  /**
   * The endpoint at `address` (targetKey) left discovery: the outbound mesh connections and HTTP/2
   * sessions to it drain (busy ones close when their streams are done, or after `graceMs`).
   */
  drainEndpoint(address: string, graceMs: number): void {
    this.outbound?.h1Pool.drainEndpoint(address, graceMs);
    void this.h2Pool?.then((pool) => pool.drainEndpoint(address, graceMs));
  }

  /** Drain: GOAWAY on the mesh's own HTTP/2 connections both ways (in-flight streams finish). */
  drain(): void {
    this.outbound?.h1Pool.close();
    this.h2h1Inbound?.drain();
  }

  close(): void {
    this.unsubscribe();
    this.policy.close();
    this.authorizer?.close();
    this.credentials?.close();
    this.credentials?.identity.close();
  }

  /**
   * The opaque transport: the header's port must be the inbound listener's own (the app port),
   * the app port itself, or in transparent mode an app port (inbound/app-target.ts); anything else
   * is refused.
   */
  private startTcp(
    socket: tls.TLSSocket,
    connTarget: Target | null,
    identity: string,
    port: number,
    rest: Buffer,
  ): void {
    const { config, ownPorts } = this.host;
    let target: Target | null = null;
    if (connTarget !== null && (port === this.host.inboundPort() || port === connTarget.port))
      target = connTarget;
    else if (config.mode === 'transparent')
      target = transparentAppTarget(config.appHost, socket, port, ownPorts);
    if (target === null) {
      this.host.log.debug('opaque transport to a port that is not an app port refused', { port, identity });
      this.host.metrics.proxyError('inbound', 'unknown-destination');
      socket.destroy();
      return;
    }
    this.host.inboundOpaque(socket, target, identity, rest.length > 0 ? rest : null);
  }
}
