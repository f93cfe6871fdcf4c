// Accept and detect: every accepted connection learns where it was going (the listener's own
// destination, SO_ORIGINAL_DST in transparent mode, or nothing for the HTTP proxy listener), then
// which protocol it speaks, and is handed to the HTTP/1, HTTP/2 or opaque TCP path. On the inbound
// side a TLS ClientHello that offers a trellis-* ALPN protocol is the mesh transport: the proxy
// terminates it (mesh/inbound.ts) when it has an identity; any other TLS stays opaque.
import net from 'node:net';
import type { Direction, DetectOutcome, DetectedProtocol } from './telemetry/metrics.ts';
import { detectProtocol } from './detect/detect.ts';
import { TrellisError } from '../core/errors.ts';
import type { ProxyErrorReason } from './errors.ts';
import type { Target } from './transport/target.ts';
import { targetKey } from './transport/target.ts';
import type { ProxyRuntime } from './runtime.ts';
import { H1Session } from './http/h1-session.ts';
import { forwardTcp, splice } from './tcp/forward.ts';
import { isMeshSocket, offersMeshAlpn } from './mesh/protocol.ts';

export type ProtocolHint = 'auto' | 'http1' | 'h2' | 'opaque';

export interface ListenerSpec {
  readonly name: string;
  readonly direction: Direction;
  readonly host: string;
  readonly port: number;
  /** The destination of every connection, when the listener is bound for one; else per connection. */
  readonly destination: (socket: net.Socket) => Target | null;
  readonly protocol: ProtocolHint;
}

const MAX_DETECT_BYTES = 16 * 1024;

export function startListener(rt: ProxyRuntime, spec: ListenerSpec): Promise<net.Server> {
  const server = net.createServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: false }, (socket) => {
    rt.metrics.tcpOpened(spec.direction);
    const onClose = () => {
      if (!rt.connections.delete(socket)) return;
      rt.metrics.tcpClosed(spec.direction, socket.bytesRead, socket.bytesWritten);
    };
    rt.connections.set(socket, onClose);
    socket.on('close', onClose);
    socket.on('error', () => {});
    if (rt.draining) {
      socket.destroy();
      return;
    }
    dispatch(rt, spec.direction, socket, spec.destination(socket), spec.protocol, null);
  });
  return new Promise((resolve, reject) => {
    const onListenError = (err: Error) => {
      const where = `${spec.host.includes(':') ? `[${spec.host}]` : spec.host}:${spec.port}`;
      reject(
        new TrellisError(
          'TRELLIS_ERR_LISTEN',
          `${spec.name} listener cannot listen on ${where}: ${err.message}`,
          {
            cause: err,
          },
        ),
      );
    };
    server.once('error', onListenError);
    server.listen({ host: spec.host, port: spec.port, backlog: 1024 }, () => {
      server.removeListener('error', onListenError);
      server.on('error', (err) => rt.log.error('listener error', { listener: spec.name, error: err }));
      resolve(server);
    });
  });
}

/** Detects the protocol of a connection (unless known) and hands it to its handler. */
export function dispatch(
  rt: ProxyRuntime,
  dir: Direction,
  socket: net.Socket,
  target: Target | null,
  hint: ProtocolHint,
  initial: Buffer | null,
  /** A connection to target already made (CONNECT connects before answering 200). */
  upstream: net.Socket | null = null,
  /** Where `upstream` goes: the endpoint picked for a logical target, else target itself. */
  upstreamAddress: Target | null = null,
): void {
  if (hint === 'opaque')
    return handle(rt, dir, socket, target, 'opaque', 'configured', initial, upstream, upstreamAddress);
  if (hint === 'http1' || hint === 'h2')
    return handle(rt, dir, socket, target, hint, 'configured', initial, upstream, upstreamAddress);
  if (target !== null && rt.opaquePorts.has(target.port)) {
    return handle(rt, dir, socket, target, 'opaque', 'opaque-port', initial, upstream, upstreamAddress);
  }
  if (target !== null && rt.opaqueCache.has(targetKey(target))) {
    return handle(rt, dir, socket, target, 'opaque', 'cached-opaque', initial, upstream, upstreamAddress);
  }
  let buf = initial;
  let alpn: readonly string[] = NO_ALPN;
  let timer: NodeJS.Timeout | null = null;
  const stopDetecting = () => {
    if (timer !== null) clearTimeout(timer);
    timer = null;
    socket.removeListener('data', onData);
    socket.removeListener('end', onEnd);
    socket.removeListener('close', onClose);
  };
  const finish = (protocol: DetectedProtocol, outcome: DetectOutcome) => {
    stopDetecting();
    handle(rt, dir, socket, target, protocol, outcome, buf, upstream, upstreamAddress, alpn);
  };
  const decide = (): boolean => {
    if (buf === null) return false;
    const d = detectProtocol(buf, MAX_DETECT_BYTES);
    if (d.kind === 'need-more') return false;
    if (d.kind === 'tls') alpn = d.alpn;
    finish(d.kind, 'detected');
    return true;
  };
  const onData = (chunk: Buffer) => {
    buf = buf === null ? chunk : Buffer.concat([buf, chunk]);
    decide();
  };
  const onEnd = () => {
    // The client finished sending before we could tell: forward what there is as opaque bytes.
    stopDetecting();
    rt.metrics.detected(dir, 'opaque', 'closed');
    if (target === null) {
      socket.destroy();
      upstream?.destroy();
    } else handle(rt, dir, socket, target, 'opaque', null, buf, upstream, upstreamAddress);
  };
  const onClose = () => {
    // Reset (or destroyed) while undecided: nothing to forward, and nothing learnt about the
    // destination (a TCP probe that connects and resets must not mark it opaque).
    stopDetecting();
    rt.metrics.detected(dir, 'opaque', 'closed');
    upstream?.destroy();
  };
  if (decide()) return;
  socket.on('data', onData);
  socket.on('end', onEnd);
  socket.on('close', onClose);
  if (rt.config.detect.timeoutMs > 0) {
    timer = setTimeout(() => {
      timer = null;
      // Nothing (or too little) arrived: a server-first protocol. Remember it, so only the first
      // connection to this destination waits.
      if (target !== null) rt.opaqueCache.add(targetKey(target));
      rt.metrics.proxyError(dir, 'detect-timeout');
      finish('opaque', 'timeout');
    }, rt.config.detect.timeoutMs);
  }
}

const NO_ALPN: readonly string[] = [];

function handle(
  rt: ProxyRuntime,
  dir: Direction,
  socket: net.Socket,
  target: Target | null,
  protocol: DetectedProtocol,
  outcome: DetectOutcome | null,
  initial: Buffer | null,
  upstream: net.Socket | null,
  upstreamAddress: Target | null,
  alpn: readonly string[] = NO_ALPN,
): void {
  if (outcome !== null) rt.metrics.detected(dir, protocol, outcome);
  if (upstream !== null && (protocol === 'tls' || protocol === 'opaque')) {
    splice(socket, upstream, initial, null);
    return;
  }
  // HTTP/1 reuses the connection from the pool; HTTP/2 makes its own sessions.
  // (pooled under the endpoint it goes to, where per-request balancing will look for it).
  // A CONNECT tunnel to a meshed endpoint is the mesh's opaque transport: HTTP inside it is
  // routed again instead, per request, over the mesh's own HTTP/2 sessions.
  if (upstream !== null && target !== null && protocol === 'http1' && !isMeshSocket(upstream))
    rt.pool.adopt(upstreamAddress ?? target, upstream);
  else upstream?.destroy();
  switch (protocol) {
    case 'http1': {
      const session = new H1Session(rt.h1Context(dir), socket, target, initial);
      rt.h1Sessions.add(session);
      return;
    }
    case 'h2':
      socket.pause();
      rt.h2(dir).then(
        (h2) => h2.accept(socket, initial ?? Buffer.alloc(0), target),
        (err: unknown) => {
          rt.log.error('cannot load the HTTP/2 forwarder', { error: err });
          socket.destroy();
        },
      );
      return;
    case 'tls':
    case 'opaque': {
      const meshInbound = rt.mesh.inbound;
      if (dir === 'inbound' && protocol === 'tls' && meshInbound !== null && offersMeshAlpn(alpn)) {
        meshInbound.accept(socket, initial ?? Buffer.alloc(0), target);
        return;
      }
      if (target === null) {
        fail(rt, dir, socket, 'unknown-destination');
        return;
      }
      if (dir === 'inbound') {
        rt.mesh.forwardOpaqueInbound(socket, target, initial, null);
        return;
      }
      // Per connection: a logical target's connection goes to an endpoint discovery picks
      // (over the mesh's mTLS opaque transport when that endpoint is meshed).
      const opts = {
        connectTimeoutMs: rt.config.timeouts.connectMs,
        discovery: rt.discovery,
        mesh: rt.mesh.outbound,
      };
      forwardTcp(socket, target, initial, opts, (reason) => rt.metrics.proxyError(dir, reason));
      return;
    }
  }
}

function fail(rt: ProxyRuntime, dir: Direction, socket: net.Socket, reason: ProxyErrorReason): void {
  rt.metrics.proxyError(dir, reason);
  socket.destroy();
}
