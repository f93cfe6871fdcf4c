// What the Kubernetes sources of the control plane (routes/kubernetes.ts, policy/kubernetes.ts)
// share about custom objects: an informer on one plural of a group and version in every namespace
// (the discovery watcher's ResourceInformer: list, then watch, started again after failures), the
// document the `trellis apply` schemas validate (only the fields they know: the API server adds
// uid, resourceVersion, managedFields...), and a cache of validation results per object, so an
// object is validated (and a refusal logged) once per version of what validation reads.
import {
  CustomObjectsApi,
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
} from '@kubernetes/client-node';
import { ResourceInformer } from './discovery/kubernetes-informer.ts';

export interface CustomResource {
  readonly group: string;
  readonly version: string;
  readonly plural: string;
}

/** An informer on `resource` in every namespace; `onChange` after every add, change or delete. */
export function customObjectInformer(
  kubeConfig: KubeConfig,
  resource: CustomResource,
  onChange: () => void,
  options: { readonly retryDelayMs: number; readonly onError: (error: Error) => void },
): ResourceInformer<KubernetesObject> {
  const custom = kubeConfig.makeApiClient(CustomObjectsApi);
  const { group, version, plural } = resource;
  return new ResourceInformer<KubernetesObject>(
    kubeConfig,
    `/apis/${group}/${version}/${plural}`,
    () =>
      custom.listClusterCustomObject({ group, version, plural }) as Promise<
        KubernetesListObject<KubernetesObject>
      >,
    onChange,
    options,
  );
}

/**
 * The object as a `trellis apply` document: apiVersion, kind (`kind` when the object has none),
 * metadata name, namespace, labels and annotations (and creationTimestamp when the schema takes
 * it), and spec.
 */
export function schemaDocument(
  object: KubernetesObject,
  kind: string,
  options: { readonly apiVersion?: string; readonly creationTimestamp?: boolean } = {},
): Record<string, unknown> {
  const meta = object.metadata ?? {};
  const created = meta.creationTimestamp as unknown;
  return {
    apiVersion: object.apiVersion ?? options.apiVersion,
    kind: object.kind ?? kind,
    metadata: {
      name: meta.name,
      namespace: meta.namespace,
      ...(meta.labels === undefined ? {} : { labels: meta.labels }),
      ...(meta.annotations === undefined ? {} : { annotations: meta.annotations }),
      ...(options.creationTimestamp !== true || created === undefined
        ? {}
        : { creationTimestamp: created instanceof Date ? created.toISOString() : created }),
    },
    spec: (object as { spec?: unknown }).spec ?? {},
  };
}

/** What identifies an object across versions: its uid, else kind/namespace/name. */
export function objectKey(kind: string, object: KubernetesObject): string {
  const meta = object.metadata ?? {};
  return meta.uid ?? `${kind}/${meta.namespace ?? ''}/${meta.name ?? ''}`;
}

/**
 * Validation results by object, each kept while the object's spec (generation), labels and
 * annotations stay the same: a status write changes none of them, so it does not validate again.
 */
export class ValidatedObjects<T> {
  readonly #entries = new Map<string, { version: string; value: T }>();
  #live = new Set<string>();

  /** The result for `object` (validated by `validate` when its version is new). */
  get(kind: string, object: KubernetesObject, validate: () => T): T {
    const meta = object.metadata ?? {};
    const key = objectKey(kind, object);
    this.#live.add(key);
    const version =
      meta.generation === undefined
        ? (meta.resourceVersion ?? '')
        : `${meta.generation}/${JSON.stringify([meta.labels, meta.annotations])}`;
    const cached = this.#entries.get(key);
    if (cached !== undefined && cached.version === version) return cached.value;
    const value = validate();
    this.#entries.set(key, { version, value });
    return value;
  }

  /** Forgets the objects not looked at (get) since the last prune: they are gone. */
  prune(): void {
    for (const key of this.#entries.keys()) if (!this.#live.has(key)) this.#entries.delete(key);
    this.#live = new Set();
  }
}
