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
  ListWatch,
  Watch,
  type KubernetesListObject,
  type KubernetesObject,
  type V1EndpointSlice,
  type V1Pod,
  type V1PodCondition,
  type V1Service,
  type V1ServicePort,
} from '@kubernetes/client-node';
import { TrellisError } from '../../core/errors.ts';
import { targetKey } from '../../proxy/transport/target.ts';
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

export const PROXY_INJECTED_ANNOTATION = 'trellis.dev/proxy-injected';
export const OPAQUE_PORTS_ANNOTATION = 'config.trellis.dev/opaque-ports';
export const PROXY_CONTAINER_NAME = 'trellis-proxy';
const OPAQUE_APP_PROTOCOLS = new Set(['trellis.dev/opaque', 'opaque']);
const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

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

/**
 * The client's Watch, asking for bookmarks so that a resumed watch rarely meets a 410, and telling
 * `onEvent` about every event the server streams (a bookmark too; not an ERROR such as 410 Gone).
 */
class BookmarkingWatch extends Watch {
  readonly #onEvent: () => void;

  constructor(kubeConfig: KubeConfig, onEvent: () => void) {
    super(kubeConfig);
    this.#onEvent = onEvent;
  }

  override watch(...[path, query, callback, done]: Parameters<Watch['watch']>): ReturnType<Watch['watch']> {
    const onLine: typeof callback = (phase, object, raw) => {
      if (phase !== 'ERROR') this.#onEvent();
      callback(phase, object, raw);
    };
    return super.watch(path, { ...query, allowWatchBookmarks: true }, onLine, done);
  }
}

const MAX_RETRY_DELAY_MS = 30_000;

/**
 * One ListWatch that starts again after failures, and knows when its first list has landed.
 *
 * Every wait before watching again (a restart after a failure, and the client's own reconnect
 * delay after a watch that ended or answered 410 Gone) follows one backoff: `retryDelayMs`,
 * doubling while nothing succeeds, back to `retryDelayMs` as soon as a list succeeds or a watch
 * streams an event. The client's own delay (1 s doubling to 30 s) resets only on a watch event, so
 * a 410 (an ERROR event) followed by a successful relist counts as a failure there: a resource
 * whose history is compacted again while the watcher waits would stay unwatched for 2, 4, 8, 16 s
 * and more, its changes unseen though the API server answers every request.
 */
class ResourceInformer<T extends KubernetesObject> {
  readonly cache: ListWatch<T>;
  readonly synced: Promise<void>;
  #markSynced: () => void = () => {};
  #stopped = false;
  #retryDelayMs: number;
  #retryTimer: NodeJS.Timeout | null = null;
  readonly #delays = new Set<NodeJS.Timeout>();
  readonly #baseRetryDelayMs: number;
  readonly #resource: string;
  readonly #onError: (error: TrellisError) => void;

  constructor(
    kubeConfig: KubeConfig,
    path: string,
    list: () => Promise<KubernetesListObject<T>>,
    onChange: (object: T) => void,
    options: { retryDelayMs: number; onError: (error: TrellisError) => void },
  ) {
    this.#resource = path;
    this.#baseRetryDelayMs = options.retryDelayMs;
    this.#retryDelayMs = options.retryDelayMs;
    this.#onError = options.onError;
    this.synced = new Promise((resolve) => (this.#markSynced = resolve));
    const succeeded = (): void => {
      this.#retryDelayMs = this.#baseRetryDelayMs;
    };
    const listAndReset = async (): Promise<KubernetesListObject<T>> => {
      const result = await list();
      succeeded();
      return result;
    };
    // The client asks for its own reconnect delay; it waits ours instead. It also does not look at
    // `stop()` after the wait: a delay cut short by stop never resolves, so a stopped informer
    // never watches again.
    const delayFn = (): Promise<void> =>
      new Promise((resolve) => {
        if (this.#stopped) return;
        const timer = setTimeout(() => {
          this.#delays.delete(timer);
          resolve();
        }, this.#nextRetryDelayMs());
        this.#delays.add(timer);
      });
    this.cache = new ListWatch(
      path,
      new BookmarkingWatch(kubeConfig, succeeded),
      listAndReset,
      false,
      undefined,
      undefined,
      { delayFn },
    );
    this.cache.on('change', onChange);
    this.cache.on('error', (error: unknown) => this.#failed(error));
  }

  async start(): Promise<void> {
    if (this.#stopped) return;
    await this.cache.start();
    if (this.#stopped) return;
    if (this.cache.latestResourceVersion() !== '') this.#markSynced();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    for (const timer of this.#delays) clearTimeout(timer);
    this.#delays.clear();
    await this.cache.stop();
  }

  #nextRetryDelayMs(): number {
    const delay = this.#retryDelayMs;
    this.#retryDelayMs = Math.min(delay * 2, MAX_RETRY_DELAY_MS);
    return delay;
  }

  // ListWatch restarts by itself after a watch ends cleanly or with 410 Gone, but stops on any
  // other failure (refused connection, reset socket, failed list): start it again after a delay.
  #failed(error: unknown): void {
    if (this.#stopped) return;
    this.#onError(
      new TrellisError('TRELLIS_ERR_KUBE_WATCH', `watching ${this.#resource} failed; retrying`, {
        cause: error,
      }),
    );
    if (this.#retryTimer) return;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      void this.start();
    }, this.#nextRetryDelayMs());
  }
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

/**
 * Translates a Service port and the EndpointSlices of the Service into endpoints (null when the
 * Service has no such port). An address listed twice (slices overlap while they are rebalanced)
 * counts once. A pod that the cache does not hold yet gives an unmeshed endpoint, refreshed by an
 * `add` when the pod arrives.
 */
export function translateEndpoints(
  service: V1Service,
  port: number,
  slices: readonly V1EndpointSlice[],
  podOf: (namespace: string, name: string) => V1Pod | undefined,
  trustDomain: string,
): Endpoint[] | null {
  const servicePort = service.spec?.ports?.find((p) => p.port === port);
  if (!servicePort) return null;
  const namespace = service.metadata?.namespace ?? '';
  const serviceName = service.metadata?.name ?? '';
  const portName = servicePort.name ?? '';
  const serviceOpaque =
    isOpaqueAppProtocol(servicePort) ||
    portListNames(service.metadata?.annotations, servicePort.port, portName);
  const endpoints = new Map<string, Endpoint>();
  for (const slice of slices) {
    if (slice.addressType !== 'IPv4' && slice.addressType !== 'IPv6') continue;
    const targetPort = slice.ports?.find((p) => (p.name ?? '') === portName)?.port;
    if (targetPort === undefined || targetPort === null) continue;
    for (const sliceEndpoint of slice.endpoints ?? []) {
      // The API says an unset `ready` means ready.
      if (sliceEndpoint.conditions?.ready === false) continue;
      const ref = sliceEndpoint.targetRef;
      const pod = ref?.kind === 'Pod' && ref.name ? podOf(ref.namespace ?? namespace, ref.name) : undefined;
      const meshed = pod !== undefined && isMeshed(pod);
      const opaque = serviceOpaque || portListNames(pod?.metadata?.annotations, targetPort, portName);
      const labels: Record<string, string> = { namespace, service: serviceName };
      const workload = pod ? workloadOf(pod) : undefined;
      if (workload) labels.workload = workload;
      if (ref?.kind === 'Pod' && ref.name) labels.pod = ref.name;
      if (sliceEndpoint.zone) labels.zone = sliceEndpoint.zone;
      for (const host of sliceEndpoint.addresses ?? []) {
        const address = { host, port: targetPort };
        if (endpoints.has(targetKey(address))) continue;
        endpoints.set(targetKey(address), {
          address,
          weight: 1,
          labels,
          meshed,
          identity: meshed ? spiffeId(trustDomain, pod?.metadata?.namespace ?? namespace, pod) : null,
          protocolHint: opaque ? 'opaque' : meshed ? 'h2' : 'unknown',
        });
      }
    }
  }
  return [...endpoints.values()];
}

export function isMeshed(pod: V1Pod): boolean {
  if (pod.metadata?.annotations?.[PROXY_INJECTED_ANNOTATION] === 'true') return true;
  const containers = [...(pod.spec?.containers ?? []), ...(pod.spec?.initContainers ?? [])];
  return containers.some((c) => c.name === PROXY_CONTAINER_NAME);
}

interface AddressIndex {
  /** ClusterIP (canonical) -> its Service. */
  readonly services: ReadonlyMap<string, V1Service>;
  /** Pod IP (canonical) -> the pod that has it now. */
  readonly pods: ReadonlyMap<string, V1Pod>;
}

/**
 * Indexes the virtual IPs of Services (headless and ExternalName ones have none) and the IPs of
 * pods. Host-network pods are left out (their IP is the node's, shared with every other such pod),
 * and so are finished ones (Succeeded, Failed: their IP may already be another pod's). Should two
 * pods still claim one IP, a ready one wins.
 */
export function buildAddressIndex(services: readonly V1Service[], pods: readonly V1Pod[]): AddressIndex {
  const byClusterIp = new Map<string, V1Service>();
  for (const service of services) {
    if (service.spec?.type === 'ExternalName') continue;
    const ips = service.spec?.clusterIPs ?? (service.spec?.clusterIP ? [service.spec.clusterIP] : []);
    for (const ip of ips) if (ip !== '' && ip !== 'None') byClusterIp.set(canonicalIp(ip), service);
  }
  const byPodIp = new Map<string, V1Pod>();
  for (const pod of pods) {
    const phase = pod.status?.phase;
    if (pod.spec?.hostNetwork === true || phase === 'Succeeded' || phase === 'Failed') continue;
    const ips = pod.status?.podIPs?.map((p) => p.ip) ?? (pod.status?.podIP ? [pod.status.podIP] : []);
    for (const raw of ips) {
      const ip = canonicalIp(raw);
      const other = byPodIp.get(ip);
      if (other === undefined || !isPodReady(other)) byPodIp.set(ip, pod);
    }
  }
  return { services: byClusterIp, pods: byPodIp };
}

/**
 * Whether a pod takes traffic: running, and not marked unready (a Ready condition that is not
 * True; a pod without one counts as ready, as a slice endpoint without `ready` does).
 */
export function isPodReady(pod: V1Pod): boolean {
  if (pod.status?.phase !== 'Running') return false;
  const ready = pod.status.conditions?.find((c: V1PodCondition) => c.type === 'Ready');
  return ready === undefined || ready.status === 'True';
}

/**
 * A pod reached at `address` (its IP and any port: pods need not declare the ports they listen
 * on): meshed and its identity as for service endpoints, opaque when the pod's opaque-ports
 * annotation names the port (by number, or by the name of the container port).
 */
export function podEndpoint(pod: V1Pod, address: AddressKey, trustDomain: string): Endpoint {
  const namespace = pod.metadata?.namespace ?? '';
  const meshed = isMeshed(pod);
  const portName =
    pod.spec?.containers
      ?.flatMap((c) => c.ports ?? [])
      .find((p) => p.containerPort === address.port && (p.protocol ?? 'TCP') === 'TCP')?.name ?? '';
  const opaque = portListNames(pod.metadata?.annotations, address.port, portName);
  const labels: Record<string, string> = { namespace, pod: pod.metadata?.name ?? '' };
  const workload = workloadOf(pod);
  if (workload) labels.workload = workload;
  return {
    address: { host: address.host, port: address.port },
    weight: 1,
    labels,
    meshed,
    identity: meshed ? spiffeId(trustDomain, namespace, pod) : null,
    protocolHint: opaque ? 'opaque' : meshed ? 'h2' : 'unknown',
  };
}

function spiffeId(trustDomain: string, namespace: string, pod: V1Pod | undefined): string {
  return `spiffe://${trustDomain}/ns/${namespace}/sa/${pod?.spec?.serviceAccountName ?? 'default'}`;
}

/** The pod's controller (a ReplicaSet names its Deployment), else its `app` label. */
export function workloadOf(pod: V1Pod): string | undefined {
  const owner =
    pod.metadata?.ownerReferences?.find((o) => o.controller) ?? pod.metadata?.ownerReferences?.[0];
  const labels = pod.metadata?.labels ?? {};
  if (owner) {
    const hash = labels['pod-template-hash'];
    if (owner.kind === 'ReplicaSet' && hash && owner.name.endsWith(`-${hash}`)) {
      return owner.name.slice(0, -(hash.length + 1));
    }
    return owner.name;
  }
  return labels.app ?? labels['app.kubernetes.io/name'];
}

function isOpaqueAppProtocol(port: V1ServicePort): boolean {
  return port.appProtocol !== undefined && OPAQUE_APP_PROTOCOLS.has(port.appProtocol);
}

/** Whether the opaque-ports annotation ("3306,5000-5010,postgres") names `port` or `portName`. */
export function portListNames(
  annotations: Readonly<Record<string, string>> | undefined,
  port: number,
  portName: string,
): boolean {
  const list = annotations?.[OPAQUE_PORTS_ANNOTATION];
  if (!list) return false;
  return list.split(',').some((raw) => {
    const item = raw.trim();
    const range = /^(\d+)-(\d+)$/.exec(item);
    if (range) return Number(range[1]) <= port && port <= Number(range[2]);
    return /^\d+$/.test(item) ? Number(item) === port : item !== '' && item === portName;
  });
}
