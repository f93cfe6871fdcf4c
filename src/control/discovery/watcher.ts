// The discovery seam of the control plane (linkerd2's watchers): one Watcher interface with two
// sources, the local state folder (`trellis up`) and the Kubernetes API. Both run through one
// shared contract test suite (test/unit/watcher-contract.ts).
//
// A subscription names a service port, or a destination address (IP:port: what a transparently
// proxied connection was going to); the watcher delivers the same updates the proxy's resolver
// consumes (src/core/endpoints.ts): reset / add / remove / does-not-exist.
import { isIP } from 'node:net';
import type { Endpoint, Update } from '../../core/endpoints.ts';

export type { Endpoint, Update };

export interface ServicePortKey {
  readonly namespace: string;
  readonly name: string;
  /** The service port clients connect to. */
  readonly port: number;
}

/** A destination address: an IP literal (IPv6 without brackets) and a port. */
export interface AddressKey {
  readonly host: string;
  readonly port: number;
}

export interface Subscription {
  /** Stops the updates; no listener call happens after it returns. */
  unsubscribe(): void;
}

export interface Watcher {
  /**
   * Subscribes to a service port. The first update (delivered asynchronously, never from inside
   * subscribe) is a `reset` with the current endpoints, or `does-not-exist`; later updates follow
   * changes in order.
   */
  subscribe(key: ServicePortKey, listener: (update: Update) => void): Subscription;
  /**
   * Subscribes to a destination address (linkerd's lookup of an original destination IP). What
   * the address is decides the endpoints:
   * - a Service's virtual IP (a ClusterIP) and one of its ports: that service port's endpoints,
   *   exactly as `subscribe` gives them (an empty reset when it has none);
   * - a known workload's address and port (a running, ready pod's IP; a registered workload):
   *   that one endpoint as discovery describes it (meshed, identity, protocol hint, labels);
   * - anything else: the address itself, unmeshed (`plainEndpoint`).
   * The first update (asynchronous) is always a `reset`, never `does-not-exist`; later updates
   * follow changes, including the address becoming or ceasing to be one of the above.
   * Optional: the Destination service answers every address with itself for a watcher without it.
   */
  subscribeAddress?(address: AddressKey, listener: (update: Update) => void): Subscription;
  /** Resolves once the source has synced its initial state. */
  ready(): Promise<void>;
  close(): Promise<void>;
}

/** An address as its own only endpoint: what discovery knows of an address it does not know. */
export function plainEndpoint(address: AddressKey): Endpoint {
  return {
    address: { host: address.host, port: address.port },
    weight: 1,
    labels: {},
    meshed: false,
    identity: null,
    protocolHint: 'unknown',
  };
}

/**
 * One spelling per IP, to compare addresses from different sources: IPv6 compressed and
 * lower-case as RFC 5952 writes it ("FD00:0::01" -> "fd00::1"); anything else unchanged.
 */
export function canonicalIp(host: string): string {
  if (isIP(host) !== 6) return host;
  try {
    return new URL(`http://[${host}]/`).hostname.slice(1, -1);
  } catch {
    return host;
  }
}
