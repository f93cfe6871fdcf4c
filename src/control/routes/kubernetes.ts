// The route source on Kubernetes (`trellis control`): informers (the discovery watcher's
// ResourceInformer: list, then watch from the list's resourceVersion, started again after
// failures) on gateway.networking.k8s.io/v1 HTTPRoutes and GRPCRoutes in every namespace and on
// Services (their ports and port names, and their traffic annotations, filtered by
// trafficAnnotations of src/core/routes/service-annotations.ts). Every route goes through the same
// validation as a `trellis apply -f` document (validateRoute); an invalid one is left out, logged
// once per version (generation and annotations) with the field and reason, and the others still apply.
//
// After every change (batched per turn of the event loop) the status of every route is written
// back by the RouteStatusWriter (status-writer.ts): Accepted / ResolvedRefs / PartiallyInvalid as
// status.ts computes them, Accepted=False UnsupportedValue naming the field for an invalid route.
// Only the group, version and kinds matter: the upstream Gateway API CRDs work as well as ours
// (deploy/gateway-api-crds.yaml).
import {
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  setHeaderOptions,
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
  type V1Service,
} from '@kubernetes/client-node';
import type { Logger } from '../../core/log.ts';
import { Registry } from '../../core/prometheus.ts';
import { validateRoute, type RouteIssue } from '../../core/routes/parse.ts';
import type { RouteResource } from '../../core/routes/schema.ts';
import { trafficAnnotations } from '../../core/routes/service-annotations.ts';
import { ResourceInformer } from '../discovery/kubernetes-informer.ts';
import { ChangeListeners } from '../policy/source.ts';
import { routeParents, type RouteObject } from './kubernetes-status.ts';
import type { RouteSnapshot } from './route-set.ts';
import type { RouteSource } from './source.ts';
import type { ServiceIndex } from './status.ts';
import { RouteStatusWriter, type StatusTarget } from './status-writer.ts';

export const GATEWAY_GROUP = 'gateway.networking.k8s.io';
export const GATEWAY_VERSION = 'v1';
/** The route kinds watched, with their plurals. */
export const ROUTE_PLURALS = { HTTPRoute: 'httproutes', GRPCRoute: 'grpcroutes' } as const;
type RouteKind = keyof typeof ROUTE_PLURALS;

export interface KubernetesRouteSourceOptions {
  readonly kubeConfig: KubeConfig;
  readonly log: Logger;
  /** First delay before an informer (or a failed status write) is tried again. Default 1000 ms. */
  readonly retryDelayMs?: number;
  /** Write route status back (default true). */
  readonly writeStatus?: boolean;
}

type Parsed = { readonly route: RouteResource | null; readonly issues: readonly RouteIssue[] };

export class KubernetesRouteSource implements RouteSource {
  readonly #routes: ReadonlyMap<RouteKind, ResourceInformer<KubernetesObject>>;
  readonly #services: ResourceInformer<V1Service>;
  readonly #log: Logger;
  readonly #listeners: ChangeListeners;
  readonly #ready: Promise<void>;
  readonly #writer: RouteStatusWriter | null;
  /** Validated routes by uid: the resourceVersion they were validated at, and the result. */
  readonly #parsed = new Map<string, { version: string; parsed: Parsed }>();
  #snapshot: RouteSnapshot | null = null;
  #notify: NodeJS.Immediate | null = null;
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
      (what: string) =>
      (error: Error): void => {
        const missing = (error.cause as { code?: unknown } | undefined)?.code === 404;
        this.#log.warn(
          missing
            ? `no ${what} in the API: install the Gateway API CRDs (trellis install --crds); retrying`
            : 'route informer failed; retrying',
          { resource: what, error: error.message, cause: error.cause },
        );
      };
    // The source is ready once the Services are listed and each route kind was listed or failed
    // once: a cluster without the Gateway API CRDs (404) has no routes, not a control plane that
    // never gets ready; the informer keeps trying (backoff to 30 s) and the routes come later.
    const firstTries: Promise<void>[] = [];
    const routeInformer = (plural: string): ResourceInformer<KubernetesObject> => {
      let tried: () => void = () => {};
      firstTries.push(new Promise<void>((resolve) => (tried = resolve)));
      const informer = new ResourceInformer<KubernetesObject>(
        kubeConfig,
        `/apis/${GATEWAY_GROUP}/${GATEWAY_VERSION}/${plural}`,
        () =>
          custom.listClusterCustomObject({
            group: GATEWAY_GROUP,
            version: GATEWAY_VERSION,
            plural,
          }) as Promise<KubernetesListObject<KubernetesObject>>,
        () => this.#changed(),
        {
          retryDelayMs,
          onError: (error) => {
            tried();
            onError(`${plural}.${GATEWAY_GROUP}`)(error);
          },
        },
      );
      void informer.synced.then(tried);
      return informer;
    };
    this.#routes = new Map(
      (Object.entries(ROUTE_PLURALS) as [RouteKind, string][]).map(([kind, plural]) => [
        kind,
        routeInformer(plural),
      ]),
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
              await custom.patchNamespacedCustomObjectStatus(
                {
                  group: GATEWAY_GROUP,
                  version: GATEWAY_VERSION,
                  plural: ROUTE_PLURALS[target.kind as RouteKind],
                  namespace: target.namespace,
                  name: target.name,
                  body,
                },
                mergePatch,
              );
            },
          });
    const informers = [...this.#routes.values(), this.#services];
    this.#ready = Promise.all([this.#services.synced, ...firstTries]).then(() => {
      this.#synced = true;
      this.#changed();
    });
    for (const informer of informers) void informer.start();
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
      'Route status patches sent to the Kubernetes API, by result.',
      ['result'],
    );
    const counts = this.statusWrites;
    writes.labels('written').inc(counts.written);
    writes.labels('conflict').inc(counts.conflicts);
    writes.labels('failed').inc(counts.failed);
    return registry.render();
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#listeners.clear();
    this.#writer?.close();
    if (this.#notify !== null) clearImmediate(this.#notify);
    await Promise.all([...this.#routes.values(), this.#services].map((i) => i.stop()));
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
    const { services } = this.snapshot();
    const targets: StatusTarget[] = [];
    for (const [kind, informer] of this.#routes)
      for (const object of informer.cache.list()) {
        const meta = object.metadata ?? {};
        if (meta.name === undefined || meta.namespace === undefined) continue;
        const parsed = this.#parse(kind, object);
        targets.push({
          key: uidOf(kind, object),
          kind,
          namespace: meta.namespace,
          name: meta.name,
          object: object as RouteObject,
          desired: routeParents(object as RouteObject, parsed, services),
        });
      }
    this.#writer.sync(targets, () => this.#writeStatus());
  }

  #build(): RouteSnapshot {
    const routes: RouteResource[] = [];
    const live = new Set<string>();
    for (const [kind, informer] of this.#routes)
      for (const object of informer.cache.list()) {
        live.add(uidOf(kind, object));
        const { route } = this.#parse(kind, object);
        if (route !== null) routes.push(route);
      }
    for (const uid of this.#parsed.keys()) if (!live.has(uid)) this.#parsed.delete(uid);
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
    return { routes, services: services as ServiceIndex, serviceAnnotations };
  }

  /** The route validated as `trellis apply` would (cached per version); logs a refusal once. */
  #parse(kind: RouteKind, object: KubernetesObject): Parsed {
    const meta = object.metadata ?? {};
    const uid = uidOf(kind, object);
    // What validation reads changes the generation (the spec) or the annotations; a status write
    // changes neither, so it does not validate (and log a refusal) again.
    const version =
      meta.generation === undefined
        ? (meta.resourceVersion ?? '')
        : `${meta.generation}/${JSON.stringify([meta.labels, meta.annotations])}`;
    const cached = this.#parsed.get(uid);
    if (cached !== undefined && cached.version === version) return cached.parsed;
    // Only the fields the schema knows: the API server adds uid, resourceVersion, managedFields...
    const created = meta.creationTimestamp as unknown;
    const document = {
      apiVersion: object.apiVersion ?? `${GATEWAY_GROUP}/${GATEWAY_VERSION}`,
      kind: object.kind ?? kind,
      metadata: {
        name: meta.name,
        namespace: meta.namespace,
        ...(meta.labels === undefined ? {} : { labels: meta.labels }),
        ...(meta.annotations === undefined ? {} : { annotations: meta.annotations }),
        ...(created === undefined
          ? {}
          : { creationTimestamp: created instanceof Date ? created.toISOString() : created }),
      },
      spec: (object as { spec?: unknown }).spec ?? {},
    };
    let parsed: Parsed;
    try {
      parsed = validateRoute(document);
    } catch (error) {
      parsed = { route: null, issues: [{ path: [], message: (error as Error).message }] };
    }
    if (parsed.route === null)
      this.#log.warn('invalid route skipped', {
        route: `${kind} ${meta.namespace ?? ''}/${meta.name ?? ''}`,
        problem: parsed.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '),
      });
    this.#parsed.set(uid, { version, parsed });
    return parsed;
  }
}

function uidOf(kind: string, object: KubernetesObject): string {
  const meta = object.metadata ?? {};
  return meta.uid ?? `${kind}/${meta.namespace ?? ''}/${meta.name ?? ''}`;
}
