// Outbound mTLS connections to meshed endpoints: TLS 1.3 only, our certificate, the trust anchors
// as the only CAs, ALPN naming the inner protocol, and the server's certificate checked to carry
// the identity discovery said to expect (its spiffe:// URI SAN). Failures are told apart, so the
// client hears why: `identity-mismatch` (the peer is someone else: nothing is sent to it),
// `tls-handshake-failed` (certificates refused either way, no common protocol), `connect-failed`
// / `connect-timeout` (TCP), `no-identity` (our own certificate did not arrive in time).
import net from 'node:net';
import tls from 'node:tls';
import { TrellisError } from '../../core/errors.ts';
import type { ConnectFailureReason } from '../errors.ts';
import type { CertifiedKey } from '../identity/provider.ts';
import { spiffeUriSan, uriSans } from '../../core/spiffe.ts';
import type { ProxyMetrics } from '../telemetry/metrics.ts';
import type { Target } from '../../core/target.ts';
import { targetKey } from '../../core/target.ts';
import type { MeshCredentials } from './credentials.ts';
import { ALPN_TCP, markMeshSocket } from './protocol.ts';

export const IDENTITY_MISMATCH_CODE = 'TRELLIS_ERR_IDENTITY_MISMATCH';

/** What outbound mesh connections need from the proxy. */
export interface MeshClientContext {
  readonly credentials: MeshCredentials;
  readonly metrics: Pick<ProxyMetrics, 'meshConnection' | 'tlsHandshakeFailed'>;
}

/** Why a mesh socket failed, by the error it emitted (set by the socket's first error listener). */
const failures = new WeakMap<Error, ConnectFailureReason>();
/** Mesh sockets whose handshake completed on our side. */
const securedSockets = new WeakSet<net.Socket>();

export function meshFailureOf(err: unknown): ConnectFailureReason | undefined {
  return err instanceof Error ? failures.get(err) : undefined;
}

/**
 * Why a mesh connection closed before its peer said anything, when that is a handshake failure:
 * in TLS 1.3 the client finishes first, and a server that refuses the client's certificate
 * (node:tls) just closes the connection after its verification.
 */
export function closedAfterHandshake(
  ctx: MeshClientContext,
  socket: net.Socket,
): ConnectFailureReason | undefined {
  if (!securedSockets.has(socket)) return undefined;
  ctx.metrics.tlsHandshakeFailed('outbound');
  return 'tls-handshake-failed';
}

/** checkServerIdentity for an expected SPIFFE ID (the chain was verified before this runs). */
export function checkPeerIdentity(expected: string, cert: tls.PeerCertificate): Error | undefined {
  if (uriSans(cert.subjectaltname).includes(expected)) return undefined;
  const found = spiffeUriSan(cert.subjectaltname) ?? 'no spiffe:// URI SAN';
  return new TrellisError(IDENTITY_MISMATCH_CODE, `peer identity is ${found}, expected ${expected}`);
}

/**
 * Starts a TLS connection to a meshed endpoint with `key` (synchronously: the HTTP/2 pool's
 * createConnection needs the socket at once). Errors it emits are classified (meshFailureOf) and
 * counted; a completed handshake counts in trellis_mesh_connections_total.
 */
export function openMeshSocket(
  ctx: MeshClientContext,
  key: CertifiedKey,
  address: Target,
  identity: string,
  alpn: string,
  /** Keep writing after the peer's FIN (opaque TCP); HTTP connections close with it. */
  halfOpen: boolean,
): tls.TLSSocket {
  // Our own TCP socket under the TLS one: half-close (opaque TCP) and telling a TCP failure
  // from a handshake failure need it.
  const raw = net.connect({ host: address.host, port: address.port, noDelay: true, allowHalfOpen: halfOpen });
  let tcpUp = false;
  raw.once('connect', () => (tcpUp = true));
  // Resumes the last session with this peer when there is one (credentials.ts says why that
  // is sound although node:tls then skips checkServerIdentity).
  const peer = `${targetKey(address)} ${identity}`;
  const socket = tls.connect({
    socket: raw,
    secureContext: ctx.credentials.clientContext(key),
    minVersion: 'TLSv1.3',
    ALPNProtocols: [alpn],
    checkServerIdentity: (_host, cert) => checkPeerIdentity(identity, cert),
    session: ctx.credentials.session(key, peer),
  });
  markMeshSocket(socket);
  raw.on('error', (err) => socket.destroy(err)); // (node:tls may pass it on too: classified once)
  let secure = false;
  socket.once('secureConnect', () => {
    secure = true;
    securedSockets.add(socket);
    ctx.metrics.meshConnection('outbound', identity, socket.isSessionReused());
  });
  // TLS 1.3 tickets come after the handshake; only a connection whose peer was checked keeps one.
  socket.on('session', (session: Buffer) => {
    if (secure) ctx.credentials.rememberSession(key, peer, session);
  });
  socket.on('error', (err: Error & { code?: string }) => {
    if (failures.has(err)) return;
    let reason: ConnectFailureReason;
    if (err.code === IDENTITY_MISMATCH_CODE) reason = 'identity-mismatch';
    else if (!tcpUp) reason = 'connect-failed';
    else if (!secure || isTlsAlert(err)) reason = 'tls-handshake-failed';
    else return; // an established connection failing later: the user of the socket handles it
    failures.set(err, reason);
    if (reason !== 'connect-failed') {
      ctx.credentials.forgetSession(key, peer);
      ctx.metrics.tlsHandshakeFailed('outbound');
    }
  });
  return socket;
}

/**
 * In TLS 1.3 the client finishes its handshake before the server has checked the client's
 * certificate: a refusal arrives as an alert on the first read after 'secureConnect'.
 */
function isTlsAlert(err: { code?: string }): boolean {
  return typeof err.code === 'string' && err.code.startsWith('ERR_SSL_');
}

export type MeshConnectCallback = (
  socket: tls.TLSSocket | null,
  reason: ConnectFailureReason | null,
  err?: Error,
) => void;

/**
 * Connects to a meshed endpoint and completes the handshake: waits for our own credentials
 * (within the connect timeout), then `cb` gets the secure socket (paused), or why it failed.
 */
export function connectMesh(
  ctx: MeshClientContext,
  address: Target,
  identity: string,
  alpn: string,
  timeoutMs: number,
  cb: MeshConnectCallback,
): { cancel(): void } {
  const startedAt = Date.now();
  let settled = false;
  let socket: tls.TLSSocket | null = null;
  let timer: NodeJS.Timeout | null = null;
  const settle = (s: tls.TLSSocket | null, reason: ConnectFailureReason | null, err?: Error): void => {
    if (settled) return;
    settled = true;
    if (timer !== null) clearTimeout(timer);
    cb(s, reason, err);
  };
  const start = (key: CertifiedKey | null): void => {
    if (settled) return;
    if (key === null) {
      settle(null, 'no-identity', new Error(`no certificate for ${ctx.credentials.id} yet`));
      return;
    }
    const s = openMeshSocket(ctx, key, address, identity, alpn, alpn === ALPN_TCP);
    socket = s;
    s.pause();
    if (timeoutMs > 0) {
      const left = Math.max(1, timeoutMs - (Date.now() - startedAt));
      timer = setTimeout(() => {
        s.destroy();
        settle(null, 'connect-timeout', new Error(`mTLS connect to ${targetKey(address)} timed out`));
      }, left);
    }
    const onError = (err: Error): void => {
      s.destroy();
      settle(null, meshFailureOf(err) ?? 'connect-failed', err);
    };
    s.once('error', onError);
    s.once('secureConnect', () => {
      s.removeListener('error', onError);
      s.on('error', () => {});
      settle(s, null);
    });
  };
  const now = ctx.credentials.current();
  if (now !== null) start(now);
  else void ctx.credentials.whenReady(timeoutMs).then(start);
  return {
    cancel() {
      if (settled) return;
      settled = true;
      if (timer !== null) clearTimeout(timer);
      socket?.destroy();
    },
  };
}
