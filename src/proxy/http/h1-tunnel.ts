// The HTTP/1 exchanges that end the session's handling of a connection and turn it into a byte
// tunnel: CONNECT (the proxy connects first, so the client hears 502/503/504 rather than 200 and a
// close, then the listener runs detection inside the tunnel) and Upgrade (the upstream's 101 is
// passed on and the two connections are spliced). The session (h1-session.ts) decides when; this
// file owns the refusals, the connect and the hand-over.
import type net from 'node:net';
import type { ProxyErrorReason } from '../errors.ts';
import { targetKey, type Target } from '../../core/target.ts';
import type { MessageHead } from './h1-parser.ts';
import { serializeResponseHead } from './h1-serialize.ts';
import type { H1Context } from './h1-context.ts';

/** What the tunnel asks of the session whose connection it takes over. */
export interface TunnelOwner {
  /** The client's connection is gone (a late connect is closed). */
  isClosed(): boolean;
  /** Answers the request with a response the proxy makes itself; the exchange ends. */
  refuse(reason: ProxyErrorReason, message: string): void;
  /** The exchange waits for its tunnel's connection. */
  awaitTunnel(): void;
  /**
   * Records the exchange as answered with `status` and stops handling the connection: returns
   * what the client sent after the request head (it belongs to the tunnel), or null.
   */
  handOver(status: number): Buffer | null;
}

/** An inbound Upgrade the gate watches once spliced (policy/inbound-hooks.ts). */
export interface UpgradeWatch {
  readonly port: number;
  readonly identity: string | null;
  readonly method: string;
  readonly path: string;
}

/**
 * CONNECT: connects first, so that the client hears 502/503/504 rather than 200 and a close. A
 * logical name is resolved and the tunnel connects to the endpoint picked for it (plain or over
 * the mesh: the context's tunnels, which only the outbound stack has).
 */
export function startConnect(
  ctx: H1Context,
  owner: TunnelOwner,
  socket: net.Socket,
  connTarget: Target | null,
  head: MessageHead,
): void {
  const tunnels = ctx.tunnels;
  if (tunnels === null) {
    // Inbound: the listener forwards only to its own app, never where a client asks.
    owner.refuse('proxy-request-refused', 'CONNECT is not relayed by an inbound listener');
    return;
  }
  if (connTarget !== null) {
    // A listener bound for one destination (--destination, transparent outbound) forwards only
    // there: only the HTTP proxy listener connects where a client asks.
    const to = targetKey(connTarget);
    owner.refuse('proxy-request-refused', `CONNECT is not relayed by a listener bound for ${to}`);
    return;
  }
  const t = head.target;
  const colon = t.lastIndexOf(':');
  let host = t.slice(0, colon);
  if (host.startsWith('[')) host = host.slice(1, -1);
  const target: Target = { host, port: Number(t.slice(colon + 1)) };
  if (target.port < 1 || target.port > 65535) {
    owner.refuse('bad-request', 'invalid CONNECT port');
    return;
  }
  if (tunnels.isLoop(target)) {
    owner.refuse('loop-detected', 'CONNECT to the proxy itself');
    return;
  }
  owner.awaitTunnel();
  socket.pause();
  tunnels.connect(target, (upstream, pick, reason, err) => {
    if (owner.isClosed()) {
      upstream?.destroy();
      return;
    }
    if (upstream === null || pick === null) {
      owner.refuse(reason!, `CONNECT ${t}: ${reason}${err ? ` (${err.message})` : ''}`);
      return;
    }
    const rest = owner.handOver(200);
    socket.write('HTTP/1.1 200 Connection established\r\n\r\n');
    socket.resume();
    tunnels.handOver(socket, target, rest, upstream, pick.address);
  });
}

/**
 * Upgrade: the upstream's 101 `head` goes to the client and the two connections become one byte
 * tunnel; `toDown` is what the upstream sent after its 101. The upstream connection has left its
 * pool (H1Upstream.takeForTunnel).
 */
export function startUpgrade(
  ctx: H1Context,
  owner: TunnelOwner,
  socket: net.Socket,
  upstream: net.Socket,
  head: MessageHead,
  toDown: Buffer | null,
  watch: UpgradeWatch | null,
): void {
  socket.write(serializeResponseHead(head, 'as-is', 'upgrade'), 'latin1');
  const gate = ctx.gate;
  if (gate !== null && watch !== null)
    gate.watchUpgrade(
      socket,
      watch.port,
      watch.identity,
      socket.remoteAddress ?? '',
      watch.method,
      watch.path,
    );
  const toUp = owner.handOver(101);
  ctx.splice(socket, upstream, toUp, toDown);
}
