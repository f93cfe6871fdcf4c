// The route source on Kubernetes (`trellis control`): informers (the discovery watcher's
// ResourceInformer: list, then watch from the list's resourceVersion, started again after
// failures; ../kubernetes-crd.ts) on gateway.networking.k8s.io/v1 HTTPRoutes and GRPCRoutes in
// every namespace, on traffic.trellis.dev/v1alpha1 HTTPFaults (the faults route rules name through
// ExtensionRef), on gateway.networking.x-k8s.io/v1alpha1 XBackendTrafficPolicies (Services' retry
// budgets) and on Services (their ports and port names, and their traffic annotations, filtered
// by trafficAnnotations of src/core/routes/service-annotations.ts). Every object goes through the
// same validation as a `trellis apply -f` document of its kind (state-files.ts
// validateRouteFolderResource); an invalid one is left out, logged once per version (generation
// and annotations) with the field and reason, and the others still apply. The snapshot is the one
// the state folder gives on one machine: routes, faults, policies, Services.
//
// After every change (batched per turn of the event loop) the status of every route is written
// back by the RouteStatusWriter (status-writer.ts): Accepted / ResolvedRefs / PartiallyInvalid as
// status.ts computes them, Accepted=False UnsupportedValue naming the field for an invalid route
// (PartiallyInvalid naming the problem for a rule whose HTTPFault is invalid); and the status of
// every XBackendTrafficPolicy (backend-policy-status.ts: status.ancestors, Accepted per Service).
// With `statusLeader` (the Lease elector of ../leader-lease.ts, which `trellis control` always
// runs) status is written only while this replica holds the lease: gaining it looks at every
// route once, losing it stops the writes at once; the routes are served to proxies either way.
// An absent kind (its CRD not installed, 404) is logged and tried again; the rest works without it.
// Only the group, version and kinds matter: the upstream Gateway API CRDs work as well as ours
// (deploy/gateway-api-crds.yaml).
import {
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  setHeaderOptions,
  type KubeConfig,
  type KubernetesObject,
  type V1Service,
} from '@kubernetes/client-node';
import type { Logger } from '../../core/log.ts';
import type { Leadership } from '../leader-lease.ts';
import { Registry } from '../../core/prometheus.ts';
import {
  BACKEND_POLICY_GROUP,
  BACKEND_POLICY_KIND,
  BACKEND_POLICY_PLURAL,
  BACKEND_POLICY_VERSION,
  type BackendPolicyResource,
} from '../../core/routes/backend-traffic-policy.ts';
import { FAULT_GROUP, FAULT_KIND, type FaultResource } from '../../core/routes/fault.ts';
import type { RouteIssue } from '../../core/routes/parse.ts';
import type { RouteResource } from '../../core/routes/schema.ts';
import { trafficAnnotations } from '../../core/routes/service-annotations.ts';
import { ResourceInformer } from '../discovery/kubernetes-informer.ts';
import {
  customObjectInformer,
  objectKey,
  schemaDocument,
  ValidatedObjects,
  type CustomResource,
} from '../kubernetes-crd.ts';
import { ChangeListeners } from '../policy/source.ts';
import { backendPolicyAncestors } from './backend-policy-status.ts';
import { POLICY_STATUS, routeParents, type RouteObject } from './kubernetes-status.ts';
import { unsentRoutes } from './route-bound.ts';
import type { RouteSnapshot } from './route-set.ts';
import type { RouteSource } from './source.ts';
import { validateRouteFolderResource, type RouteFolderResource } from './state-files.ts';
import type { ServiceIndex } from './status.ts';
import { RouteStatusWriter, type StatusTarget } from './status-writer.ts';

export const GATEWAY_GROUP = 'gateway.networking.k8s.io';
export const GATEWAY_VERSION = 'v1';
/** The route kinds watched, with their plurals. */
export const ROUTE_PLURALS = { HTTPRoute: 'httproutes', GRPCRoute: 'grpcroutes' } as const;

/** Every kind watched besides Services: where it lives, and whether its status is written. */
const WATCHED = {
  HTTPRoute: {
    group: GATEWAY_GROUP,
    version: GATEWAY_VERSION,
    plural: ROUTE_PLURALS.HTTPRoute,
    status: true,
  },
  GRPCRoute: {
    group: GATEWAY_GROUP,
    version: GATEWAY_VERSION,
    plural: ROUTE_PLURALS.GRPCRoute,
    status: true,
  },
  [FAULT_KIND]: { group: FAULT_GROUP, version: 'v1alpha1', plural: 'httpfaults', status: false },
  [BACKEND_POLICY_KIND]: {
    group: BACKEND_POLICY_GROUP,
    version: BACKEND_POLICY_VERSION,
    plural: BACKEND_POLICY_PLURAL,
    status: true,
  },
} as const satisfies Record<string, CustomResource & { status: boolean }>;
type WatchedKind = keyof typeof WATCHED;

export interface KubernetesRouteSourceOptions {
  readonly kubeConfig: KubeConfig;
  readonly log: Logger;
  /** First delay before an informer (or a failed status write) is tried again. Default 1000 ms. */
  readonly retryDelayMs?: number;
  /** Write route and policy status back (default true). */
  readonly writeStatus?: boolean;
  /** Write status only while this leads (default: always). */
  readonly statusLeader?: Leadership;
}

type Parsed = { readonly resource: RouteFolderResource | null; readonly issues: readonly RouteIssue[] };

export class KubernetesRouteSource implements RouteSource {
  readonly #informers: ReadonlyMap<WatchedKind, ResourceInformer<KubernetesObject>>;
  readonly #services: ResourceInformer<V1Service>;
  readonly #log: Logger;
  readonly #listeners: ChangeListeners;
  readonly #ready: Promise<void>;
  readonly #writer: RouteStatusWriter | null;
  readonly #parsed = new ValidatedObjects<Parsed>();
  #snapshot: RouteSnapshot | null = null;
  /** "namespace/name" -> the problem of each invalid HTTPFault (for the status of routes naming it). */
  #invalidFaults = new Map<string, string>();
  #notify: NodeJS.Immediate | null = null;
  readonly #statusLeader: Leadership | null;
  readonly #unsubscribeLeader: () => void = () => {};
  #synced = false;
  #closed = false;

  constructor(options: KubernetesRouteSourceOptions) {
    const { kubeConfig } = options;
    this.#log = options.log.child({ component: 'routes-kubernetes' });
    this.#listeners = new ChangeListeners((error) => this.#log.error('route listener threw', { error }));
    const retryDelayMs = options.retryDelayMs ?? 1000;
    const custom = kubeConfig.makeApiClient(CustomObjectsApi);
    const core = kubeConfig.makeApiClient(CoreV1Api);
    const onError =
      (what: string, crds = 'Gateway API CRDs') =>
      (error: Error): void => {
        const missing = (error.cause as { code?: unknown } | undefined)?.code === 404;
        this.#log.warn(
          missing
            ? `no ${what} in the API: install the ${crds} (trellis install --crds); retrying`
            : 'route informer failed; retrying',
          { resource: what, error: error.message, cause: error.cause },
        );
      };
    // The source is ready once the Services are listed and each other kind was listed or failed
    // once: a cluster without a kind's CRD (404) has none of it, not a control plane that never
    // gets ready; the informer keeps trying (backoff to 30 s) and the objects come later.
    const firstTries: Promise<void>[] = [];
    const informer = (resource: CustomResource): ResourceInformer<KubernetesObject> => {
      let tried: () => void = () => {};
      firstTries.push(new Promise<void>((resolve) => (tried = resolve)));
      const created = customObjectInformer(kubeConfig, resource, () => this.#changed(), {
        retryDelayMs,
        onError: (error) => {
          tried();
          const crds = resource.group === FAULT_GROUP ? 'Trellis CRDs' : undefined;
          onError(`${resource.plural}.${resource.group}`, crds)(error);
        },
      });
      void created.synced.then(tried);
      return created;
    };
    this.#informers = new Map(
      (Object.keys(WATCHED) as WatchedKind[]).map((kind) => [kind, informer(WATCHED[kind])]),
    );
    this.#services = new ResourceInformer<V1Service>(
      kubeConfig,
      '/api/v1/services',
      () => core.listServiceForAllNamespaces(),
      () => this.#changed(),
      { retryDelayMs, onError: onError('services') },
    );
    const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
    this.#writer =
      options.writeStatus === false
        ? null
        : new RouteStatusWriter({
            log: this.#log,
            retryDelayMs,
            patch: async (target, body) => {
              const { group, version, plural } = WATCHED[target.kind as WatchedKind];
              await custom.patchNamespacedCustomObjectStatus(
                { group, version, plural, namespace: target.namespace, name: target.name, body },
                mergePatch,
              );
            },
          });
    this.#statusLeader = options.statusLeader ?? null;
    if (this.#writer !== null && this.#statusLeader !== null) {
      const writer = this.#writer;
      if (!this.#statusLeader.leading) writer.pause();
      this.#unsubscribeLeader = this.#statusLeader.onChange((leading) => {
        if (!leading) writer.pause();
        else {
          writer.resume();
          if (this.#synced) this.#writeStatus();
        }
      });
    }
    this.#ready = Promise.all([this.#services.synced, ...firstTries]).then(() => {
      this.#synced = true;
      this.#changed();
    });
    for (const i of [...this.#informers.values(), this.#services]) void i.start();
  }

  ready(): Promise<void> {
    return this.#ready;
  }

  snapshot(): RouteSnapshot {
    this.#snapshot ??= this.#build();
    return this.#snapshot;
  }

  onChange(listener: () => void): () => void {
    return this.#listeners.add(listener);
  }

  /** Status patches sent so far, by result. */
  get statusWrites(): Readonly<RouteStatusWriter['counts']> {
    return this.#writer?.counts ?? { written: 0, conflicts: 0, failed: 0 };
  }

  /** trellis_route_status_writes_total by result, for the control plane's GET /metrics. */
  metrics(): string {
    const registry = new Registry();
    const writes = registry.counter(
      'trellis_route_status_writes_total',
      'Route and XBackendTrafficPolicy status patches sent to the Kubernetes API, by result.',
      ['result'],
    );
    const counts = this.statusWrites;
    writes.labels('written').inc(counts.written);
    writes.labels('conflict').inc(counts.conflicts);
    writes.labels('failed').inc(counts.failed);
    if (this.#writer !== null && this.#statusLeader !== null)
      registry
        .gauge(
          'trellis_control_status_leader',
          'Whether this replica holds the status lease and writes route and policy status (1) or not (0).',
        )
        .labels()
        .set(this.#statusLeader.leading ? 1 : 0);
    return registry.render();
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#listeners.clear();
    this.#unsubscribeLeader();
    this.#writer?.close();
    if (this.#notify !== null) clearImmediate(this.#notify);
    await Promise.all([...this.#informers.values(), this.#services].map((i) => i.stop()));
  }

  /** Batches the changes of one turn of the event loop into one notification and one status pass. */
  #changed(): void {
    this.#snapshot = null;
    if (!this.#synced || this.#notify !== null || this.#closed) return;
    this.#notify = setImmediate(() => {
      this.#notify = null;
      this.#listeners.notify();
      this.#writeStatus();
    });
  }

  #writeStatus(): void {
    if (this.#writer === null || this.#closed) return;
    const snapshot = this.snapshot();
    const unsent = unsentRoutes(snapshot.routes, snapshot.services, snapshot.faults ?? []);
    const targets: StatusTarget[] = [];
    for (const [kind, informer] of this.#informers) {
      if (!WATCHED[kind].status) continue;
      for (const object of informer.cache.list()) {
        const meta = object.metadata ?? {};
        if (meta.name === undefined || meta.namespace === undefined) continue;
        const parsed = this.#parse(kind, object);
        const base = { key: objectKey(kind, object), kind, namespace: meta.namespace, name: meta.name };
        targets.push(
          kind === BACKEND_POLICY_KIND
            ? {
                ...base,
                object: object as RouteObject,
                shape: POLICY_STATUS,
                desired: backendPolicyAncestors(
                  object as RouteObject,
                  { policy: parsed.resource as BackendPolicyResource | null, issues: parsed.issues },
                  snapshot.services,
                  snapshot.backendPolicies ?? [],
                  snapshot.serviceAnnotations,
                ),
              }
            : {
                ...base,
                object: object as RouteObject,
                desired: routeParents(
                  object as RouteObject,
                  { route: parsed.resource as RouteResource | null, issues: parsed.issues },
                  snapshot.services,
                  snapshot.faults ?? [],
                  this.#invalidFaults,
                  unsent,
                ),
              },
        );
      }
    }
    this.#writer.sync(targets, () => this.#writeStatus());
  }

  #build(): RouteSnapshot {
    const routes: RouteResource[] = [];
    const faults: FaultResource[] = [];
    const backendPolicies: BackendPolicyResource[] = [];
    const invalidFaults = new Map<string, string>();
    for (const [kind, informer] of this.#informers)
      for (const object of informer.cache.list()) {
        const { resource, issues } = this.#parse(kind, object);
        if (resource === null) {
          const meta = object.metadata ?? {};
          if (kind === FAULT_KIND)
            invalidFaults.set(`${meta.namespace ?? ''}/${meta.name ?? ''}`, describeIssues(issues));
        } else if (resource.kind === FAULT_KIND) faults.push(resource);
        else if (resource.kind === BACKEND_POLICY_KIND) backendPolicies.push(resource);
        else routes.push(resource);
      }
    this.#parsed.prune();
    this.#invalidFaults = invalidFaults;
    const services = new Map<string, { port: number; name?: string | undefined }[]>();
    const serviceAnnotations = new Map<string, Readonly<Record<string, string>>>();
    for (const service of this.#services.cache.list()) {
      const key = `${service.metadata?.namespace ?? ''}/${service.metadata?.name ?? ''}`;
      services.set(
        key,
        (service.spec?.ports ?? []).map((p) => ({ port: p.port, name: p.name })),
      );
      const annotations = trafficAnnotations(service.metadata?.annotations);
      if (Object.keys(annotations).length > 0) serviceAnnotations.set(key, annotations);
    }
    return { routes, services: services as ServiceIndex, serviceAnnotations, faults, backendPolicies };
  }

  /** The object validated as `trellis apply` would (cached per version); logs a refusal once. */
  #parse(kind: WatchedKind, object: KubernetesObject): Parsed {
    return this.#parsed.get(kind, object, () => {
      const { group, version } = WATCHED[kind];
      const document = schemaDocument(object, kind, {
        apiVersion: `${group}/${version}`,
        creationTimestamp: kind !== FAULT_KIND,
      });
      let parsed: Parsed;
      try {
        parsed = validateRouteFolderResource(document);
      } catch (error) {
        parsed = { resource: null, issues: [{ path: [], message: (error as Error).message }] };
      }
      if (parsed.resource === null) {
        const meta = object.metadata ?? {};
        this.#log.warn(
          `invalid ${kind === FAULT_KIND || kind === BACKEND_POLICY_KIND ? kind : 'route'} skipped`,
          {
            route: `${kind} ${meta.namespace ?? ''}/${meta.name ?? ''}`,
            problem: describeIssues(parsed.issues),
          },
        );
      }
      return parsed;
    });
  }
}

function describeIssues(issues: readonly RouteIssue[]): string {
  return issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
}
