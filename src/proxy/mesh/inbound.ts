// The inbound side of the mesh transport: a connection whose ClientHello offers a trellis-*
// protocol (seen by detection, listener.ts) is terminated here, when the proxy has an identity.
// TLS 1.3 only; the client must present a certificate that leads to our trust anchors
// (requestCert + rejectUnauthorized, enforced by node:tls); its spiffe:// URI SAN is the peer
// identity. Then, by the ALPN protocol agreed: trellis-h2/1 -> the HTTP/2 inbound path,
// trellis-h2h1/1 -> HTTP/1 requests over the own HTTP/2 (inbound-h2h1.ts), trellis-http1/1 -> the HTTP/1 inbound path, trellis-tcp/1 -> the opaque transport header
// (protocol.ts), then bytes to the app port it names, if that port is allowed.
//
// One tls.Server per CertifiedKey (never listening: accepted sockets are handed to it with the
// bytes detection read put back), so a renewed certificate serves new connections while the
// established ones keep theirs.
import type net from 'node:net';
import tls from 'node:tls';
import type { Logger } from '../../core/log.ts';
import { mutualTlsServerOptions, type CertifiedKey } from '../identity/provider.ts';
import { spiffeUriSan } from '../../core/spiffe.ts';
import type { ProxyMetrics } from '../telemetry/metrics.ts';
import type { Target } from '../../core/target.ts';
import type { MeshCredentials } from './credentials.ts';
import { ALPN_H2, ALPN_H2H1, ALPN_HTTP1, ALPN_TCP, MESH_ALPNS, parseTcpHeader } from './protocol.ts';

export interface MeshInboundOptions {
  readonly credentials: MeshCredentials;
  readonly metrics: Pick<ProxyMetrics, 'meshConnection' | 'tlsHandshakeFailed'>;
  readonly log: Logger;
  /** How long a handshake (and the opaque transport header after it) may take. */
  readonly handshakeTimeoutMs: number;
  /** An HTTP/2 connection (trellis-h2/1) from `identity`, going to `target`. */
  h2(socket: tls.TLSSocket, target: Target | null, identity: string): void;
  /** HTTP/1 requests as streams of the own HTTP/2 connection (trellis-h2h1/1). */
  h2h1(socket: tls.TLSSocket, target: Target | null, identity: string): void;
  /** An HTTP/1 connection (trellis-http1/1). */
  http1(socket: tls.TLSSocket, target: Target | null, identity: string): void;
  /** Opaque bytes for the app port `port` (trellis-tcp/1); `rest`: bytes after the header. */
  tcp(socket: tls.TLSSocket, target: Target | null, identity: string, port: number, rest: Buffer): void;
}

/** What the tls.Server needs to find again for a socket it hands back after the handshake. */
interface Pending {
  readonly raw: net.Socket;
  readonly target: Target | null;
}

/**
 * The TCP connection's four-tuple: the same for the accepted socket and the TLSSocket node:tls
 * wraps around it (it reads the addresses through), unique while the connection is open.
 */
export function connectionKey(s: net.Socket): string | null {
  const { remoteAddress, remotePort, localAddress, localPort } = s;
  if (remoteAddress === undefined || remotePort === undefined) return null;
  return `${remoteAddress} ${remotePort} ${localAddress ?? ''} ${localPort ?? ''}`;
}

export class MeshInbound {
  private readonly opts: MeshInboundOptions;
  private readonly servers = new WeakMap<CertifiedKey, tls.Server>();
  /** Accepted sockets in their handshake, by connectionKey. */
  private readonly pending = new Map<string, Pending>();

  constructor(opts: MeshInboundOptions) {
    this.opts = opts;
  }

  /**
   * Terminates mTLS on an accepted connection; `initial` are the bytes detection already read
   * (the ClientHello). Closes the connection when the proxy has no certificate yet.
   */
  accept(socket: net.Socket, initial: Buffer, target: Target | null): void {
    const key = this.opts.credentials.current();
    if (key === null) {
      this.opts.metrics.tlsHandshakeFailed('inbound');
      this.opts.log.debug('mTLS connection refused: no certificate yet');
      socket.destroy();
      return;
    }
    const ck = connectionKey(socket);
    if (ck === null) {
      socket.destroy(); // already closed
      return;
    }
    socket.pause();
    if (initial.length > 0) socket.unshift(initial);
    this.pending.set(ck, { raw: socket, target });
    socket.once('close', () => {
      if (this.pending.get(ck)?.raw === socket) this.pending.delete(ck);
    });
    this.serverFor(key).emit('connection', socket);
  }

  private serverFor(key: CertifiedKey): tls.Server {
    let server = this.servers.get(key);
    if (server !== undefined) return server;
    const handshakeMs = this.opts.handshakeTimeoutMs > 0 ? this.opts.handshakeTimeoutMs : 10_000;
    server = new tls.Server({
      ...mutualTlsServerOptions(key, handshakeMs),
      ALPNProtocols: [...MESH_ALPNS],
      allowHalfOpen: true,
    });
    server.on('secureConnection', (socket: tls.TLSSocket) => this.onSecure(socket));
    server.on('tlsClientError', (err: Error, socket: tls.TLSSocket) => {
      this.opts.metrics.tlsHandshakeFailed('inbound');
      this.opts.log.debug('inbound mTLS handshake failed', { err, peer: socket.remoteAddress });
      const ck = connectionKey(socket);
      const raw = ck === null ? undefined : this.pending.get(ck)?.raw;
      if (ck !== null) this.pending.delete(ck);
      socket.destroy();
      raw?.destroy();
    });
    this.servers.set(key, server);
    return server;
  }

  private onSecure(socket: tls.TLSSocket): void {
    // The accepted socket (and what it was for) by the connection's addresses, which the
    // TLSSocket reports as its own.
    const ck = connectionKey(socket);
    const pending = ck === null ? undefined : this.pending.get(ck);
    const identity = peerIdentity(socket);
    if (pending === undefined || identity === null) {
      this.opts.metrics.tlsHandshakeFailed('inbound');
      socket.destroy();
      return;
    }
    this.pending.delete(ck!);
    const raw = pending.raw;
    // Closing one closes the other: the listener counts the accepted socket.
    socket.once('close', () => raw.destroy());
    socket.on('error', () => {});
    this.opts.metrics.meshConnection('inbound', identity, socket.isSessionReused());
    switch (socket.alpnProtocol) {
      case ALPN_H2:
        this.opts.h2(socket, pending.target, identity);
        return;
      case ALPN_H2H1:
        this.opts.h2h1(socket, pending.target, identity);
        return;
      case ALPN_HTTP1:
        this.opts.http1(socket, pending.target, identity);
        return;
      case ALPN_TCP:
        this.readTcpHeader(socket, pending.target, identity);
        return;
      default:
        socket.destroy();
    }
  }

  /** Reads and checks the opaque transport header; garbage or silence closes the connection. */
  private readTcpHeader(socket: tls.TLSSocket, target: Target | null, identity: string): void {
    let buf: Buffer | null = null;
    const timer = setTimeout(() => socket.destroy(), this.opts.handshakeTimeoutMs || 10_000);
    const onData = (chunk: Buffer): void => {
      buf = buf === null ? chunk : Buffer.concat([buf, chunk]);
      const r = parseTcpHeader(buf);
      if (r.status === 'need-more') return;
      clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.removeListener('close', onClose);
      socket.pause();
      if (r.status === 'error') {
        this.opts.log.debug('opaque transport header refused', { reason: r.reason, identity });
        socket.destroy();
        return;
      }
      this.opts.tcp(socket, target, identity, r.port, r.rest);
    };
    const onClose = (): void => clearTimeout(timer);
    socket.on('data', onData);
    socket.once('close', onClose);
  }
}

/** The spiffe:// URI SAN of the client's (verified) certificate. */
function peerIdentity(socket: tls.TLSSocket): string | null {
  const cert = socket.getPeerX509Certificate();
  if (cert === undefined) return null;
  return spiffeUriSan(cert.subjectAltName);
}
