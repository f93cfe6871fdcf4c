// The proxies the control plane can tap on Kubernetes (GET /api/tap of `trellis control`): every
// running, ready, meshed pod of the discovery watcher's cache, with its proxy's ports as the
// injector declares them on the proxy container (src/control/injector/proxy-containers.ts):
// `trellis-tap`, the mTLS tap listener, tapped at the pod IP with the pod's expected identity
// (its ServiceAccount's SPIFFE ID). A meshed pod without a tap port (injected by an older Trellis)
// is listed without one and without an admin address (its admin listener taps loopback callers
// only), so its tap says at once that it cannot be tapped.
// The same pods are the scrape targets there (kubernetesScrapeTargets), at their admin listeners.
// Pure: tested on plain pod objects.
import type { V1Pod } from '@kubernetes/client-node';
import { targetKey } from '../../core/target.ts';
import {
  isMeshed,
  isPodReady,
  podSpiffeId,
  PROXY_CONTAINER_NAME,
  workloadOf,
} from '../discovery/kubernetes-translate.ts';
import { PORT_NAMES } from '../injector/proxy-containers.ts';
import type { TapTarget } from './proxy-tap-tls.ts';
import type { ScrapeTarget } from '../metrics/collector.ts';

/** The tap targets of `pods`; each pod once, by namespace and name. */
export function kubernetesTapTargets(pods: readonly V1Pod[], trustDomain: string): TapTarget[] {
  return meshedPods(pods, trustDomain).map(({ target, ip, tapPort }) => ({
    ...target,
    tap:
      tapPort === undefined
        ? null
        : { address: targetKey({ host: ip, port: tapPort }), identity: target.identity! },
  }));
}

/**
 * The scrape targets of `pods` (what `trellis stat`, `edges`, `routes` and the dashboard read, and
 * Prometheus's service discovery): the same pods, each with its proxy's admin listener at the pod
 * IP (the injector binds it to 0.0.0.0 for the kubelet's probes; its /metrics is open like
 * Linkerd's). A pod whose proxy declares no admin port has none.
 */
export function kubernetesScrapeTargets(pods: readonly V1Pod[], trustDomain: string): ScrapeTarget[] {
  return meshedPods(pods, trustDomain).map(({ target, ip, adminPort }) => ({
    ...target,
    admin: adminPort === undefined ? null : targetKey({ host: ip, port: adminPort }),
  }));
}

interface MeshedPod {
  readonly target: ScrapeTarget;
  readonly ip: string;
  readonly adminPort: number | undefined;
  readonly tapPort: number | undefined;
}

/** Running, ready, meshed pods (not on the host's network), as targets without an admin address. */
function meshedPods(pods: readonly V1Pod[], trustDomain: string): MeshedPod[] {
  const found: MeshedPod[] = [];
  for (const pod of pods) {
    const namespace = pod.metadata?.namespace;
    const name = pod.metadata?.name;
    const ip = pod.status?.podIP;
    if (namespace === undefined || name === undefined || !ip || !isMeshed(pod) || !isPodReady(pod)) continue;
    if (pod.spec?.hostNetwork === true) continue;
    const proxy = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].find(
      (c) => c.name === PROXY_CONTAINER_NAME,
    );
    const portOf = (portName: string): number | undefined =>
      proxy?.ports?.find((p) => p.name === portName)?.containerPort;
    const appPorts = (pod.spec?.containers ?? [])
      .filter((c) => c.name !== PROXY_CONTAINER_NAME)
      .flatMap((c) => c.ports ?? [])
      .map((p) => targetKey({ host: ip, port: p.containerPort }));
    found.push({
      target: {
        namespace,
        workload: workloadOf(pod) ?? name,
        instance: name,
        admin: null,
        meshed: true,
        identity: podSpiffeId(trustDomain, namespace, pod),
        addresses: appPorts,
      },
      ip,
      adminPort: portOf(PORT_NAMES.admin),
      tapPort: portOf(PORT_NAMES.tap),
    });
  }
  return found;
}
