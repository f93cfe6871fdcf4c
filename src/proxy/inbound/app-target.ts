// Where an inbound connection goes in transparent mode: the app, on the port its client addressed
// (the original destination of the iptables REDIRECT, or the port a meshed peer's opaque transport
// header names), at the address the connection arrived on (the pod's own IP), unless `appHost`
// is set. One place for both ways in, so that:
// - no way in reaches a port of the proxy itself: the outbound listener (127.0.0.1:4140) would send
//   a stranger's request on as the workload's own traffic, with its identity, wherever Host named
//   (an open proxy); the admin and tap listeners would take it for a local caller;
// - nothing reaches a port the app opened on loopback only (a debug or admin port that was never
//   reachable from outside the pod before the mesh): forwarding to 127.0.0.1 would expose it to
//   anyone who can reach the pod, as Istio did before 1.10. The app also sees the pod's IP as its
//   caller, not loopback, which apps trust more;
// - the address comes from the connection's own local end, never from the original destination's
//   IP: the REDIRECT rule matches any destination IP, so an on-link attacker could name another
//   host there.
import type net from 'node:net';
import type { Target } from '../../core/target.ts';

/**
 * The app target for a transparent inbound connection `socket` addressed to `port`; null when
 * `port` is one of the proxy's own listeners (`ownPorts`), where the connection has nowhere to go,
 * or when the socket has closed already.
 */
export function transparentAppTarget(
  appHost: string | undefined,
  socket: net.Socket,
  port: number,
  ownPorts: ReadonlySet<number>,
): Target | null {
  if (ownPorts.has(port)) return null;
  if (appHost !== undefined) return { host: appHost, port };
  const local = socket.localAddress;
  if (local === undefined || local === '') return null;
  return { host: local.startsWith('::ffff:') ? local.slice(7) : local, port };
}
