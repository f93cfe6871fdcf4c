// XBackendTrafficPolicy (gateway.networking.x-k8s.io/v1alpha1, the Gateway API's experimental
// BackendTrafficPolicy, apisx/v1alpha1/xbackendtrafficpolicy_types.go): the retry budget of the
// Services it targets, the same settings as the retry.trellis.io/budget-* annotations
// (service-annotations.ts):
//
//   apiVersion: gateway.networking.x-k8s.io/v1alpha1
//   kind: XBackendTrafficPolicy
//   metadata: { name: web-budget, namespace: shop }
//   spec:
//     targetRefs: [{ group: "", kind: Service, name: web }]   # 1..16 Services of its namespace
//     retryConstraint:
//       budget: { percent: 20, interval: 10s }        # -> budget-ratio 0.2, budget-ttl 10s
//       minRetryRate: { count: 10, interval: 1s }     # -> budget-min-per-second 10
//
// Defaults are the CRD's (percent 20, interval 10s; count 10, interval 1s). Trellis's budget
// counts in one-second buckets over at most a minute, so budget.interval is 1s..60s (upstream
// allows up to 1h) and is refused above; sessionPersistence is refused (Trellis has none), and so
// is a policy without retryConstraint (it would do nothing). Where two policies target one
// Service the older wins (creationTimestamp, then namespace/name: the Gateway API's policy
// attachment rule, GEP-713); the other is Conflicted. The winner's settings replace the Service's
// budget annotations (budgetAnnotations, merged where the control plane builds a Service's route
// set): the policy is the API of record whose status says it is Accepted. Pure.
import * as v from 'valibot';
import { parseGatewayDuration } from './duration.ts';
import { schemaIssues, type RouteIssue } from './parse.ts';
import { duration, listOf, metadataSchema, objectIssue, objectName } from './schema-common.ts';
import { MAX_BUDGET_MIN_PER_SECOND, type RetryBudgetPolicy } from './service-annotations.ts';

export const BACKEND_POLICY_GROUP = 'gateway.networking.x-k8s.io';
export const BACKEND_POLICY_VERSION = 'v1alpha1';
export const BACKEND_POLICY_API_VERSION = `${BACKEND_POLICY_GROUP}/${BACKEND_POLICY_VERSION}`;
export const BACKEND_POLICY_KIND = 'XBackendTrafficPolicy';
export const BACKEND_POLICY_PLURAL = 'xbackendtrafficpolicies';

const wholeNumber = (min: number, max: number) =>
  v.pipe(
    v.number(`expected a whole number ${min}..${max}`),
    v.integer(`expected a whole number ${min}..${max}`),
    v.minValue(min, `expected a whole number ${min}..${max}`),
    v.maxValue(max, `expected a whole number ${min}..${max}`),
  );

/** A duration in [minMs, maxMs], with the range in the message. */
const durationWithin = (minMs: number, maxMs: number, range: string) =>
  v.pipe(
    duration,
    v.check((d) => {
      const ms = parseGatewayDuration(d) ?? -1;
      return ms >= minMs && ms <= maxMs;
    }, `expected ${range}`),
  );

const targetRef = v.strictObject(
  {
    group: v.literal('', 'expected "" (the core group: only Services can be targeted)'),
    kind: v.literal('Service', 'expected Service (only Services can be targeted)'),
    name: objectName,
  },
  objectIssue,
);

const budgetSchema = v.strictObject(
  {
    percent: v.optional(wholeNumber(0, 100), 20),
    interval: v.optional(
      durationWithin(1000, 60_000, '1s..60s (Trellis counts the budget over at most a minute)'),
      '10s',
    ),
  },
  objectIssue,
);

const minRetryRateSchema = v.strictObject(
  {
    count: v.optional(wholeNumber(1, 1_000_000), 10),
    interval: v.optional(durationWithin(1, 3_600_000, 'a duration above 0 and at most 1h'), '1s'),
  },
  objectIssue,
);

export const backendPolicySchema = v.strictObject(
  {
    apiVersion: v.literal(BACKEND_POLICY_API_VERSION, `expected ${BACKEND_POLICY_API_VERSION}`),
    kind: v.literal(BACKEND_POLICY_KIND, `expected ${BACKEND_POLICY_KIND}`),
    metadata: metadataSchema,
    spec: v.strictObject(
      {
        targetRefs: v.pipe(
          listOf(targetRef, 16),
          v.minLength(1, 'needs at least one target'),
          v.check(
            (refs) => new Set(refs.map((r) => r.name)).size === refs.length,
            'two targetRefs name the same Service',
          ),
        ),
        retryConstraint: v.optional(
          v.strictObject(
            {
              budget: v.optional(budgetSchema, { percent: 20, interval: '10s' }),
              minRetryRate: v.optional(minRetryRateSchema, { count: 10, interval: '1s' }),
            },
            objectIssue,
          ),
          // Absent: refused below (the only thing a policy can do in Trellis).
        ),
        sessionPersistence: v.optional(
          v.custom(() => false, 'not supported: Trellis has no session persistence'),
        ),
      },
      objectIssue,
    ),
  },
  objectIssue,
);

type ParsedSpec = v.InferOutput<typeof backendPolicySchema>['spec'];

export interface BackendPolicySpec {
  readonly targetRefs: ParsedSpec['targetRefs'];
  readonly retryConstraint: NonNullable<ParsedSpec['retryConstraint']>;
}

export interface BackendPolicyResource {
  readonly kind: typeof BACKEND_POLICY_KIND;
  readonly namespace: string;
  readonly name: string;
  /** metadata.creationTimestamp in ms (the older of two conflicting policies wins). */
  readonly createdMs: number;
  readonly spec: BackendPolicySpec;
}

/** The policy, or null with every issue found. `createdMs` is used when metadata.creationTimestamp is absent. */
export function validateBackendPolicy(
  raw: unknown,
  createdMs = 0,
): { policy: BackendPolicyResource | null; issues: RouteIssue[] } {
  const result = v.safeParse(backendPolicySchema, raw);
  if (!result.success) return { policy: null, issues: schemaIssues(result.issues) };
  const { metadata, spec } = result.output;
  if (spec.retryConstraint === undefined)
    return {
      policy: null,
      issues: [
        { path: ['spec', 'retryConstraint'], message: 'required: Trellis applies only the retry budget' },
      ],
    };
  return {
    policy: {
      kind: BACKEND_POLICY_KIND,
      namespace: metadata.namespace,
      name: metadata.name,
      createdMs:
        metadata.creationTimestamp === undefined ? createdMs : Date.parse(metadata.creationTimestamp),
      spec: { targetRefs: spec.targetRefs, retryConstraint: spec.retryConstraint },
    },
    issues: [],
  };
}

/** The policy as a Kubernetes-shaped document (a state file; `trellis get`). */
export function backendPolicyDocument(policy: BackendPolicyResource): Record<string, unknown> {
  return {
    apiVersion: BACKEND_POLICY_API_VERSION,
    kind: BACKEND_POLICY_KIND,
    metadata: {
      name: policy.name,
      namespace: policy.namespace,
      creationTimestamp: new Date(policy.createdMs).toISOString(),
    },
    spec: policy.spec,
  };
}

/** The retry budget a policy gives: percent -> ratio, budget interval -> window, the rate a second. */
export function retryBudgetOf(policy: BackendPolicyResource): RetryBudgetPolicy {
  const { budget, minRetryRate } = policy.spec.retryConstraint;
  const rateSeconds = (parseGatewayDuration(minRetryRate.interval) ?? 1000) / 1000;
  return {
    ratio: budget.percent / 100,
    minPerSecond: Math.min(MAX_BUDGET_MIN_PER_SECOND, Number((minRetryRate.count / rateSeconds).toFixed(6))),
    windowMs: parseGatewayDuration(budget.interval) ?? 10_000,
  };
}

/** The budget as the retry.trellis.io/budget-* annotations (what a Service's route set carries). */
export function budgetAnnotations(budget: RetryBudgetPolicy): Record<string, string> {
  return {
    'retry.trellis.io/budget-ratio': String(budget.ratio),
    'retry.trellis.io/budget-min-per-second': String(budget.minPerSecond),
    'retry.trellis.io/budget-ttl': `${budget.windowMs}ms`,
  };
}

/** Older first (creationTimestamp, then namespace/name): the order in which policies win. */
export function compareBackendPolicies(a: BackendPolicyResource, b: BackendPolicyResource): number {
  return a.createdMs - b.createdMs || `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`);
}

/** True when `policy` targets the Service `namespace/name`. */
export function targetsService(policy: BackendPolicyResource, namespace: string, name: string): boolean {
  return policy.namespace === namespace && policy.spec.targetRefs.some((r) => r.name === name);
}

/** The policy in force for the Service `namespace/name` (the oldest that targets it), or null. */
export function backendPolicyFor(
  policies: readonly BackendPolicyResource[],
  namespace: string,
  name: string,
): BackendPolicyResource | null {
  let winner: BackendPolicyResource | null = null;
  for (const p of policies)
    if (targetsService(p, namespace, name) && (winner === null || compareBackendPolicies(p, winner) < 0))
      winner = p;
  return winner;
}
