// The status the control plane writes back into an XBackendTrafficPolicy on Kubernetes, in the
// Gateway API's policy attachment form (GEP-713 PolicyStatus): one entry in `status.ancestors`
// per targeted Service (the Service is the ancestor: in the mesh there is no Gateway above it),
// with an Accepted condition:
//
//   True/Accepted        the policy sets the Service's retry budget (the message says which, and
//                        that it replaces the Service's retry.trellis.io/budget-* annotations)
//   False/Invalid        the policy does not validate (the message names the field)
//   False/TargetNotFound no such Service in the policy's namespace
//   False/Conflicted     an older policy already targets the Service (the older one wins)
//
// Written by the RouteStatusWriter with POLICY_STATUS (kubernetes-status.ts statusPatch). Pure.
import {
  backendPolicyFor,
  retryBudgetOf,
  type BackendPolicyResource,
} from '../../core/routes/backend-traffic-policy.ts';
import type { RouteIssue } from '../../core/routes/parse.ts';
import {
  cleanParentRef,
  isService,
  POLICY_STATUS,
  type ParentEntry,
  type RouteObject,
} from './kubernetes-status.ts';
import { CONTROLLER_NAME, type ServiceIndex } from './status.ts';

const accepted = (status: 'True' | 'False', reason: string, message: string): ParentEntry['conditions'] => [
  { type: 'Accepted', status, reason, message },
];

/** This controller's ancestor entries for a policy: valid (`policy`) or refused (`issues`). */
export function backendPolicyAncestors(
  object: RouteObject & { readonly metadata?: { readonly namespace?: string } },
  parsed: { readonly policy: BackendPolicyResource | null; readonly issues: readonly RouteIssue[] },
  services: ServiceIndex,
  policies: readonly BackendPolicyResource[],
  serviceAnnotations: ReadonlyMap<string, Readonly<Record<string, string>>>,
): ParentEntry[] {
  const namespace = object.metadata?.namespace ?? 'default';
  const policy = parsed.policy;
  if (policy === null) {
    const problem = parsed.issues
      .map((i) => `${i.path.length === 0 ? '(policy)' : i.path.join('.')}: ${i.message}`)
      .join('; ');
    const refs = (object.spec as { targetRefs?: unknown } | undefined)?.targetRefs;
    const entries: ParentEntry[] = [];
    for (const raw of Array.isArray(refs) ? refs.slice(0, POLICY_STATUS.max) : []) {
      const ref = cleanParentRef(raw);
      if (ref === null || !isService(ref) || entries.some((e) => e.parentRef['name'] === ref['name']))
        continue;
      entries.push({
        parentRef: { group: '', kind: 'Service', namespace, name: ref['name']! },
        controllerName: CONTROLLER_NAME,
        conditions: accepted('False', 'Invalid', `invalid policy, not applied: ${problem}`),
      });
    }
    return entries;
  }
  return policy.spec.targetRefs.map((ref) => {
    const key = `${policy.namespace}/${ref.name}`;
    const winner = backendPolicyFor(policies, policy.namespace, ref.name);
    const budget = retryBudgetOf(policy);
    const replaces = Object.keys(serviceAnnotations.get(key) ?? {}).some((a) =>
      a.startsWith('retry.trellis.io/budget-'),
    );
    const conditions = !services.has(key)
      ? accepted('False', 'TargetNotFound', `no Service ${ref.name} in namespace ${policy.namespace}`)
      : winner !== null && (winner.namespace !== policy.namespace || winner.name !== policy.name)
        ? accepted(
            'False',
            'Conflicted',
            `the older XBackendTrafficPolicy ${winner.namespace}/${winner.name} sets the retry budget of Service ${key}`,
          )
        : accepted(
            'True',
            'Accepted',
            `retry budget of Service ${key}: ${budget.ratio * 100}% of requests over ${budget.windowMs / 1000}s plus ${budget.minPerSecond} a second` +
              (replaces ? ' (in place of its retry.trellis.io/budget-* annotations)' : ''),
          );
    return {
      parentRef: { group: '', kind: 'Service', namespace: policy.namespace, name: ref.name },
      controllerName: CONTROLLER_NAME,
      conditions,
    };
  });
}
