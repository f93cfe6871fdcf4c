// The Trellis resources route rules name through ExtensionRef filters (today HTTPFault,
// src/core/routes/fault.ts): which ones a set of routes uses, for the RouteSet (route-set.ts), and
// the first ExtensionRef of a route that names none, for its status (status.ts). Pure.
import { refersToFault, type FaultResource } from '../../core/routes/fault.ts';
import type { RouteResource } from '../../core/routes/schema.ts';

/** The HTTPFaults the routes' rules name (in each route's namespace), each once, by namespace/name. */
export function referencedFaults(
  routes: readonly RouteResource[],
  faults: readonly FaultResource[],
): FaultResource[] {
  const byKey = new Map(faults.map((f) => [`${f.namespace}/${f.name}`, f]));
  const out = new Map<string, FaultResource>();
  for (const route of routes)
    for (const rule of route.spec.rules)
      for (const filter of rule.filters) {
        const ref = filter.extensionRef;
        if (ref === undefined || !refersToFault(ref)) continue;
        const key = `${route.namespace}/${ref.name}`;
        const fault = byKey.get(key);
        if (fault !== undefined) out.set(key, fault);
      }
  return [...out.values()].sort((a, b) =>
    `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`),
  );
}

/**
 * The first ExtensionRef of `route` that cannot be applied: a rule's that names no HTTPFault of the
 * route's namespace (or one that is invalid: `invalid` holds "namespace/name" -> its problem, on
 * Kubernetes), or any backend's (none is implemented); null when every one resolves.
 */
export function unresolvedExtension(
  route: RouteResource,
  faults: readonly FaultResource[],
  invalid: ReadonlyMap<string, string> = new Map(),
): { rule: number; message: string } | null {
  const known = new Set(faults.map((f) => `${f.namespace}/${f.name}`));
  for (const [index, rule] of route.spec.rules.entries()) {
    for (const filter of rule.filters) {
      const ref = filter.extensionRef;
      if (ref === undefined) continue;
      if (!refersToFault(ref))
        return { rule: index, message: `ExtensionRef ${ref.group}/${ref.kind} is not implemented` };
      const problem = invalid.get(`${route.namespace}/${ref.name}`);
      if (problem !== undefined)
        return { rule: index, message: `HTTPFault ${route.namespace}/${ref.name} is invalid: ${problem}` };
      if (!known.has(`${route.namespace}/${ref.name}`))
        return {
          rule: index,
          message: `ExtensionRef names no HTTPFault ${ref.name} in namespace ${route.namespace}`,
        };
    }
    if (rule.backendRefs.some((b) => b.filters.some((f) => f.type === 'ExtensionRef')))
      return { rule: index, message: 'backend-level ExtensionRef filters are not implemented' };
  }
  return null;
}
