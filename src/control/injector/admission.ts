// The injector's mutation as a pure function: an AdmissionReview v1 request for a Pod in, an
// AdmissionReview response out, with a JSONPatch (RFC 6902) that adds the proxy
// (proxy-containers.ts). The webhook server and `trellis inject` are meant to call this.
//
// A pod is injected when `trellis.dev/inject` is `enabled` on the pod, or on its namespace and the
// pod does not say `disabled`. Skipped, with the reason in the annotation `trellis.dev/inject-skipped`:
// hostNetwork pods (iptables would rewrite the node's rules) and the control plane's own pods. A
// pod that already has a `trellis-proxy` container is left exactly as it is (its container, and
// the `trellis.dev/proxy-injected` annotation, already tell why); so a second review of an
// injected pod changes nothing. The answer always allows the pod: a request the injector cannot
// read is allowed unchanged with a warning, never refused (a broken injector must not block pods).
import { PROXY_CONTAINER_NAME, PROXY_INJECTED_ANNOTATION } from '../discovery/kubernetes-translate.ts';
import {
  initContainer,
  injectedVolumes,
  proxyContainer,
  usesNativeSidecar,
  type InjectorConfig,
} from './proxy-containers.ts';

export const INJECT_ANNOTATION = 'trellis.dev/inject';
export const SKIPPED_ANNOTATION = 'trellis.dev/inject-skipped';

export interface PatchOperation {
  readonly op: 'add';
  readonly path: string;
  readonly value: unknown;
}

/** What the injector decided for one pod. */
export type InjectDecision =
  | { readonly action: 'inject'; readonly patch: PatchOperation[] }
  | { readonly action: 'skip'; readonly reason: string; readonly patch: PatchOperation[] }
  | { readonly action: 'none'; readonly reason: string };

interface PodShape {
  metadata?: { annotations?: Record<string, string>; namespace?: string };
  spec?: {
    hostNetwork?: boolean;
    containers?: { name?: string }[];
    initContainers?: { name?: string }[];
    volumes?: unknown[];
  };
}

/** RFC 6901: `~` is `~0` and `/` is `~1` in a path segment. */
export const pointerSegment = (key: string): string => key.replaceAll('~', '~0').replaceAll('/', '~1');

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/** Operations that set `annotations` on a pod whose annotations are `current` (maybe absent). */
function annotate(
  current: Record<string, string> | undefined,
  add: Record<string, string>,
): PatchOperation[] {
  if (current === undefined) return [{ op: 'add', path: '/metadata/annotations', value: add }];
  return Object.entries(add)
    .filter(([key, value]) => current[key] !== value)
    .map(([key, value]) => ({ op: 'add', path: `/metadata/annotations/${pointerSegment(key)}`, value }));
}

/** Operations that insert `items` at the front or the end of the array at `path` (maybe absent). */
function insert(
  array: unknown[] | undefined,
  path: string,
  items: unknown[],
  where: 'front' | 'end',
): PatchOperation[] {
  if (items.length === 0) return [];
  if (array === undefined) return [{ op: 'add', path, value: items }];
  return items.map((value, i) => ({ op: 'add', path: `${path}/${where === 'end' ? '-' : i}`, value }));
}

/**
 * Decides for `pod`, created in `namespace` (the request's; else the pod's own) whose annotations
 * are `namespaceAnnotations`. Throws TypeError only for a pod whose shape it cannot read; `review`
 * turns that into an unchanged, warned answer.
 */
export function decide(
  pod: PodShape,
  namespace: string | undefined,
  namespaceAnnotations: Readonly<Record<string, string>>,
  config: InjectorConfig,
): InjectDecision {
  const metadata = pod.metadata;
  const spec = pod.spec;
  if (!isObject(metadata)) throw new TypeError('the pod has no metadata');
  if (!isObject(spec) || !Array.isArray(spec.containers))
    throw new TypeError('the pod has no spec.containers');
  for (const [field, value] of Object.entries({
    'metadata.annotations': metadata.annotations,
    'spec.initContainers': spec.initContainers,
    'spec.volumes': spec.volumes,
  })) {
    const ok =
      value === undefined || (field === 'metadata.annotations' ? isObject(value) : Array.isArray(value));
    if (!ok) throw new TypeError(`the pod's ${field} has the wrong type`);
  }
  const annotations = metadata.annotations ?? {};
  const wanted = annotations[INJECT_ANNOTATION] ?? namespaceAnnotations[INJECT_ANNOTATION];
  if (wanted !== 'enabled') return { action: 'none', reason: `${INJECT_ANNOTATION} is not enabled` };
  const containers = [...spec.containers, ...(spec.initContainers ?? [])];
  if (containers.some((c) => isObject(c) && c.name === PROXY_CONTAINER_NAME))
    return { action: 'none', reason: 'already injected' };
  const skip = (reason: string): InjectDecision => ({
    action: 'skip',
    reason,
    patch: annotate(metadata.annotations, { [SKIPPED_ANNOTATION]: reason }),
  });
  if (spec.hostNetwork === true) return skip('hostNetwork');
  if ((namespace ?? metadata.namespace) === config.controlPlaneNamespace) return skip('control-plane');

  const native = usesNativeSidecar(config, annotations);
  const proxy = proxyContainer(config, annotations, native);
  const init = config.cni ? [] : [initContainer(config, annotations)];
  const patch = [
    ...annotate(metadata.annotations, { [PROXY_INJECTED_ANNOTATION]: 'true' }),
    // The native sidecar starts after init's rules and before the app's own init containers.
    ...insert(spec.initContainers, '/spec/initContainers', native ? [...init, proxy] : init, 'front'),
    ...(native ? [] : insert(spec.containers, '/spec/containers', [proxy], 'front')),
    ...insert(spec.volumes, '/spec/volumes', injectedVolumes(config.cni), 'end'),
  ];
  return { action: 'inject', patch };
}

export interface AdmissionReviewResponse {
  apiVersion: 'admission.k8s.io/v1';
  kind: 'AdmissionReview';
  response: {
    uid: string;
    allowed: true;
    patchType?: 'JSONPatch';
    /** base64 of the JSON array of operations */
    patch?: string;
    warnings?: string[];
  };
}

/**
 * Answers an AdmissionReview (any JSON value: malformed input is answered too, allowing the pod
 * unchanged with a warning). `namespaceAnnotations` are those of the request's namespace.
 */
export function review(
  body: unknown,
  namespaceAnnotations: Readonly<Record<string, string>>,
  config: InjectorConfig,
): AdmissionReviewResponse {
  const request = isObject(body) && isObject(body['request']) ? body['request'] : null;
  const uid = typeof request?.['uid'] === 'string' ? request['uid'] : '';
  const answer = (extra: Partial<AdmissionReviewResponse['response']>): AdmissionReviewResponse => ({
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    response: { uid, allowed: true, ...extra },
  });
  const kind = request?.['kind'];
  const pod = request?.['object'];
  if (!isObject(kind) || kind['kind'] !== 'Pod' || kind['group'] !== '' || !isObject(pod)) {
    return answer({ warnings: ['trellis injector: not a Pod review; allowed unchanged'] });
  }
  // The pod of a CREATE often has no namespace yet; the request's is the one it lands in.
  const namespace = typeof request?.['namespace'] === 'string' ? request['namespace'] : undefined;
  let decision: InjectDecision;
  try {
    decision = decide(pod as PodShape, namespace, namespaceAnnotations, config);
  } catch (error) {
    return answer({
      warnings: [`trellis injector: cannot inject (${(error as Error).message}); allowed unchanged`],
    });
  }
  if (decision.action === 'none' || decision.patch.length === 0) return answer({});
  return answer({
    patchType: 'JSONPatch',
    patch: Buffer.from(JSON.stringify(decision.patch)).toString('base64'),
  });
}
