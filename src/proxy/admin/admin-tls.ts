// Mutual TLS on the admin listener, for the one caller that is not on this host but may tap: the
// control plane on Kubernetes (docs/security.md, "Who may tap a proxy"). A connection whose first
// byte is a TLS handshake record is terminated with the proxy's own certificate, and the client
// must present one that chains to the trust anchors (TLS 1.3, requestCert + rejectUnauthorized,
// enforced by node:tls); its spiffe:// URI SAN is the connection's verified identity, which the
// admin's routes may ask for (GET /tap allows the control plane's). Anything else is served in
// plain text as before; a failed handshake closes the connection. Without credentials (the proxy
// has no identity, or no certificate yet) a TLS connection is closed at once.
import type net from 'node:net';
import tls from 'node:tls';
import { spiffeUriSan } from '../../core/spiffe.ts';
import type { Logger } from '../../core/log.ts';
import type { CertifiedKey } from '../identity/provider.ts';

/** The first byte of a TLS record carrying a handshake (a ClientHello). */
const TLS_HANDSHAKE = 0x16;
const HANDSHAKE_TIMEOUT_MS = 10_000;

export interface AdminTlsOptions {
  /** The proxy's current credentials; null while it has none. */
  readonly credentials: () => CertifiedKey | null;
  /** Serves a connection: the plain socket (identity null), or the TLS one and the client's identity. */
  readonly serve: (socket: net.Socket, identity: string | null) => void;
  readonly log: Logger;
}

/** Sorts admin connections by their first byte, and terminates the TLS ones (one tls.Server per key). */
export class AdminTls {
  private readonly opts: AdminTlsOptions;
  private readonly servers = new WeakMap<CertifiedKey, tls.Server>();

  constructor(opts: AdminTlsOptions) {
    this.opts = opts;
  }

  accept(socket: net.Socket): void {
    // The first bytes must come within the handshake's time, as a request's must (server.ts).
    const silent = setTimeout(() => socket.destroy(), HANDSHAKE_TIMEOUT_MS);
    socket.once('close', () => clearTimeout(silent));
    socket.once('data', (first: Buffer) => {
      clearTimeout(silent);
      socket.pause();
      socket.unshift(first);
      if (first[0] !== TLS_HANDSHAKE) {
        this.opts.serve(socket, null);
        socket.resume();
        return;
      }
      const key = this.opts.credentials();
      if (key === null) {
        socket.destroy();
        return;
      }
      // The tls.Server reads what was put back (a TLSSocket made directly on the socket would not).
      this.serverFor(key).emit('connection', socket);
    });
  }

  private serverFor(key: CertifiedKey): tls.Server {
    let server = this.servers.get(key);
    if (server !== undefined) return server;
    server = new tls.Server({
      key: key.keyPem,
      cert: key.chainPem,
      ca: key.trustAnchorsPem,
      minVersion: 'TLSv1.3',
      requestCert: true,
      rejectUnauthorized: true,
      handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
    });
    server.on('secureConnection', (secure: tls.TLSSocket) => {
      const cert = secure.getPeerX509Certificate();
      const identity = cert === undefined ? null : spiffeUriSan(cert.subjectAltName);
      if (!secure.authorized || identity === null) {
        secure.destroy();
        return;
      }
      secure.on('error', () => {});
      this.opts.serve(secure, identity);
    });
    server.on('tlsClientError', (err: Error, secure: tls.TLSSocket) => {
      this.opts.log.debug('admin: TLS handshake failed', { err, peer: secure.remoteAddress });
      secure.destroy();
    });
    this.servers.set(key, server);
    return server;
  }
}
