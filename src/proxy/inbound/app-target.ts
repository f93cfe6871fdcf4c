// Where an inbound connection goes in transparent mode: the app, on the port its client addressed
// (the original destination of the iptables REDIRECT, or the port a meshed peer's opaque transport
// header names), on appHost. One place for both, so that no way in reaches a port of the proxy
// itself: the outbound listener (127.0.0.1:4140) would send a stranger's request on as the
// workload's own traffic, with its identity, wherever Host named (an open proxy); the admin and
// tap listeners would take it for a local caller.
import type { Target } from '../../core/target.ts';

/**
 * The app target for a transparent inbound connection addressed to `port`; null when `port` is
 * one of the proxy's own listeners (`ownPorts`), where the connection has nowhere to go.
 */
export function transparentAppTarget(
  appHost: string,
  port: number,
  ownPorts: ReadonlySet<number>,
): Target | null {
  return ownPorts.has(port) ? null : { host: appHost, port };
}
