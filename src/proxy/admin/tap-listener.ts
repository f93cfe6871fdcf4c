// The proxy's mTLS tap listener (`--tap-listen`, port 4190 on Kubernetes; Linkerd's tap server):
// the same live taps as the admin listener's GET /tap (tap-route.ts, same hub and bounds), for a
// caller on the network that proves who it is. TLS 1.3 with the proxy's own workload certificate
// (the current one of its identity: a renewed certificate serves new connections, established
// ones keep theirs, as on the inbound side, mesh/inbound.ts); the caller must present a
// certificate that leads to the proxy's trust anchors (node:tls refuses anything else in the
// handshake) and whose SPIFFE ID is one of `allowed` (by default the control plane's, see
// src/core/spiffe.ts controlPlaneId), else every request gets 403.
//
// Refusals are counted in trellis_tap_refused_total{reason}: identity (a verified certificate of
// another identity), handshake (no certificate, another CA, an expired one, not TLS, too slow),
// no-certificate (the proxy has none yet); each kind is logged at most once per 10 s.
// Bounds: the handshake must finish within handshakeTimeoutMs, and the request head arrive within
// requestTimeoutMs of it (an idle connection is closed then); connections at once, in all and per
// peer address (at a limit the oldest not yet authenticated makes room, counted with the admin
// listener's); taps at once, events per second and unread bytes are the hub's.
import net from 'node:net';
import tls from 'node:tls';
import type { Logger } from '../../core/log.ts';
import { LogThrottle } from '../../core/log-rate-limit.ts';
import { spiffeUriSan } from '../../core/spiffe.ts';
import { mutualTlsServerOptions, type CertifiedKey, type WorkloadIdentity } from '../identity/provider.ts';
import type { TapHub, TapListenerRefusal } from '../telemetry/tap-hub.ts';
import { ConnectionLimits, type LimitAction, type LimitKind } from '../transport/connection-limits.ts';
import { connectionKey } from '../mesh/inbound.ts';
import { bindListener, closeOnce, serveConnection, text, type Route } from './server.ts';
import { tapRoute } from './tap-route.ts';

export interface TapListenerOptions {
  readonly listen: { host: string; port: number };
  /** The proxy's identity: its current certificate is the server's, its trust anchors the clients'. */
  readonly identity: WorkloadIdentity;
  /** The SPIFFE IDs that may tap. */
  readonly allowed: ReadonlySet<string>;
  readonly hub: TapHub;
  readonly log: Logger;
  /** Time a TLS handshake may take (default 10 s). */
  readonly handshakeTimeoutMs?: number;
  /** Time the request may take to arrive after the handshake (default 10 s). */
  readonly requestTimeoutMs?: number;
  /** Connections at once (default 32) and from one peer address (default 16). */
  readonly maxConnections?: number;
  readonly maxPerPeer?: number;
  readonly onConnectionLimit?: (limit: LimitKind, action: LimitAction) => void;
}

export interface TapListener {
  readonly address: { host: string; port: number };
  close(): Promise<void>;
}

export const TAP_LISTENER_DEFAULTS = {
  handshakeTimeoutMs: 10_000,
  requestTimeoutMs: 10_000,
  maxConnections: 32,
  maxPerPeer: 16,
} as const;

export async function startTapListener(opts: TapListenerOptions): Promise<TapListener> {
  const log = opts.log;
  const handshakeMs = opts.handshakeTimeoutMs ?? TAP_LISTENER_DEFAULTS.handshakeTimeoutMs;
  const requestMs = opts.requestTimeoutMs ?? TAP_LISTENER_DEFAULTS.requestTimeoutMs;
  const allowedRoutes = new Map<string, Route>([['/tap', tapRoute(opts.hub, log, true)]]);
  const throttles: Record<TapListenerRefusal, LogThrottle> = {
    identity: new LogThrottle(),
    handshake: new LogThrottle(),
    'no-certificate': new LogThrottle(),
  };
  const refuse = (reason: TapListenerRefusal, fields: Record<string, unknown>): void => {
    opts.hub.refusedAtTapListener(reason);
    throttles[reason].note((skipped) =>
      log.warn(`tap listener: refused a caller (${reason})`, { ...fields, skipped }),
    );
  };
  const limits = new ConnectionLimits({
    max: opts.maxConnections ?? TAP_LISTENER_DEFAULTS.maxConnections,
    maxPerPeer: opts.maxPerPeer ?? TAP_LISTENER_DEFAULTS.maxPerPeer,
    onLimit: (limit, action) => opts.onConnectionLimit?.(limit, action),
    log: (msg, fields) => log.warn(`tap listener: ${msg}`, fields),
  });
  const sockets = new Set<net.Socket>();
  /** Accepted sockets in their handshake, by connectionKey (node:tls wraps them out of sight). */
  const pending = new Map<string, net.Socket>();
  const tlsServers = new WeakMap<CertifiedKey, tls.Server>();
  const takePending = (socket: net.Socket): net.Socket | undefined => {
    const ck = connectionKey(socket);
    const raw = ck === null ? undefined : pending.get(ck);
    if (ck !== null) pending.delete(ck);
    return raw;
  };

  const onSecure = (socket: tls.TLSSocket): void => {
    const raw = takePending(socket);
    socket.on('error', () => {});
    if (raw === undefined) {
      socket.destroy();
      return;
    }
    socket.once('close', () => raw.destroy());
    if (!socket.authorized) {
      // node:tls refuses these in the handshake already (rejectUnauthorized); never let one by.
      refuse('handshake', { peer: raw.remoteAddress, err: String(socket.authorizationError) });
      socket.destroy();
      return;
    }
    const identity = spiffeUriSan(socket.getPeerX509Certificate()?.subjectAltName);
    if (identity === null || !opts.allowed.has(identity)) {
      refuse('identity', { peer: raw.remoteAddress, identity });
      const refusal = text(
        403,
        `${identity ?? 'a certificate without a SPIFFE ID'} may not tap this proxy\n`,
      );
      const routes = new Map<string, Route>([['/tap', { methods: ['GET'], handle: () => refusal }]]);
      serveConnection(socket, routes, log, requestMs);
      return;
    }
    // An authenticated caller is not shed to make room (its request deadline still applies).
    limits.busy(raw);
    serveConnection(socket, allowedRoutes, log, requestMs);
  };

  const tlsServerFor = (key: CertifiedKey): tls.Server => {
    let server = tlsServers.get(key);
    if (server !== undefined) return server;
    server = new tls.Server(mutualTlsServerOptions(key, handshakeMs));
    server.on('secureConnection', onSecure);
    // No certificate, one of another CA or expired, not TLS, too slow: node:tls ends the handshake.
    server.on('tlsClientError', (err: Error, socket: tls.TLSSocket) => {
      const raw = takePending(socket);
      refuse('handshake', { peer: socket.remoteAddress, err: err.message });
      socket.destroy();
      raw?.destroy();
    });
    tlsServers.set(key, server);
    return server;
  };

  const server = net.createServer((socket) => {
    socket.on('error', () => {});
    if (!limits.admit(socket)) {
      socket.destroy();
      return;
    }
    const key = opts.identity.current();
    const ck = connectionKey(socket);
    if (key === null || ck === null) {
      if (key === null) refuse('no-certificate', { peer: socket.remoteAddress });
      socket.destroy();
      return;
    }
    sockets.add(socket);
    pending.set(ck, socket);
    socket.once('close', () => {
      sockets.delete(socket);
      if (pending.get(ck) === socket) pending.delete(ck);
    });
    tlsServerFor(key).emit('connection', socket);
  });

  const address = await bindListener(server, opts.listen, 'TRELLIS_ERR_TAP_LISTEN', 'tap listener', log);
  log.info('mTLS tap listening', { address: `${address.host}:${address.port}`, allowed: [...opts.allowed] });
  return { address, close: closeOnce(server, sockets) };
}
