// The proxies the control plane can tap on Kubernetes (GET /api/tap of `trellis control`): every
// running, ready, meshed pod of the discovery watcher's cache, with its proxy's ports as the
// injector declares them on the proxy container (src/control/injector/proxy-containers.ts):
// `trellis-tap`, the mTLS tap listener, tapped at the pod IP with the pod's expected identity
// (its ServiceAccount's SPIFFE ID). A meshed pod without a tap port (injected by an older Trellis)
// is listed without one and without an admin address (its admin listener taps loopback callers
// only), so its tap says at once that it cannot be tapped.
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

/** The tap targets of `pods`; each pod once, by namespace and name. */
export function kubernetesTapTargets(pods: readonly V1Pod[], trustDomain: string): TapTarget[] {
  const targets: TapTarget[] = [];
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
    const tapPort = portOf(PORT_NAMES.tap);
    const identity = podSpiffeId(trustDomain, namespace, pod);
    const appPorts = (pod.spec?.containers ?? [])
      .filter((c) => c.name !== PROXY_CONTAINER_NAME)
      .flatMap((c) => c.ports ?? [])
      .map((p) => targetKey({ host: ip, port: p.containerPort }));
    targets.push({
      namespace,
      workload: workloadOf(pod) ?? name,
      instance: name,
      admin: null,
      meshed: true,
      identity,
      addresses: appPorts,
      tap: tapPort === undefined ? null : { address: targetKey({ host: ip, port: tapPort }), identity },
    });
  }
  return targets;
}
