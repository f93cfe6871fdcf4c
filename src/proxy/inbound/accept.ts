// The inbound listener's connections, from accept to a path (the HTTP/1, HTTP/2 and opaque paths
// are assembled in inbound/stack.ts, which builds this acceptor). Anyone who can reach the
// workload can reach this code, so it holds the inbound threat model (docs/security.md):
//
// - Every connection goes to the workload's own app (`target`), never elsewhere; a listener that
//   has no app closes what it cannot hand to the mesh.
// - A TLS ClientHello offering a trellis-* ALPN protocol is the mesh: the proxy terminates it
//   (mesh/inbound.ts), on every port, opaque ones included ("opaque" means the app protocol is not
//   parsed, not that the mesh is not terminated).
// - HTTP (HTTP/1, HTTP/2) goes through the HTTP paths, which replace the client-identity header
//   and ask policy per request, whether it was recognised at once or only after the client stayed
//   silent past the detection timeout (late detection, below), in plaintext or inside the mesh's
//   opaque transport.
// - Bytes reach the app unparsed only on a port declared opaque, or when they are not HTTP; policy
//   admits every such connection first (with the peer's verified identity, or none).
//
// Server-first protocols: a client that sends nothing may be waiting for the app to speak. After
// the detection timeout (or, on a port declared opaque or already seen to be server-first, after a
// short peek that gives a meshed client's ClientHello time to arrive) the proxy connects to the app
// and relays what the app says, but keeps reading the client's first bytes: if they are HTTP or a
// mesh ClientHello they go where they belong, and the early app connection is dropped. What this
// listener learns about a port (it is server-first) only shortens the wait of later connections to
// it; it never changes how their bytes are handled.
import type net from 'node:net';
import type { Logger } from '../../core/log.ts';
import type { Detection } from '../detect/detect.ts';
import { readFirstBytes, type FirstBytes } from '../detect/first-bytes.ts';
import { ExpiringSet } from '../detect/opaque-cache.ts';
import type { MeshInbound } from '../mesh/inbound.ts';
import type { InboundPolicy } from '../mesh/inbound-policy.ts';
import { offersMeshAlpn } from '../mesh/protocol.ts';
import type { InboundAuthorizer } from '../policy/types.ts';
import { armIdleTimeout } from '../tcp/forward.ts';
import type { ProxyErrorReason } from '../errors.ts';
import type { DetectedProtocol, ProxyMetrics } from '../telemetry/metrics.ts';
import type { Target } from '../../core/target.ts';
import type { FaultScope } from '../fault.ts';

const TLS_HANDSHAKE = 0x16;

export interface InboundAcceptOptions {
  /** How long a client may stay silent before it is taken for a server-first protocol's client. */
  readonly detectTimeoutMs: number;
  /** On opaque and server-first ports: how long to wait for a meshed client's ClientHello. */
  readonly peekMs: number;
  /** How long a port seen to be server-first is remembered, and how many are. */
  readonly serverFirstCacheMs: number;
  readonly serverFirstCacheMax: number;
  /** The opaque path below policy: the app, connected to directly (inbound/stack.ts). */
  readonly tcp: InboundTcp;
  readonly opaquePorts: ReadonlySet<number>;
  readonly metrics: Pick<ProxyMetrics, 'detected' | 'proxyError'>;
  readonly log: Logger;
  /** The connection has work in progress (its listener's limits do not shed it). */
  readonly busy: (socket: net.Socket) => void;
  readonly policy: InboundPolicy;
  readonly authorizer: InboundAuthorizer | null;
  /** The mesh's mTLS termination; null when the proxy has no identity. */
  meshInbound(): MeshInbound | null;
  /** The HTTP/1 path (identity: the verified client identity, or null in plaintext). */
  http1(socket: net.Socket, target: Target | null, initial: Buffer | null, identity: string | null): void;
  /** The HTTP/2 path. */
  h2(socket: net.Socket, target: Target | null, initial: Buffer, identity: string | null): void;
}

/** The inbound opaque path below detection and policy (inbound/stack.ts inboundTcp). */
export interface InboundTcp {
  /** An opaque connection with no bytes either way for this long is closed (0: never). */
  readonly idleTimeoutMs: number;
  /**
   * Connects to the app at target for `client` (paused meanwhile, and whose close cancels the
   * attempt); `then` gets the app connection unless the client is gone by then. A failure closes
   * the client, counted.
   */
  connect(client: net.Socket, target: Target, then: (app: net.Socket) => void): void;
  /** Bytes both ways between the client and the app (`initial`: what the client sent before). */
  splice(client: net.Socket, app: net.Socket, initial: Buffer | null): void;
}

export class InboundAcceptor {
  private readonly opts: InboundAcceptOptions;
  /** App ports whose clients were seen to wait for the app to speak first. */
  private readonly serverFirst: ExpiringSet;
  private readonly faults: FaultScope;

  constructor(opts: InboundAcceptOptions) {
    this.opts = opts;
    this.faults = { log: opts.log, metrics: opts.metrics, direction: 'inbound' };
    this.serverFirst = new ExpiringSet({ ttlMs: opts.serverFirstCacheMs, max: opts.serverFirstCacheMax });
  }

  /** A connection accepted by the inbound listener, bound for the app at `target` (or nowhere). */
  accept(socket: net.Socket, target: Target | null): void {
    const http = target === null ? null : this.declaredHttp(target.port);
    if (http !== null) {
      // A Server declares the port HTTP: whatever is not the mesh goes to the HTTP path, whose
      // parser refuses what is not HTTP (nothing reaches the app unparsed).
      readFirstBytes(this.faults, socket, null, this.opts.detectTimeoutMs, (r) => {
        if (r.kind === 'closed') return;
        if (r.kind === 'decided' && this.toMesh(socket, r.detection, r.buf, target)) return;
        this.opts.metrics.detected('inbound', http, 'configured');
        this.handOver(socket, target, http, r.buf, null, null);
      });
      return;
    }
    const opaque = target !== null && this.isOpaquePort(target.port);
    const serverFirst = target !== null && !opaque && this.serverFirst.has(String(target.port));
    const peek = opaque || serverFirst;
    readFirstBytes(this.faults, socket, null, peek ? this.opts.peekMs : this.opts.detectTimeoutMs, (r) =>
      this.onFirstBytes(socket, target, r, opaque, serverFirst, peek),
    );
  }

  /**
   * An opaque stream for the app at `target` from a peer with a verified identity (the mesh's
   * opaque transport): late detection unless the app port is declared opaque.
   */
  acceptOpaque(socket: net.Socket, target: Target, identity: string, initial: Buffer | null): void {
    const http = this.declaredHttp(target.port);
    if (http !== null) this.handOver(socket, target, http, initial, identity, null);
    else if (this.isOpaquePort(target.port)) this.forwardRaw(socket, target, identity, initial, null);
    else if (initial !== null && initial.length > 0)
      readFirstBytes(this.faults, socket, initial, this.opts.detectTimeoutMs, (r) =>
        this.onLate(socket, target, identity, r, null),
      );
    else this.connectEarly(socket, target, identity);
  }

  /** The HTTP path a Server that selects `port` declares (http1; http2 and grpc: h2), else null. */
  private declaredHttp(port: number): 'http1' | 'h2' | null {
    const declared = this.opts.authorizer?.protocolOf(port) ?? null;
    if (declared === 'http1') return 'http1';
    return declared === 'http2' || declared === 'grpc' ? 'h2' : null;
  }

  private isOpaquePort(port: number): boolean {
    return this.opts.opaquePorts.has(port) || this.opts.authorizer?.protocolOf(port) === 'opaque';
  }

  /**
   * The first bytes of a connection. `peek`: the wait was the short peek of an opaque or
   * server-first port rather than the detection timeout.
   */
  private onFirstBytes(
    socket: net.Socket,
    target: Target | null,
    r: FirstBytes,
    opaque: boolean,
    serverFirst: boolean,
    peek: boolean,
  ): void {
    const { metrics } = this.opts;
    switch (r.kind) {
      case 'closed':
        metrics.detected('inbound', 'opaque', 'closed');
        return;
      case 'ended':
        // The client finished sending before it could be told apart: what it sent goes on as
        // opaque bytes (policy decides), never as HTTP that nobody parsed.
        metrics.detected('inbound', 'opaque', 'closed');
        if (target === null) this.refuse(socket, 'unknown-destination');
        else this.forwardRaw(socket, target, null, r.buf, null);
        return;
      case 'decided': {
        const d = r.detection;
        if (this.toMesh(socket, d, r.buf, target)) {
          metrics.detected('inbound', 'tls', 'detected');
          return;
        }
        if (opaque && target !== null) {
          metrics.detected('inbound', 'opaque', 'opaque-port');
          this.forwardRaw(socket, target, null, r.buf, null);
          return;
        }
        metrics.detected('inbound', d.kind, 'detected');
        this.handOver(socket, target, d.kind, r.buf, null, null);
        return;
      }
      case 'timeout': {
        const buf = r.buf;
        if (buf !== null && buf[0] === TLS_HANDSHAKE) {
          // A ClientHello still arriving: after a peek it gets the rest of the detection timeout
          // (a meshed client under load), after that it is closed.
          const rest = this.opts.detectTimeoutMs - this.opts.peekMs;
          if (peek && rest > 0) {
            readFirstBytes(this.faults, socket, buf, rest, (again) =>
              this.onFirstBytes(socket, target, again, opaque, serverFirst, false),
            );
            return;
          }
          return this.refuse(socket, 'detect-timeout');
        }
        if (opaque && target !== null) {
          metrics.detected('inbound', 'opaque', 'opaque-port');
          this.forwardRaw(socket, target, null, buf, null);
          return;
        }
        if (buf !== null) {
          // Some bytes, too few to decide, and not TLS: the prefix of an HTTP request (detection
          // says opaque at the first byte of anything else). A slow client: the HTTP/1 path's
          // head timeout judges it.
          metrics.detected('inbound', 'http1', 'timeout');
          this.opts.http1(socket, target, buf, null);
          return;
        }
        if (target === null) return this.refuse(socket, 'unknown-destination');
        if (serverFirst) metrics.detected('inbound', 'opaque', 'cached-opaque');
        else {
          this.serverFirst.add(String(target.port));
          metrics.proxyError('inbound', 'detect-timeout');
          metrics.detected('inbound', 'opaque', 'timeout');
        }
        this.connectEarly(socket, target, null);
        return;
      }
    }
  }

  /**
   * Hands a connection whose protocol is known to its path (`early`: an app connection made). The
   * HTTP paths answer requests that have nowhere to go themselves (400 unknown-destination).
   */
  private handOver(
    socket: net.Socket,
    target: Target | null,
    protocol: DetectedProtocol,
    buf: Buffer | null,
    identity: string | null,
    early: net.Socket | null,
  ): void {
    switch (protocol) {
      case 'http1':
        early?.destroy();
        this.opts.http1(socket, target, buf, identity);
        return;
      case 'h2':
        early?.destroy();
        this.opts.busy(socket);
        socket.pause();
        this.opts.h2(socket, target, buf ?? Buffer.alloc(0), identity);
        return;
      case 'tls':
      case 'opaque':
        if (target === null) this.refuse(socket, 'unknown-destination');
        else this.forwardRaw(socket, target, identity, buf, early);
        return;
    }
  }

  /**
   * Late detection: connects to the app now (a server-first app speaks first, and what it says
   * is relayed), and classifies the client's first bytes when they come.
   */
  private connectEarly(socket: net.Socket, target: Target, identity: string | null): void {
    // Nothing reaches the app, not even a connection, unless policy lets this peer talk to it.
    if (!this.opts.policy.admitsAny(target.port, { identity, ip: socket.remoteAddress ?? '' })) {
      return this.refuse(socket, 'forbidden');
    }
    this.opts.tcp.connect(socket, target, (app) => {
      const relay = relayToClient(app, socket);
      const idle = armIdleTimeout(socket, app, this.opts.tcp.idleTimeoutMs);
      // No deadline for the first byte (the idle timeout still applies), but one for the rest.
      const fromFirstByte = true;
      readFirstBytes(
        this.faults,
        socket,
        null,
        this.opts.detectTimeoutMs,
        (r) => {
          relay.stop();
          idle.disarm();
          this.onLate(socket, target, identity, r, app);
        },
        fromFirstByte,
      );
    });
  }

  /** The client's first bytes after a late start (`early`: the app connection made meanwhile). */
  private onLate(
    socket: net.Socket,
    target: Target,
    identity: string | null,
    r: FirstBytes,
    early: net.Socket | null,
  ): void {
    switch (r.kind) {
      case 'closed':
        early?.destroy();
        return;
      case 'ended':
        this.forwardRaw(socket, target, identity, r.buf, early);
        return;
      case 'timeout':
        if (r.buf !== null && r.buf[0] !== TLS_HANDSHAKE) {
          // Too few bytes to decide, and not TLS: the prefix of an HTTP request, sent slowly. The
          // HTTP/1 path's head timeout judges it; raw, it would reach the app unchecked.
          early?.destroy();
          this.opts.metrics.detected('inbound', 'http1', 'timeout');
          this.opts.http1(socket, target, r.buf, identity);
        } else this.forwardRaw(socket, target, identity, r.buf, early);
        return;
      case 'decided': {
        const d = r.detection;
        if (identity === null && this.toMesh(socket, d, r.buf, target)) {
          early?.destroy();
          return;
        }
        this.opts.metrics.detected('inbound', d.kind, 'late');
        this.handOver(socket, target, d.kind, r.buf, identity, early);
        return;
      }
    }
  }

  /**
   * Unparsed bytes to the app, once policy admits the connection as opaque traffic (it then
   * watches it for policy changes); `early` is an app connection already made.
   */
  private forwardRaw(
    socket: net.Socket,
    target: Target,
    identity: string | null,
    initial: Buffer | null,
    early: net.Socket | null,
  ): void {
    if (
      !this.opts.policy.admitConnection(socket, target.port, { identity, ip: socket.remoteAddress ?? '' })
    ) {
      early?.destroy();
      socket.destroy();
      return;
    }
    this.opts.busy(socket);
    const tcp = this.opts.tcp;
    if (early !== null) tcp.splice(socket, early, initial);
    else tcp.connect(socket, target, (app) => tcp.splice(socket, app, initial));
  }

  /** A ClientHello offering a trellis-* protocol: the mesh transport terminates it (true). */
  private toMesh(socket: net.Socket, d: Detection, buf: Buffer, target: Target | null): boolean {
    const mesh = d.kind === 'tls' && offersMeshAlpn(d.alpn) ? this.opts.meshInbound() : null;
    if (mesh === null) return false;
    this.opts.busy(socket);
    mesh.accept(socket, buf, target);
    return true;
  }

  private refuse(socket: net.Socket, reason: ProxyErrorReason): void {
    this.opts.metrics.proxyError('inbound', reason);
    socket.destroy();
  }
}

/** Relays what a server-first app says to its client until stop() (bytes the client sends wait). */
function relayToClient(app: net.Socket, client: net.Socket): { stop(): void } {
  const onData = (chunk: Buffer): void => {
    if (!client.write(chunk)) app.pause();
  };
  const onDrain = (): void => {
    app.resume();
  };
  const onAppGone = (): void => {
    client.destroy();
  };
  app.on('data', onData);
  client.on('drain', onDrain);
  app.once('end', onAppGone);
  app.once('close', onAppGone);
  app.on('error', () => {});
  app.resume();
  return {
    stop() {
      app.removeListener('data', onData);
      client.removeListener('drain', onDrain);
      app.removeListener('end', onAppGone);
      app.removeListener('close', onAppGone);
      app.pause();
    },
  };
}
