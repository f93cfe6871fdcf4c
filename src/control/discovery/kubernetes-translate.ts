// How the Kubernetes discovery watcher (kubernetes.ts) reads the cluster's objects: the endpoints
// of a service port from its EndpointSlices and their pods (meshed or not, SPIFFE identity, opaque
// ports), and the index of ClusterIPs and pod IPs behind address subscriptions. Pure functions of
// the informers' caches, tested on their own.
import type {
  V1EndpointSlice,
  V1Pod,
  V1PodCondition,
  V1Service,
  V1ServicePort,
} from '@kubernetes/client-node';
import { spiffeId } from '../../core/spiffe.ts';
import { targetKey } from '../../core/target.ts';
import { canonicalIp, type AddressKey, type Endpoint } from './watcher.ts';

export const PROXY_INJECTED_ANNOTATION = 'trellis.dev/proxy-injected';
export const OPAQUE_PORTS_ANNOTATION = 'config.trellis.dev/opaque-ports';
export const PROXY_CONTAINER_NAME = 'trellis-proxy';
const OPAQUE_APP_PROTOCOLS = new Set(['trellis.dev/opaque', 'opaque']);
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

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
          identity: meshed ? podSpiffeId(trustDomain, pod?.metadata?.namespace ?? namespace, pod) : null,
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

export interface AddressIndex {
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
    identity: meshed ? podSpiffeId(trustDomain, namespace, pod) : null,
    protocolHint: opaque ? 'opaque' : meshed ? 'h2' : 'unknown',
  };
}

export function podSpiffeId(trustDomain: string, namespace: string, pod: V1Pod | undefined): string {
  return spiffeId(trustDomain, namespace, pod?.spec?.serviceAccountName ?? 'default');
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
