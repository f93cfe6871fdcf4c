// The state one proxy process shares between its listeners: configuration, telemetry, upstream
// pools, service discovery, the HTTP/2 forwarders, the opaque-destination cache, the loop guard,
// the mesh parts (identity, mTLS transport, inbound policy: src/proxy/mesh/wiring.ts), and what
// drain needs to find. It holds no layer of its own: each direction's layers, every protocol, are
// assembled in src/proxy/outbound/stack.ts and src/proxy/inbound/stack.ts, and built here once.
import type net from 'node:net';
import type { ProxyConfig } from './config.ts';
import type { Logger } from '../core/log.ts';
import type { Direction } from './telemetry/metrics.ts';
import { ProxyMetrics } from './telemetry/metrics.ts';
import type { AccessLog } from './telemetry/access-log.ts';
import { ExpiringSet } from './detect/opaque-cache.ts';
import { UpstreamPool } from './http/upstream-pool.ts';
import type { H2Proxy, H2ProxyOptions } from './http/h2-proxy.ts';
import { H1Session } from './http/h1-session.ts';
import type { H1Context, H1Shared } from './http/h1-context.ts';
import type { Target } from '../core/target.ts';
import { splice } from './tcp/forward.ts';
import { ServiceDiscovery } from './outbound/discovery.ts';
import { RequestMirrors } from './outbound/mirror.ts';
import { OutboundRoutes } from './outbound/routes.ts';
import { LazyDestinationResolver } from './resolve/lazy-destination.ts';
import type { InboundAuthorizer } from './policy/types.ts';
import type { Resolver } from './resolve/resolver.ts';
import { type MeshIdentity, MeshWiring } from './mesh/wiring.ts';
import { meshIdentityOf } from '../core/endpoints.ts';
import type { InboundAcceptor } from './inbound/accept.ts';
import { inboundAccept, inboundH1, inboundH2 } from './inbound/stack.ts';
import { type OutboundPaths, outboundH1, outboundH2, outboundPaths } from './outbound/stack.ts';
import { LoopGuard } from './transport/loop-guard.ts';
import type { ConnectionLimits } from './transport/connection-limits.ts';
import type { FaultScope } from './fault.ts';
import { startTracer } from './telemetry/trace-setup.ts';
import type { Tracer } from './telemetry/trace-tracer.ts';
import { warmUp, type WarmOutcome, type WarmTarget } from './outbound/warm-up.ts';

export class ProxyRuntime {
  readonly config: ProxyConfig;
  readonly log: Logger;
  readonly metrics: ProxyMetrics;
  readonly accessLog: AccessLog | null;
  /** Distributed tracing, null without a collector (config tracing.collector). */
  readonly tracer: Tracer | null;
  readonly pool: UpstreamPool;
  readonly opaquePorts: ReadonlySet<number>;
  readonly opaqueCache: ExpiringSet;
  /** Logical targets -> endpoints, per request (HTTP) or per connection (TCP). */
  readonly discovery: ServiceDiscovery;
  /** The Gateway API routes of the Services apps call (outbound), with a control plane. */
  readonly routes: OutboundRoutes | null;
  private readonly resolver: LazyDestinationResolver | null;
  /** Accepted connections still open, each with what must run when it closes (see trackAgain). */
  readonly connections = new Map<net.Socket, () => void>();
  /** The limits of the listener that accepted each connection (listener.ts). */
  private readonly limitsOf = new WeakMap<net.Socket, ConnectionLimits>();
  readonly h1Sessions = new Set<H1Session>();
  /** Where each direction's handlers report a fault of their own code (fault.ts). */
  readonly faults: Record<Direction, FaultScope>;
  /** Ports the proxy itself listens on: a request routed to one of them on a local address is a loop. */
  readonly ownPorts = new Set<number>();
  /** Whether a target is one of the proxy's own listeners (the outbound logical level refuses it). */
  readonly loops = new LoopGuard(this.ownPorts);
  /** The inbound listener's bound port (the opaque transport header names it). */
  inboundPort = 0;
  /** The outbound (HTTP proxy) listener's port once bound, 0 before or without one (request mirrors use it). */
  outboundPort = 0;
  /** Request mirrors (RequestMirror), with a control plane. */
  readonly mirrors: RequestMirrors | null;
  /** Identity, mTLS transport and inbound policy. */
  readonly mesh: MeshWiring;
  /** The inbound listener's connections, from accept to a path (inbound/stack.ts). */
  readonly inboundAcceptor: InboundAcceptor;
  /** The outbound paths of a connection whose protocol the listener detected (outbound/stack.ts). */
  readonly outboundPaths: OutboundPaths;
  draining = false;
  private readonly h2Proxies: Record<Direction, Promise<H2Proxy> | null> = { inbound: null, outbound: null };
  private readonly h1Contexts: Record<Direction, H1Context>;

  constructor(
    config: ProxyConfig,
    log: Logger,
    accessLog: AccessLog | null,
    mesh: MeshIdentity | null = null,
    authorizer: InboundAuthorizer | null = null,
    /** Discovery's resolver instead of the control plane's (the JIT warm-up's scratch pair). */
    resolver?: Resolver,
  ) {
    this.config = config;
    this.log = log;
    this.accessLog = accessLog;
    this.metrics = new ProxyMetrics({ log });
    this.tracer = startTracer(config, this.metrics, log, () => this.mesh.credentials?.id ?? null);
    this.faults = {
      inbound: { log, metrics: this.metrics, direction: 'inbound' },
      outbound: { log, metrics: this.metrics, direction: 'outbound' },
    };
    this.opaquePorts = new Set(config.opaquePorts);
    this.opaqueCache = new ExpiringSet({
      ttlMs: config.detect.opaqueCacheMs,
      max: config.detect.opaqueCacheMax,
    });
    this.pool = new UpstreamPool({
      limits: config.http1,
      maxIdlePerHost: config.pool.maxIdlePerHost,
      idleTimeoutMs: config.pool.idleTimeoutMs,
      connectTimeoutMs: config.timeouts.connectMs,
    });
    const address = config.discovery.address;
    this.resolver = address !== undefined ? new LazyDestinationResolver(address, log) : null;
    this.discovery = new ServiceDiscovery({
      resolver: resolver ?? this.resolver,
      failFastMs: config.discovery.failFastMs,
      idleMs: config.discovery.idleMs,
      // Transparent mode sees only IP destinations: resolve them (ClusterIP, pod IP) to mesh them.
      resolveAddresses: config.discovery.resolveAddresses ?? config.mode === 'transparent',
      // Short names (`web`) are services of the proxy's own namespace, as in Kubernetes.
      namespace: config.workload.namespace,
      log: log.child({ component: 'discovery' }),
      // `trellis edges`: traffic to a discovered endpoint that goes without mTLS, and why.
      onEndpointPick: (endpoint) => {
        if (this.mesh.outbound === null) this.metrics.plainOutbound(endpoint, 'no-identity');
        else if (meshIdentityOf(endpoint) === null) this.metrics.plainOutbound(endpoint, 'not-meshed');
      },
      breakerCounters: (backend) => this.metrics.breakerCounters(backend),
    });
    this.mirrors =
      address !== undefined
        ? new RequestMirrors({
            outboundPort: () => (this.outboundPort === 0 ? null : this.outboundPort),
            log: log.child({ component: 'mirror' }),
            count: (outcome) => this.metrics.routes.mirrored(outcome),
          })
        : null;
    this.routes =
      address !== undefined
        ? new OutboundRoutes({
            address,
            namespace: config.workload.namespace,
            waitMs: config.discovery.failFastMs,
            log: log.child({ component: 'routes' }),
            metrics: this.metrics.routes,
            // Circuit breaking: a Service's balancer.trellis.io/* policy goes to its balancer.
            onPolicy: (service, policy) => this.discovery.applyTrafficPolicy(service, policy),
            onFault: (kind) => this.metrics.faultInjected(kind),
          })
        : null;
    this.mesh = new MeshWiring(
      {
        config,
        log,
        metrics: this.metrics,
        accessLog,
        tracer: this.tracer,
        pool: this.pool,
        ownPorts: this.ownPorts,
        inboundPort: () => this.inboundPort,
        startH2: (socket, target, identity) =>
          this.startH2('inbound', socket, target, Buffer.alloc(0), identity),
        startH1: (socket, target, identity) => this.startH1('inbound', socket, target, null, identity),
        inboundOpaque: (socket, target, identity, rest) =>
          this.inboundAcceptor.acceptOpaque(socket, target, identity, rest),
      },
      mesh,
      authorizer,
    );
    // An endpoint that left discovery: its pooled connections drain (linkerd, Envoy) instead of
    // lingering until their idle timeout; in-flight requests on them get the drain's grace.
    this.discovery.onEndpointLeft((address) => {
      const graceMs = config.timeouts.drainGraceMs;
      log.debug('an endpoint left discovery; draining its pooled connections', { endpoint: address });
      this.pool.drainEndpoint(address, graceMs);
      this.mesh.drainEndpoint(address, graceMs);
    });
    this.h1Contexts = { inbound: inboundH1(this), outbound: outboundH1(this) };
    this.inboundAcceptor = inboundAccept(this);
    this.outboundPaths = outboundPaths(this);
  }

  /** Runs the HTTP/1 path of a direction on a connection (inbound over mTLS: with the client's identity). */
  startH1(
    dir: Direction,
    socket: net.Socket,
    target: Target | null,
    initial: Buffer | null,
    identity: string | null,
  ): void {
    this.h1Sessions.add(new H1Session(this.h1Context(dir), socket, target, initial, identity));
  }

  /** Runs the HTTP/2 path of a direction on a (paused) connection. */
  startH2(
    dir: Direction,
    socket: net.Socket,
    target: Target | null,
    initial: Buffer,
    identity: string | null,
  ): void {
    socket.pause();
    this.h2(dir).then(
      (h2) => h2.accept(socket, initial, target, identity),
      (err: unknown) => {
        this.log.error('cannot load the HTTP/2 forwarder', { error: err });
        socket.destroy();
      },
    );
  }

  /**
   * The HTTP/2 forwarder of a direction, created on first use: node:http2 adds ~15 MB to the
   * process, which a proxy that never sees HTTP/2 should not pay.
   */
  h2(dir: Direction): Promise<H2Proxy> {
    return (this.h2Proxies[dir] ??=
      dir === 'outbound'
        ? Promise.all([import('./http/h2-proxy.ts'), this.mesh.outboundH2Pool()]).then(
            ([{ H2Proxy }, pool]) => new H2Proxy(outboundH2(this, pool)),
          )
        : Promise.all([import('./http/h2-proxy.ts'), this.mesh.inboundStreamHook()]).then(
            ([{ H2Proxy }, hook]) => new H2Proxy(inboundH2(this, hook)),
          ));
  }

  /** What the HTTP/2 forwarder of either direction is given alike (the stacks add their levels). */
  h2Shared(dir: Direction): Omit<H2ProxyOptions, 'route'> {
    const { config } = this;
    return {
      direction: dir,
      metrics: this.metrics,
      log: this.log.child({ direction: dir }),
      accessLog: this.accessLog,
      tracer: this.tracer,
      connectTimeoutMs: config.timeouts.connectMs,
      idleTimeoutMs: config.timeouts.idleMs,
      responseTimeoutMs: config.timeouts.responseMs,
      headLimits: config.http1,
    };
  }

  h1Context(dir: Direction): H1Context {
    return this.h1Contexts[dir];
  }

  /**
   * What the HTTP/1 path of either direction is given alike: limits, timeouts, telemetry, the
   * pool, and the listener's connection accounting (the stacks add their levels).
   */
  h1Shared(direction: Direction): H1Shared {
    const config = this.config;
    return {
      direction,
      limits: config.http1,
      idleTimeoutMs: config.timeouts.idleMs,
      requestHeadTimeoutMs: config.timeouts.requestHeadMs,
      requestBodyIdleMs: config.timeouts.requestBodyIdleMs,
      responseTimeoutMs: config.timeouts.responseMs,
      connectTimeoutMs: config.timeouts.connectMs,
      metrics: this.metrics,
      log: this.log,
      accessLog: this.accessLog,
      tracer: this.tracer,
      pool: this.pool,
      splice: (down, up, toUp, toDown) => {
        this.trackAgain(down);
        splice(down, up, toUp, toDown, config.timeouts.idleMs);
      },
      isDraining: () => this.draining,
      sessionClosed: (s) => this.h1Sessions.delete(s),
      connectionBusy: (socket) => this.connectionBusy(socket),
      connectionIdle: (socket) => this.connectionIdle(socket),
    };
  }

  /**
   * Loads the control-plane clients and readies the static destinations (outbound/warm-up.ts),
   * for at most `budgetMs`.
   */
  warmUp(targets: readonly WarmTarget[], budgetMs: number): Promise<Map<string, WarmOutcome>> {
    const resolver = this.resolver;
    const routes = this.routes;
    return warmUp(
      {
        discovery: this.discovery,
        routes,
        mesh: this.mesh.outbound,
        preload: async () => {
          await Promise.all([resolver?.load(), routes?.preload()]);
        },
        preloadAlways: this.config.identity.address !== undefined || this.config.policy.address !== undefined,
        log: this.log.child({ component: 'warm-up' }),
      },
      targets,
      budgetMs,
    );
  }

  /** Puts an accepted connection under its listener's limits. */
  trackLimits(socket: net.Socket, limits: ConnectionLimits): void {
    this.limitsOf.set(socket, limits);
  }

  /** The connection has work in progress: its listener does not shed it. */
  connectionBusy(socket: net.Socket): void {
    this.limitsOf.get(socket)?.busy(socket);
  }

  /** The connection waits for its client again: its listener may shed it when full. */
  connectionIdle(socket: net.Socket): void {
    this.limitsOf.get(socket)?.idleAgain(socket);
  }

  /**
   * Re-arms the close accounting of an accepted connection (metrics, the drain's count) after a
   * handler that hands the socket over (CONNECT, upgrade) removed its 'close' listeners.
   */
  trackAgain(socket: net.Socket): void {
    const onClose = this.connections.get(socket);
    if (onClose === undefined || socket.listeners('close').includes(onClose)) return;
    if (socket.closed) onClose();
    else socket.on('close', onClose);
  }

  /** Stops new work and lets in-flight work finish; resolves when done or after graceMs. */
  async drain(graceMs: number): Promise<void> {
    this.draining = true;
    this.pool.close();
    this.mesh.drain();
    for (const s of this.h1Sessions) s.drain();
    const h2Done = Promise.all(
      [this.h2Proxies.inbound, this.h2Proxies.outbound].map((p) => p?.then((h2) => h2.drain(graceMs))),
    );
    const deadline = Date.now() + graceMs;
    while (this.connections.size > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    await h2Done;
    for (const c of this.connections.keys()) c.destroy();
    this.discovery.close();
    this.routes?.close();
    this.mirrors?.close();
    this.resolver?.close();
    this.mesh.close();
    await this.accessLog?.close();
    await this.tracer?.close();
  }
}
