// What `trellis uninject` removes from a pod (or pod template): exactly what admission.ts's
// injection adds (the trellis-init and trellis-proxy containers, wherever they are, the injected
// volumes, and the injector's annotations), as JSONPatch `remove` operations (patch.ts). A list or
// the annotations left empty are removed whole, so that uninjecting an injection that created them
// gives the pod back as it was. A pod without any of it gets no operations.
import { PROXY_CONTAINER_NAME, PROXY_INJECTED_ANNOTATION } from '../discovery/kubernetes-translate.ts';
import { pointerSegment, SKIPPED_ANNOTATION } from './admission.ts';
import type { RemoveOperation } from './patch.ts';
import { INIT_CONTAINER_NAME, injectedVolumes } from './proxy-containers.ts';

interface PodShape {
  metadata?: { annotations?: Record<string, unknown> };
  spec?: { containers?: unknown[]; initContainers?: unknown[]; volumes?: unknown[] };
}

const INJECTED_CONTAINERS = new Set([INIT_CONTAINER_NAME, PROXY_CONTAINER_NAME]);
const INJECTED_VOLUMES = new Set(injectedVolumes(false).map((v) => v['name'] as string));
const INJECTED_ANNOTATIONS = [PROXY_INJECTED_ANNOTATION, SKIPPED_ANNOTATION];

const named = (names: ReadonlySet<string>) => (item: unknown) =>
  typeof item === 'object' && item !== null && names.has((item as { name?: unknown }).name as string);

/** Removals of the items of `array` at `path` that `injected` picks, last first (indexes stay valid). */
function removeItems(
  array: unknown,
  path: string,
  injected: (item: unknown) => boolean,
  keepEmpty: boolean,
): RemoveOperation[] {
  if (!Array.isArray(array)) return [];
  const indexes = array.flatMap((item, i) => (injected(item) ? [i] : []));
  if (indexes.length === 0) return [];
  if (indexes.length === array.length && !keepEmpty) return [{ op: 'remove', path }];
  return indexes.reverse().map((i) => ({ op: 'remove', path: `${path}/${i}` }));
}

/** The operations that take the injection out of `pod`; none when it has none. */
export function uninjectPatch(pod: PodShape): RemoveOperation[] {
  const spec = pod.spec;
  const annotations = pod.metadata?.annotations;
  const keys =
    typeof annotations === 'object' && annotations !== null
      ? INJECTED_ANNOTATIONS.filter((key) => key in annotations)
      : [];
  const annotationOps: RemoveOperation[] =
    keys.length > 0 && keys.length === Object.keys(annotations!).length
      ? [{ op: 'remove', path: '/metadata/annotations' }]
      : keys.map((key) => ({ op: 'remove', path: `/metadata/annotations/${pointerSegment(key)}` }));
  if (typeof spec !== 'object' || spec === null) return annotationOps;
  return [
    ...annotationOps,
    ...removeItems(spec.initContainers, '/spec/initContainers', named(INJECTED_CONTAINERS), false),
    // A pod must keep its containers: a pod of nothing but a proxy keeps an empty list (invalid).
    ...removeItems(spec.containers, '/spec/containers', named(INJECTED_CONTAINERS), true),
    ...removeItems(spec.volumes, '/spec/volumes', named(INJECTED_VOLUMES), false),
  ];
}
