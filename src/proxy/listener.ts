// Accept and detect: every accepted connection learns where it was going (the listener's own
// destination, SO_ORIGINAL_DST in transparent mode, or nothing for the HTTP proxy listener), then
// which protocol it speaks, and is handed to its path: the HTTP/1, HTTP/2, opaque TCP (TLS passed
// through included) and CONNECT paths are assembled in src/proxy/outbound/stack.ts. The inbound
// listener's connections go to src/proxy/inbound/accept.ts, which holds the inbound threat model
// (mesh termination, late detection, policy; its paths: src/proxy/inbound/stack.ts); outbound
// detection is here, with the listeners' connection limits.
import net from 'node:net';
import type { Direction, DetectOutcome, DetectedProtocol } from './telemetry/metrics.ts';
import { readFirstBytes } from './detect/first-bytes.ts';
import { reportFault } from './fault.ts';
import { TrellisError } from '../core/errors.ts';
import type { Target } from '../core/target.ts';
import { targetKey } from '../core/target.ts';
import type { ProxyRuntime } from './runtime.ts';
import { ConnectionLimits, defaultMaxConnections, openFilesLimit } from './transport/connection-limits.ts';

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

export function startListener(rt: ProxyRuntime, spec: ListenerSpec): Promise<net.Server> {
  const limits = listenerLimits(rt, spec);
  const server = net.createServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: false }, (socket) => {
    if (!limits.admit(socket)) {
      socket.on('error', () => {});
      socket.destroy();
      return;
    }
    rt.trackLimits(socket, limits);
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
    try {
      const target = spec.destination(socket);
      if (spec.direction === 'inbound') rt.inboundAcceptor.accept(socket, target);
      else dispatch(rt, spec.name, socket, target, spec.protocol, null);
    } catch (err) {
      // A fault of the handler that took the connection (fault.ts): this connection only.
      reportFault(rt.faults[spec.direction], 'accept', err);
      socket.destroy();
    }
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

function listenerLimits(rt: ProxyRuntime, spec: ListenerSpec): ConnectionLimits {
  const configured = rt.config.connections;
  const max = configured.maxPerListener ?? defaultMaxConnections(openFilesLimit());
  const perPeer = configured.maxPerPeer ?? (spec.direction === 'inbound' ? Math.floor(max / 4) : 0);
  const log = rt.log.child({ listener: spec.name });
  return new ConnectionLimits({
    max,
    maxPerPeer: perPeer,
    onLimit: (limit, action) => rt.metrics.connectionLimited(spec.direction, limit, action),
    log: (msg, fields) => log.warn(msg, fields),
  });
}

/**
 * Outbound: detects the protocol of a connection (unless known) and hands it to its handler. A
 * client that stays silent past the detection timeout is taken for a server-first protocol's
 * client: its destination is remembered as opaque (under `scope`, the listener it came through, so
 * that one listener's connections never change another's) and forwarded as opaque TCP.
 */
export function dispatch(
  rt: ProxyRuntime,
  scope: string,
  socket: net.Socket,
  target: Target | null,
  hint: ProtocolHint,
  initial: Buffer | null,
  /** A connection to target already made (CONNECT connects before answering 200). */
  upstream: net.Socket | null = null,
  /** Where `upstream` goes: the endpoint picked for a logical target, else target itself. */
  upstreamAddress: Target | null = null,
): void {
  const dir: Direction = 'outbound';
  if (hint === 'opaque')
    return handle(rt, socket, target, 'opaque', 'configured', initial, upstream, upstreamAddress);
  if (hint === 'http1' || hint === 'h2')
    return handle(rt, socket, target, hint, 'configured', initial, upstream, upstreamAddress);
  if (target !== null && rt.opaquePorts.has(target.port)) {
    return handle(rt, socket, target, 'opaque', 'opaque-port', initial, upstream, upstreamAddress);
  }
  const cacheKey = target === null ? null : `${scope} ${targetKey(target)}`;
  if (cacheKey !== null && rt.opaqueCache.has(cacheKey)) {
    return handle(rt, socket, target, 'opaque', 'cached-opaque', initial, upstream, upstreamAddress);
  }
  readFirstBytes(rt.faults.outbound, socket, initial, rt.config.detect.timeoutMs, (r) => {
    switch (r.kind) {
      case 'decided': {
        const d = r.detection;
        handle(rt, socket, target, d.kind, 'detected', r.buf, upstream, upstreamAddress);
        return;
      }
      case 'timeout':
        // Nothing (or too little) arrived: a server-first protocol. Remember it, so only the first
        // connection to this destination waits.
        if (cacheKey !== null) rt.opaqueCache.add(cacheKey);
        rt.metrics.proxyError(dir, 'detect-timeout');
        handle(rt, socket, target, 'opaque', 'timeout', r.buf, upstream, upstreamAddress);
        return;
      case 'ended':
        // The client finished sending before we could tell: forward what there is as opaque bytes.
        rt.metrics.detected(dir, 'opaque', 'closed');
        if (target === null) {
          socket.destroy();
          upstream?.destroy();
        } else handle(rt, socket, target, 'opaque', null, r.buf, upstream, upstreamAddress);
        return;
      case 'closed':
        // Reset (or destroyed) while undecided: nothing to forward, and nothing learnt about the
        // destination (a TCP probe that connects and resets must not mark it opaque).
        rt.metrics.detected(dir, 'opaque', 'closed');
        upstream?.destroy();
        return;
    }
  });
}

/** Counts the detection and hands the connection to its outbound path (outbound/stack.ts). */
function handle(
  rt: ProxyRuntime,
  socket: net.Socket,
  target: Target | null,
  protocol: DetectedProtocol,
  outcome: DetectOutcome | null,
  initial: Buffer | null,
  upstream: net.Socket | null,
  upstreamAddress: Target | null,
): void {
  if (outcome !== null) rt.metrics.detected('outbound', protocol, outcome);
  if (protocol !== 'http1') rt.connectionBusy(socket); // HTTP/1 sessions say it per request
  const paths = rt.outboundPaths;
  if (upstream !== null) {
    paths.tunnel(socket, target, protocol, initial, upstream, upstreamAddress);
    return;
  }
  switch (protocol) {
    case 'http1':
      paths.http1(socket, target, initial);
      return;
    case 'h2':
      paths.h2(socket, target, initial);
      return;
    case 'tls':
    case 'opaque':
      paths.tcp(socket, target, initial);
      return;
  }
}
