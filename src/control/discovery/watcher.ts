// The discovery seam of the control plane (linkerd2's watchers): one Watcher interface with two
// sources, the local state folder (`trellis up`) and the Kubernetes API. Both run through one
// shared contract test suite (test/unit/watcher-contract.ts).
//
// A subscription names a service port; the watcher delivers the same updates the proxy's resolver
// consumes (src/proxy/resolve/resolver.ts): reset / add / remove / does-not-exist.
import type { Endpoint, Update } from '../../proxy/resolve/resolver.ts';

export type { Endpoint, Update };

export interface ServicePortKey {
  readonly namespace: string;
  readonly name: string;
  /** The service port clients connect to. */
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
  /** Resolves once the source has synced its initial state. */
  ready(): Promise<void>;
  close(): Promise<void>;
}
