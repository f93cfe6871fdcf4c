// An in-memory Watcher (src/control/discovery/watcher.ts) for the control-plane benchmark
// (control-plane.ts): services and their endpoints live in maps that the benchmark changes
// directly, so a measurement times the Destination server's fan-out to its Watch streams and not
// a file system or the Kubernetes API. Changes reach every subscriber synchronously, in order;
// the first update of a subscription (its reset) is delivered asynchronously, as the interface
// asks.
import { targetKey } from '../src/core/target.ts';
import type {
  Endpoint,
  ServicePortKey,
  Subscription,
  Update,
  Watcher,
} from '../src/control/discovery/watcher.ts';

interface MemorySubscription {
  readonly listener: (update: Update) => void;
  active: boolean;
  /** True once the first update (reset or does-not-exist) went out. */
  started: boolean;
}

interface MemoryService {
  /** Endpoints by address key ("host:port"). */
  readonly endpoints: Map<string, Endpoint>;
  readonly subscriptions: Set<MemorySubscription>;
}

/** "namespace/name:port": one map key per service port. */
function serviceKey(key: ServicePortKey): string {
  return `${key.namespace}/${key.name}:${key.port}`;
}

export class MemoryWatcher implements Watcher {
  readonly #services = new Map<string, MemoryService>();
  readonly #ready = Promise.resolve();
  #closed = false;
  /** Listener calls that threw (a bug in the server under test; the benchmark reports it). */
  listenerErrors = 0;

  ready(): Promise<void> {
    return this.#ready;
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const service of this.#services.values()) {
      for (const subscription of service.subscriptions) subscription.active = false;
      service.subscriptions.clear();
    }
  }

  /** Subscriptions currently open over all service ports. */
  get subscriptionCount(): number {
    let n = 0;
    for (const service of this.#services.values()) n += service.subscriptions.size;
    return n;
  }

  /** Endpoints held over all service ports. */
  get endpointCount(): number {
    let n = 0;
    for (const service of this.#services.values()) n += service.endpoints.size;
    return n;
  }

  subscribe(key: ServicePortKey, listener: (update: Update) => void): Subscription {
    const subscription: MemorySubscription = { listener, active: !this.#closed, started: false };
    if (subscription.active) {
      const service = this.#serviceFor(key);
      service.subscriptions.add(subscription);
      queueMicrotask(() => {
        if (!subscription.active) return;
        subscription.started = true;
        // A service port with no endpoint was never defined here: it does not exist.
        this.#deliver(
          subscription,
          service.endpoints.size > 0
            ? { kind: 'reset', endpoints: Array.from(service.endpoints.values()) }
            : { kind: 'does-not-exist' },
        );
      });
    }
    return {
      unsubscribe: () => {
        subscription.active = false;
        this.#services.get(serviceKey(key))?.subscriptions.delete(subscription);
      },
    };
  }

  /** Adds (or replaces) endpoints of a service port and tells its subscribers. */
  addEndpoints(key: ServicePortKey, endpoints: readonly Endpoint[]): void {
    if (this.#closed || endpoints.length === 0) return;
    const service = this.#serviceFor(key);
    for (const endpoint of endpoints) service.endpoints.set(targetKey(endpoint.address), endpoint);
    this.#broadcast(service, { kind: 'add', endpoints });
  }

  /** Removes endpoints by address key ("host:port"); tells the subscribers about the ones it held. */
  removeEndpoints(key: ServicePortKey, addresses: readonly string[]): void {
    const service = this.#services.get(serviceKey(key));
    if (this.#closed || service === undefined) return;
    const removed = addresses.filter((address) => service.endpoints.delete(address));
    if (removed.length > 0) this.#broadcast(service, { kind: 'remove', addresses: removed });
  }

  /** The number of open subscriptions to one service port. */
  subscribersOf(key: ServicePortKey): number {
    return this.#services.get(serviceKey(key))?.subscriptions.size ?? 0;
  }

  #serviceFor(key: ServicePortKey): MemoryService {
    const k = serviceKey(key);
    let service = this.#services.get(k);
    if (service === undefined) {
      service = { endpoints: new Map(), subscriptions: new Set() };
      this.#services.set(k, service);
    }
    return service;
  }

  #broadcast(service: MemoryService, update: Update): void {
    // Subscriptions still waiting for their first update get the change inside their reset.
    for (const subscription of service.subscriptions) {
      if (subscription.started) this.#deliver(subscription, update);
    }
  }

  #deliver(subscription: MemorySubscription, update: Update): void {
    if (!subscription.active) return;
    try {
      subscription.listener(update);
    } catch {
      this.listenerErrors++;
    }
  }
}
