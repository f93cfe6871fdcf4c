// The policy source on Kubernetes: informers (@kubernetes/client-node ListWatch) on the policy CRDs
// of deploy/crds.yaml (servers, authorizationpolicies and httplocalratelimitpolicies of
// policy.trellis.dev/v1alpha1) and on Pods. CRD objects go through the same validation as
// `trellis apply -f` documents (src/control/resources.ts); an invalid one is logged once per
// version (../kubernetes-crd.ts ValidatedObjects) and skipped.
//
// Workload facts come from the Pods informer, by workload = pod name (what InboundRequest.workload
// is on Kubernetes): its labels for podSelector, and its containers' named ports (the trellis-proxy
// container's excepted) for named Server ports. A pod not (yet) in the cache falls back to the
// labels the proxy sent, with no named ports. Pod updates that change neither labels nor ports
// (status, readiness) are not reported as changes.
//
// The informers are the discovery watcher's (../discovery/kubernetes-informer.ts): one whose list
// or watch fails starts again after retryDelayMs doubling to 30 s.
import { CoreV1Api, type KubeConfig, type KubernetesObject, type V1Pod } from '@kubernetes/client-node';
import type { Logger } from '../../core/log.ts';
import { PROXY_CONTAINER_NAME } from '../discovery/kubernetes-translate.ts';
import { ResourceInformer } from '../discovery/kubernetes-informer.ts';
import { customObjectInformer, schemaDocument, ValidatedObjects } from '../kubernetes-crd.ts';
import { parsePolicyResource } from '../resources.ts';
import type {
  AuthorizationPolicyResource,
  PolicyResource,
  PolicySnapshot,
  RateLimitPolicyResource,
  ServerResource,
  WorkloadFacts,
} from './model.ts';
import { ChangeListeners, type PolicySource } from './source.ts';

export const POLICY_GROUP = 'policy.trellis.dev';
export const POLICY_VERSION = 'v1alpha1';

export interface KubernetesPolicySourceOptions {
  readonly kubeConfig: KubeConfig;
  readonly log: Logger;
  /** First delay before an informer starts again after a failure. Default 1000 ms. */
  readonly retryDelayMs?: number;
}

/** The policy kinds watched, with their plurals. */
const POLICY_PLURALS = {
  Server: 'servers',
  AuthorizationPolicy: 'authorizationpolicies',
  HTTPLocalRateLimitPolicy: 'httplocalratelimitpolicies',
} as const;
type PolicyKind = keyof typeof POLICY_PLURALS;

export class KubernetesPolicySource implements PolicySource {
  readonly #crds: ReadonlyMap<PolicyKind, ResourceInformer<KubernetesObject>>;
  readonly #pods: ResourceInformer<V1Pod>;
  readonly #log: Logger;
  readonly #listeners: ChangeListeners;
  readonly #ready: Promise<void>;
  /** Parsed CRD objects, per version. */
  readonly #parsed = new ValidatedObjects<PolicyResource | null>();
  /** Labels and ports of each pod, to tell a meaningful pod change from a status update. */
  readonly #podFacts = new Map<string, string>();
  #snapshot: PolicySnapshot | null = null;
  #notify: NodeJS.Immediate | null = null;
  #synced = false;

  constructor(options: KubernetesPolicySourceOptions) {
    const { kubeConfig } = options;
    this.#log = options.log.child({ component: 'policy-kubernetes' });
    this.#listeners = new ChangeListeners((error) => this.#log.error('policy listener threw', { error }));
    const retry = options.retryDelayMs ?? 1000;
    const core = kubeConfig.makeApiClient(CoreV1Api);
    const informerOptions = {
      retryDelayMs: retry,
      onError: (error: Error) =>
        this.#log.warn('policy informer failed; retrying', { error: error.message, cause: error.cause }),
    };
    this.#crds = new Map(
      (Object.entries(POLICY_PLURALS) as [PolicyKind, string][]).map(([kind, plural]) => [
        kind,
        customObjectInformer(
          kubeConfig,
          { group: POLICY_GROUP, version: POLICY_VERSION, plural },
          () => this.#changed(),
          informerOptions,
        ),
      ]),
    );
    this.#pods = new ResourceInformer<V1Pod>(
      kubeConfig,
      '/api/v1/pods',
      () => core.listPodForAllNamespaces(),
      (pod, kind) => this.#podChanged(kind, pod),
      informerOptions,
    );
    const informers = [...this.#crds.values(), this.#pods];
    this.#ready = Promise.all(informers.map((i) => i.synced)).then(() => {
      this.#synced = true;
      this.#changed();
    });
    for (const informer of informers) void informer.start();
  }

  ready(): Promise<void> {
    return this.#ready;
  }

  snapshot(): PolicySnapshot {
    this.#snapshot ??= this.#build();
    return this.#snapshot;
  }

  workload(namespace: string, name: string, labels: Readonly<Record<string, string>>): WorkloadFacts {
    const pod = this.#pods.cache.get(name, namespace);
    return {
      namespace,
      name,
      labels: pod?.metadata?.labels ?? labels,
      namedPorts: pod === undefined ? new Map() : namedPortsOf(pod),
    };
  }

  onChange(listener: () => void): () => void {
    return this.#listeners.add(listener);
  }

  async close(): Promise<void> {
    this.#listeners.clear();
    if (this.#notify !== null) clearImmediate(this.#notify);
    await Promise.all([...this.#crds.values(), this.#pods].map((i) => i.stop()));
  }

  #podChanged(type: 'change' | 'delete', pod: V1Pod): void {
    const key = `${pod.metadata?.namespace ?? ''}/${pod.metadata?.name ?? ''}`;
    if (type === 'delete') {
      this.#podFacts.delete(key);
      this.#changed();
      return;
    }
    const facts = JSON.stringify([pod.metadata?.labels ?? {}, [...namedPortsOf(pod)]]);
    if (this.#podFacts.get(key) === facts) return;
    this.#podFacts.set(key, facts);
    this.#changed();
  }

  /** Batches the changes of one turn of the event loop (a relist delivers many) into one notification. */
  #changed(): void {
    this.#snapshot = null;
    if (!this.#synced || this.#notify !== null) return;
    this.#notify = setImmediate(() => {
      this.#notify = null;
      this.#listeners.notify();
    });
  }

  #build(): PolicySnapshot {
    const servers: ServerResource[] = [];
    const authorizations: AuthorizationPolicyResource[] = [];
    const rateLimits: RateLimitPolicyResource[] = [];
    for (const [kind, informer] of this.#crds) {
      for (const object of informer.cache.list()) {
        const resource = this.#parse(kind, object);
        if (resource?.kind === 'Server') servers.push(resource);
        else if (resource?.kind === 'AuthorizationPolicy') authorizations.push(resource);
        else if (resource?.kind === 'HTTPLocalRateLimitPolicy') rateLimits.push(resource);
      }
    }
    this.#parsed.prune();
    // As the state folder gives it: no rateLimits when there are none.
    return { servers, authorizations, ...(rateLimits.length === 0 ? {} : { rateLimits }) };
  }

  #parse(kind: PolicyKind, object: KubernetesObject): PolicyResource | null {
    return this.#parsed.get(kind, object, () => {
      const meta = object.metadata ?? {};
      try {
        return parsePolicyResource(
          schemaDocument(object, kind),
          `${kind} ${meta.namespace ?? ''}/${meta.name ?? ''}`,
        );
      } catch (error) {
        this.#log.warn('invalid policy resource skipped', { problem: (error as Error).message });
        return null;
      }
    });
  }
}

/** Container port names to numbers (the first container naming a port wins; the proxy's own excepted). */
function namedPortsOf(pod: V1Pod): Map<string, number> {
  const ports = new Map<string, number>();
  for (const container of pod.spec?.containers ?? []) {
    if (container.name === PROXY_CONTAINER_NAME) continue;
    for (const p of container.ports ?? []) {
      if (p.name !== undefined && !ports.has(p.name)) ports.set(p.name, p.containerPort);
    }
  }
  return ports;
}
