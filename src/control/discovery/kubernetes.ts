// The Kubernetes source of the discovery Watcher (linkerd2's endpoints watcher): informers of
// @kubernetes/client-node keep caches of Services, EndpointSlices (discovery.k8s.io/v1) and Pods,
// and each subscription to a service port is recomputed from those caches after every batch of
// changes, then delivered as the difference to what its listener saw last (reset once, then
// add/remove, or does-not-exist). Recomputing instead of forwarding events is what keeps a relist
// (410 Gone) or a resumed watch from showing a subscriber a spurious intermediate set.
//
// Translation: an endpoint is a ready address of a slice of the service (label
// kubernetes.io/service-name), with the port of the slice port named like the Service port; its
// pod (targetRef) tells the workload, whether it is meshed (annotation trellis.dev/proxy-injected
// or a trellis-proxy container) and so its SPIFFE identity; a port named opaque by appProtocol or
// the config.trellis.dev/opaque-ports annotation gets the opaque protocol hint.
//
// Address subscriptions (an original destination IP:port) are recomputed after every batch too,
// through an index of ClusterIPs and pod IPs rebuilt after Service or Pod changes: a ClusterIP and
// service port gives that service port's endpoints, a running ready pod's IP that pod (meshed or
// not, with its identity), anything else the address itself.

import {
  CoreV1Api,
  DiscoveryV1Api,
  KubeConfig,
  type KubernetesObject,
  type V1EndpointSlice,
  type V1Pod,
  type V1Service,
} from '@kubernetes/client-node';
import { TrellisError } from '../../core/errors.ts';
import { targetKey } from '../../core/target.ts';
import {
  canonicalIp,
  plainEndpoint,
  type AddressKey,
  type Endpoint,
  type ServicePortKey,
  type Subscription,
  type Update,
  type Watcher,
} from './watcher.ts';
import { ResourceInformer } from './kubernetes-informer.ts';
import {
  buildAddressIndex,
  isPodReady,
  podEndpoint,
  SERVICE_NAME_LABEL,
  translateEndpoints,
  type AddressIndex,
} from './kubernetes-translate.ts';

// What the rest of the control plane and the tests use of the translation.
export {
  buildAddressIndex,
  isMeshed,
  isPodReady,
  OPAQUE_PORTS_ANNOTATION,
  podEndpoint,
  PROXY_CONTAINER_NAME,
  PROXY_INJECTED_ANNOTATION,
  translateEndpoints,
  workloadOf,
} from './kubernetes-translate.ts';

export interface KubernetesWatcherOptions {
  readonly kubeConfig: KubeConfig;
  /** The trust domain of the SPIFFE identities of meshed endpoints. */
  readonly trustDomain: string;
  /**
   * Delay before an informer watches again after a failure or a watch that ended without events;
   * it doubles up to 30 s while nothing succeeds, and is back to this after a list or an event.
   */
  readonly retryDelayMs?: number;
  /** Told about list/watch failures (the watcher keeps retrying and serving its caches). */
  readonly onError?: (error: TrellisError) => void;
}

/**
 * A KubeConfig that talks to `server` with no credentials: https verified as usual, or plain http
 * (`kubectl proxy`, test servers), which the client only allows with skipTLSVerify set.
 */
export function kubeConfigForServer(server: string): KubeConfig {
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromOptions({
    clusters: [{ name: 'trellis', server, skipTLSVerify: server.startsWith('http:') }],
    users: [{ name: 'trellis' }],
    contexts: [{ name: 'trellis', cluster: 'trellis', user: 'trellis' }],
    currentContext: 'trellis',
  });
  return kubeConfig;
}

type SubscriptionTarget =
  | { readonly kind: 'service'; readonly key: ServicePortKey }
  | { readonly kind: 'address'; readonly address: AddressKey };

interface SubscriptionState {
  readonly target: SubscriptionTarget;
  readonly listener: (update: Update) => void;
  active: boolean;
  /** What the listener knows: null before the first update, 'missing' after does-not-exist. */
  seen: Map<string, string> | 'missing' | null;
}

/**
 * Watches Services, EndpointSlices and Pods in all namespaces. `ready()` resolves once each kind's
 * first list has landed; while the API server is unreachable it stays pending (the informers
 * retry) and subscribers get their first update only after it.
 */
export class KubernetesWatcher implements Watcher {
  readonly #services: ResourceInformer<V1Service>;
  readonly #slices: ResourceInformer<V1EndpointSlice>;
  readonly #pods: ResourceInformer<V1Pod>;
  readonly #trustDomain: string;
  readonly #subscriptions = new Set<SubscriptionState>();
  readonly #dirty = new Set<SubscriptionState>();
  readonly #ready: Promise<void>;
  /** ClusterIPs and pod IPs; null when Services or Pods changed since it was built. */
  #addressIndex: AddressIndex | null = null;
  #synced = false;
  #flushHandle: NodeJS.Immediate | null = null;
  #closed = false;

  constructor(options: KubernetesWatcherOptions) {
    const { kubeConfig } = options;
    this.#trustDomain = options.trustDomain;
    const core = kubeConfig.makeApiClient(CoreV1Api);
    const discovery = kubeConfig.makeApiClient(DiscoveryV1Api);
    const informerOptions = {
      retryDelayMs: options.retryDelayMs ?? 1000,
      onError: options.onError ?? (() => {}),
    };
    const changed = (object: KubernetesObject): void =>
      this.#namespaceChanged(object.metadata?.namespace ?? '');
    // Services and Pods also change which addresses are ClusterIPs and pod IPs.
    const indexChanged = (object: KubernetesObject): void => {
      this.#addressIndex = null;
      changed(object);
    };
    this.#services = new ResourceInformer(
      kubeConfig,
      '/api/v1/services',
      () => core.listServiceForAllNamespaces(),
      indexChanged,
      informerOptions,
    );
    this.#slices = new ResourceInformer(
      kubeConfig,
      '/apis/discovery.k8s.io/v1/endpointslices',
      () => discovery.listEndpointSliceForAllNamespaces(),
      changed,
      informerOptions,
    );
    this.#pods = new ResourceInformer(
      kubeConfig,
      '/api/v1/pods',
      () => core.listPodForAllNamespaces(),
      indexChanged,
      informerOptions,
    );
    const informers = [this.#services, this.#slices, this.#pods];
    this.#ready = Promise.all(informers.map((i) => i.synced)).then(() => {
      this.#synced = true;
      for (const subscription of this.#subscriptions) this.#dirty.add(subscription);
      this.#scheduleFlush();
    });
    for (const informer of informers) void informer.start();
  }

  subscribe(key: ServicePortKey, listener: (update: Update) => void): Subscription {
    return this.#subscribe({ kind: 'service', key }, listener);
  }

  subscribeAddress(address: AddressKey, listener: (update: Update) => void): Subscription {
    return this.#subscribe({ kind: 'address', address }, listener);
  }

  #subscribe(target: SubscriptionTarget, listener: (update: Update) => void): Subscription {
    const state: SubscriptionState = { target, listener, active: true, seen: null };
    this.#subscriptions.add(state);
    this.#dirty.add(state);
    this.#scheduleFlush();
    return {
      unsubscribe: () => {
        state.active = false;
        this.#subscriptions.delete(state);
        this.#dirty.delete(state);
      },
    };
  }

  ready(): Promise<void> {
    return this.#ready;
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#flushHandle) clearImmediate(this.#flushHandle);
    for (const subscription of this.#subscriptions) subscription.active = false;
    this.#subscriptions.clear();
    this.#dirty.clear();
    await Promise.all([this.#services.stop(), this.#slices.stop(), this.#pods.stop()]);
  }

  /** The pods as the cache holds them now (the tap targets: src/control/tap/kubernetes-tap-targets.ts). */
  currentPods(): readonly V1Pod[] {
    return this.#pods.cache.list();
  }

  /** The endpoints of a service port as the caches hold them now; null when it does not exist. */
  currentEndpoints(key: ServicePortKey): Endpoint[] | null {
    const service = this.#services.cache.get(key.name, key.namespace);
    if (!service) return null;
    const slices = this.#slices.cache
      .list(key.namespace)
      .filter((slice) => slice.metadata?.labels?.[SERVICE_NAME_LABEL] === key.name);
    return translateEndpoints(
      service,
      key.port,
      slices,
      (ns, name) => this.#pods.cache.get(name, ns),
      this.#trustDomain,
    );
  }

  /**
   * The endpoints behind a destination address as the caches hold them now (see
   * Watcher.subscribeAddress): never empty unless it is a ClusterIP whose port has no endpoints.
   */
  currentAddressEndpoints(address: AddressKey): Endpoint[] {
    this.#addressIndex ??= buildAddressIndex(this.#services.cache.list(), this.#pods.cache.list());
    const ip = canonicalIp(address.host);
    const service = this.#addressIndex.services.get(ip);
    if (service !== undefined) {
      const endpoints = this.currentEndpoints({
        namespace: service.metadata?.namespace ?? '',
        name: service.metadata?.name ?? '',
        port: address.port,
      });
      if (endpoints !== null) return endpoints;
    }
    const pod = this.#addressIndex.pods.get(ip);
    if (pod !== undefined && isPodReady(pod)) return [podEndpoint(pod, address, this.#trustDomain)];
    return [plainEndpoint(address)];
  }

  // An address subscription may depend on any namespace (the ClusterIP or pod IP it names), so
  // every change recomputes them all; the index keeps that cheap, and unchanged sets send nothing.
  #namespaceChanged(namespace: string): void {
    for (const subscription of this.#subscriptions) {
      const target = subscription.target;
      if (target.kind === 'address' || target.key.namespace === namespace) this.#dirty.add(subscription);
    }
    this.#scheduleFlush();
  }

  // Changes are coalesced until the event loop turns: a relist delivers all its deletes and
  // adds in one go, so subscribers only ever see the state after it.
  #scheduleFlush(): void {
    if (this.#flushHandle || this.#closed || !this.#synced) return;
    this.#flushHandle = setImmediate(() => {
      this.#flushHandle = null;
      const dirty = [...this.#dirty];
      this.#dirty.clear();
      for (const subscription of dirty) this.#deliver(subscription);
    });
  }

  #deliver(subscription: SubscriptionState): void {
    const target = subscription.target;
    const endpoints =
      target.kind === 'service'
        ? this.currentEndpoints(target.key)
        : this.currentAddressEndpoints(target.address);
    for (const update of diffUpdates(subscription, endpoints)) {
      if (!subscription.active) return;
      try {
        subscription.listener(update);
      } catch {
        // A listener's failure is its own; the other subscribers still get their updates.
      }
    }
  }
}

/** The updates that take a subscriber from what it saw to `endpoints`, and records them as seen. */
function diffUpdates(subscription: SubscriptionState, endpoints: Endpoint[] | null): Update[] {
  const previous = subscription.seen;
  if (endpoints === null) {
    subscription.seen = 'missing';
    return previous === 'missing' ? [] : [{ kind: 'does-not-exist' }];
  }
  const next = new Map(endpoints.map((e) => [targetKey(e.address), JSON.stringify(e)]));
  subscription.seen = next;
  if (previous === null || previous === 'missing') return [{ kind: 'reset', endpoints }];
  const removed = [...previous.keys()].filter((address) => !next.has(address));
  const added = endpoints.filter(
    (e) => previous.get(targetKey(e.address)) !== next.get(targetKey(e.address)),
  );
  // Adds go first, so a set whose endpoints were all replaced never passes through empty.
  const updates: Update[] = [];
  if (added.length > 0) updates.push({ kind: 'add', endpoints: added });
  if (removed.length > 0) updates.push({ kind: 'remove', addresses: removed });
  return updates;
}
