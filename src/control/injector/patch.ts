// JSONPatch (RFC 6902) `add` and `remove` applied to a plain object: what the API server does with
// the injector's answer, done on the client side by `trellis inject` and `trellis uninject` (their
// YAML documents get the same operations through cli/manifest-edit.ts). Strict: every parent must
// exist and every index be in range, or it throws; the input is not changed.
import type { PatchOperation } from './admission.ts';

export interface RemoveOperation {
  readonly op: 'remove';
  readonly path: string;
}

export type AnyPatchOperation = PatchOperation | RemoveOperation;

/** The segments of an RFC 6901 pointer (`/a/b~1c` is a, b/c). */
export function pointerSegments(path: string): string[] {
  if (!path.startsWith('/')) throw new TypeError(`JSON pointer ${path} does not start with /`);
  return path
    .slice(1)
    .split('/')
    .map((s) => s.replaceAll('~1', '/').replaceAll('~0', '~'));
}

/** The index an array segment names: a decimal index, or `-` (the end) for `add`. */
export function arrayIndex(segment: string, length: number, op: 'add' | 'remove'): number {
  if (op === 'add' && segment === '-') return length;
  const index = /^(0|[1-9]\d*)$/.test(segment) ? Number(segment) : NaN;
  if (!(index <= (op === 'add' ? length : length - 1))) throw new TypeError(`bad array index ${segment}`);
  return index;
}

/** `document` with `operations` applied, in order; throws TypeError on a path that does not apply. */
export function applyPatch<T>(document: T, operations: readonly AnyPatchOperation[]): T {
  const root = structuredClone(document) as unknown;
  for (const operation of operations) {
    const segments = pointerSegments(operation.path);
    const last = segments.pop()!;
    let parent = root;
    for (const segment of segments) {
      const next =
        typeof parent === 'object' && parent !== null
          ? (parent as Record<string, unknown>)[segment]
          : undefined;
      if (next === undefined) throw new TypeError(`${operation.path}: ${segment} does not exist`);
      parent = next;
    }
    if (Array.isArray(parent)) {
      const index = arrayIndex(last, parent.length, operation.op);
      if (operation.op === 'add') parent.splice(index, 0, structuredClone(operation.value));
      else parent.splice(index, 1);
    } else if (typeof parent === 'object' && parent !== null) {
      const object = parent as Record<string, unknown>;
      if (operation.op === 'add') object[last] = structuredClone(operation.value);
      else if (!(last in object)) throw new TypeError(`${operation.path}: nothing to remove`);
      else delete object[last];
    } else throw new TypeError(`${operation.path}: the parent is not an object or array`);
  }
  return root as T;
}
