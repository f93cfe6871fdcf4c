// The traffic policy a Service (or a route) carries in annotations, for the habits of Linkerd's
// users (retry.linkerd.io/*, timeout.linkerd.io/*, balancer.linkerd.io/*) under Trellis's own
// prefixes. Parsed the same way by `trellis apply` (which refuses a bad value, naming the
// annotation) and by the proxy (which gets the raw annotations with its route set and keeps its
// last good policy when one does not parse). Pure.
//
//   retry.trellis.io/http     "5xx", "500-504", "429", "gateway-error" (502, 503, 504), comma-separated
//   retry.trellis.io/grpc     gRPC status names: cancelled,deadline-exceeded,internal,
//                             resource-exhausted,unavailable (any of the 16, kebab-case)
//   retry.trellis.io/limit    retries after the first attempt (default 1, at most 10)
//   retry.trellis.io/timeout  each attempt's limit ("300ms"); a retried attempt may follow
//   retry.trellis.io/budget-ratio          retries per request over the window (default 0.2)
//   retry.trellis.io/budget-min-per-second retries a second whatever the requests (default 10;
//                                          decimals allowed: 0.1 is one retry in ten seconds)
//   retry.trellis.io/budget-ttl            the window (default 10s)
//   timeout.trellis.io/request             the whole exchange, retries included ("10s")
//   balancer.trellis.io/failure-accrual    consecutive | success-rate (off without it)
//   balancer.trellis.io/failure-accrual-max-failures  consecutive failures that trip (default 7)
//   balancer.trellis.io/failure-accrual-min-penalty   first penalty (default 1s)
//   balancer.trellis.io/failure-accrual-max-penalty   longest penalty (default 1m)
//   balancer.trellis.io/failure-accrual-jitter-ratio  penalty jitter (default 0.5)
//   balancer.trellis.io/failure-accrual-success-rate  trip below this rate (default 0.8)
//   balancer.trellis.io/failure-accrual-min-requests  requests before a rate counts (default 20)
//   balancer.trellis.io/failure-accrual-window        the rate's window (default 30s)
//   balancer.trellis.io/max-pending-requests          per backend, then 503 overflow
//   balancer.trellis.io/max-connections               per endpoint, then 503 overflow
//
// Durations are Gateway API durations ("500ms", "1m30s"). A route's annotations override its
// Service's, name by name.
import { parseGatewayDuration } from './duration.ts';

export const TRAFFIC_ANNOTATION_PREFIXES = [
  'retry.trellis.io/',
  'timeout.trellis.io/',
  'balancer.trellis.io/',
];

/** gRPC status codes by their kebab-case names (grpc/doc/statuscodes.md). */
export const GRPC_STATUS_NAMES: Readonly<Record<string, number>> = {
  ok: 0,
  cancelled: 1,
  unknown: 2,
  'invalid-argument': 3,
  'deadline-exceeded': 4,
  'not-found': 5,
  'already-exists': 6,
  'permission-denied': 7,
  'resource-exhausted': 8,
  'failed-precondition': 9,
  aborted: 10,
  'out-of-range': 11,
  unimplemented: 12,
  internal: 13,
  unavailable: 14,
  'data-loss': 15,
  unauthenticated: 16,
};

export interface AnnotationRetry {
  /** HTTP statuses retried (100..599), sorted. */
  readonly httpCodes: readonly number[];
  /** gRPC statuses retried, sorted. */
  readonly grpcCodes: readonly number[];
  readonly retries: number;
  /** Each attempt's limit, null: none. */
  readonly timeoutMs: number | null;
}

export interface RetryBudgetPolicy {
  readonly ratio: number;
  readonly minPerSecond: number;
  readonly windowMs: number;
}

export type FailureAccrualPolicy =
  | {
      readonly mode: 'consecutive';
      readonly maxFailures: number;
      readonly minPenaltyMs: number;
      readonly maxPenaltyMs: number;
      readonly jitterRatio: number;
    }
  | {
      readonly mode: 'success-rate';
      readonly successRate: number;
      readonly minRequests: number;
      readonly windowMs: number;
      readonly minPenaltyMs: number;
      readonly maxPenaltyMs: number;
      readonly jitterRatio: number;
    };

export interface ServiceTrafficPolicy {
  /** Retries asked for by annotation (null: none); a route rule's `retry` wins over it. */
  readonly retry: AnnotationRetry | null;
  readonly budget: RetryBudgetPolicy;
  /** timeout.trellis.io/request; null: none. */
  readonly requestTimeoutMs: number | null;
  readonly failureAccrual: FailureAccrualPolicy | null;
  readonly maxPendingRequests: number | null;
  readonly maxConnections: number | null;
}

export const DEFAULT_BUDGET: RetryBudgetPolicy = { ratio: 0.2, minPerSecond: 10, windowMs: 10_000 };

/** Whether two budgets allow the same (each route update brings its policy as new objects). */
export function sameBudget(a: RetryBudgetPolicy, b: RetryBudgetPolicy): boolean {
  return a.ratio === b.ratio && a.minPerSecond === b.minPerSecond && a.windowMs === b.windowMs;
}

export const NO_TRAFFIC_POLICY: ServiceTrafficPolicy = {
  retry: null,
  budget: DEFAULT_BUDGET,
  requestTimeoutMs: null,
  failureAccrual: null,
  maxPendingRequests: null,
  maxConnections: null,
};

/** The highest retry.trellis.io/budget-min-per-second. */
export const MAX_BUDGET_MIN_PER_SECOND = 100_000;

/**
 * The longest value read. A Service's annotations reach every proxy that calls it (Kubernetes lets
 * them hold 256 KiB): "100-599" 32,000 times cost ~300 ms of a proxy's event loop to read, for
 * the Service and again for each route with annotations, on every update. The longest sensible
 * value, every gRPC status name, is 216 characters.
 */
export const MAX_ANNOTATION_VALUE_LENGTH = 1024;

/** At most this many retries after the first attempt, whatever an annotation says. */
export const MAX_ANNOTATION_RETRIES = 10;

export interface AnnotationIssue {
  /** The annotation's name. */
  readonly annotation: string;
  readonly message: string;
}

/**
 * The problems of a resource's traffic annotations as field issues
 * (`metadata.annotations.<name>`), the way `trellis apply` and the route schema report fields.
 */
export function annotationFieldIssues(
  annotations: Readonly<Record<string, string>> | undefined,
): { path: (string | number)[]; message: string }[] {
  return parseTrafficAnnotations(annotations ?? {}).issues.map((issue) => ({
    path: ['metadata', 'annotations', issue.annotation],
    message: issue.message,
  }));
}

/** Only the annotations this file reads (what travels to proxies). */
export function trafficAnnotations(
  annotations: Readonly<Record<string, string>> | undefined,
): Record<string, string> {
  const out: Record<string, string> = {};
  if (annotations === undefined) return out;
  for (const [name, value] of Object.entries(annotations))
    if (TRAFFIC_ANNOTATION_PREFIXES.some((p) => name.startsWith(p))) out[name] = value;
  return out;
}

const KNOWN = new Set([
  'retry.trellis.io/http',
  'retry.trellis.io/grpc',
  'retry.trellis.io/limit',
  'retry.trellis.io/timeout',
  'retry.trellis.io/budget-ratio',
  'retry.trellis.io/budget-min-per-second',
  'retry.trellis.io/budget-ttl',
  'timeout.trellis.io/request',
  'balancer.trellis.io/failure-accrual',
  'balancer.trellis.io/failure-accrual-max-failures',
  'balancer.trellis.io/failure-accrual-min-penalty',
  'balancer.trellis.io/failure-accrual-max-penalty',
  'balancer.trellis.io/failure-accrual-jitter-ratio',
  'balancer.trellis.io/failure-accrual-success-rate',
  'balancer.trellis.io/failure-accrual-min-requests',
  'balancer.trellis.io/failure-accrual-window',
  'balancer.trellis.io/max-pending-requests',
  'balancer.trellis.io/max-connections',
]);

/**
 * The policy of `annotations` (a Service's, with a route's laid over it by the caller), and every
 * problem found. Unknown names under the Trellis prefixes are problems (typos are caught); a value
 * with a problem is left at its default.
 */
export function parseTrafficAnnotations(annotations: Readonly<Record<string, string>>): {
  readonly policy: ServiceTrafficPolicy;
  readonly issues: readonly AnnotationIssue[];
} {
  const issues: AnnotationIssue[] = [];
  const a = trafficAnnotations(annotations);
  for (const name of Object.keys(a))
    if (!KNOWN.has(name)) issues.push({ annotation: name, message: 'unknown Trellis annotation' });
  const read = <T>(name: string, parse: (text: string) => T | Problem, fallback: T): T => {
    const text = a[name];
    if (text === undefined) return fallback;
    if (text.length > MAX_ANNOTATION_VALUE_LENGTH) {
      issues.push({
        annotation: name,
        message: `at most ${MAX_ANNOTATION_VALUE_LENGTH} characters (got ${text.length})`,
      });
      return fallback;
    }
    const value = parse(text.trim());
    if (value instanceof Problem) {
      issues.push({ annotation: name, message: value.message });
      return fallback;
    }
    return value;
  };
  const duration = (text: string): number | Problem =>
    parseGatewayDuration(text) ??
    new Problem(`expected a duration such as 500ms or 1m30s, got ${JSON.stringify(text)}`);
  const positiveDuration = (text: string): number | Problem => {
    const ms = duration(text);
    return ms === 0 ? new Problem('expected a duration above 0') : ms;
  };
  const integer = (min: number, max: number) => (text: string) =>
    /^[0-9]{1,9}$/.test(text) && Number(text) >= min && Number(text) <= max
      ? Number(text)
      : new Problem(`expected a whole number ${min}..${max}, got ${JSON.stringify(text)}`);
  const fraction = (text: string): number | Problem =>
    /^(0(\.[0-9]{1,6})?|1(\.0{1,6})?)$/.test(text)
      ? Number(text)
      : new Problem(`expected a number 0..1, got ${JSON.stringify(text)}`);
  const orProblem = <T>(value: T | string): T | Problem =>
    typeof value === 'string' ? new Problem(value) : value;

  const httpCodes = read('retry.trellis.io/http', (t) => orProblem(parseHttpCodes(t)), [] as number[]);
  const grpcCodes = read('retry.trellis.io/grpc', (t) => orProblem(parseGrpcCodes(t)), [] as number[]);
  const retries = read('retry.trellis.io/limit', integer(0, MAX_ANNOTATION_RETRIES), 1);
  const attemptTimeout = read('retry.trellis.io/timeout', positiveDuration, null as number | null);
  const retry =
    httpCodes.length > 0 || grpcCodes.length > 0
      ? { httpCodes, grpcCodes, retries, timeoutMs: attemptTimeout }
      : null;
  const budget: RetryBudgetPolicy = {
    ratio: read('retry.trellis.io/budget-ratio', fraction, DEFAULT_BUDGET.ratio),
    minPerSecond: read(
      'retry.trellis.io/budget-min-per-second',
      (t) =>
        /^[0-9]{1,6}(\.[0-9]{1,6})?$/.test(t) && Number(t) <= MAX_BUDGET_MIN_PER_SECOND
          ? Number(t)
          : new Problem(
              `expected a number 0..${MAX_BUDGET_MIN_PER_SECOND} (up to 6 decimals), got ${JSON.stringify(t)}`,
            ),
      DEFAULT_BUDGET.minPerSecond,
    ),
    windowMs: read(
      'retry.trellis.io/budget-ttl',
      (t) => {
        const ms = duration(t);
        return ms instanceof Problem || (ms >= 1000 && ms <= 60_000) ? ms : new Problem('expected 1s..60s');
      },
      DEFAULT_BUDGET.windowMs,
    ),
  };
  const requestTimeoutMs = read('timeout.trellis.io/request', positiveDuration, null as number | null);

  const mode = read(
    'balancer.trellis.io/failure-accrual',
    (t) =>
      t === 'consecutive' || t === 'success-rate'
        ? t
        : new Problem(`expected consecutive or success-rate, got ${JSON.stringify(t)}`),
    null as 'consecutive' | 'success-rate' | null,
  );
  const minPenaltyMs = read('balancer.trellis.io/failure-accrual-min-penalty', positiveDuration, 1000);
  const maxPenaltyMs = read('balancer.trellis.io/failure-accrual-max-penalty', positiveDuration, 60_000);
  const jitterRatio = read('balancer.trellis.io/failure-accrual-jitter-ratio', fraction, 0.5);
  const maxFailures = read('balancer.trellis.io/failure-accrual-max-failures', integer(1, 1000), 7);
  const successRate = read('balancer.trellis.io/failure-accrual-success-rate', fraction, 0.8);
  const minRequests = read('balancer.trellis.io/failure-accrual-min-requests', integer(1, 100_000), 20);
  const windowMs = read('balancer.trellis.io/failure-accrual-window', positiveDuration, 30_000);
  if (maxPenaltyMs < minPenaltyMs)
    issues.push({
      annotation: 'balancer.trellis.io/failure-accrual-max-penalty',
      message: 'must not be shorter than failure-accrual-min-penalty',
    });
  const penalty = { minPenaltyMs, maxPenaltyMs: Math.max(minPenaltyMs, maxPenaltyMs), jitterRatio };
  const failureAccrual: FailureAccrualPolicy | null =
    mode === 'consecutive'
      ? { mode, maxFailures, ...penalty }
      : mode === 'success-rate'
        ? { mode, successRate, minRequests, windowMs, ...penalty }
        : null;
  return {
    policy: {
      retry,
      budget,
      requestTimeoutMs,
      failureAccrual,
      maxPendingRequests: read(
        'balancer.trellis.io/max-pending-requests',
        integer(1, 1_000_000),
        null as number | null,
      ),
      maxConnections: read(
        'balancer.trellis.io/max-connections',
        integer(1, 1_000_000),
        null as number | null,
      ),
    },
    issues,
  };
}

/** A value's problem (a class, so that a string value is never mistaken for one). */
class Problem {
  readonly message: string;
  constructor(message: string) {
    this.message = message;
  }
}

/** "5xx,429,500-504,gateway-error" as sorted statuses, or the problem. */
export function parseHttpCodes(text: string): number[] | string {
  const codes = new Set<number>();
  for (const raw of text.split(',')) {
    const part = raw.trim().toLowerCase();
    let range: [number, number] | null = null;
    if (part === 'gateway-error') range = [502, 504];
    else if (/^[1-5]xx$/.test(part)) range = [Number(part[0]) * 100, Number(part[0]) * 100 + 99];
    else if (/^[0-9]{3}$/.test(part)) range = [Number(part), Number(part)];
    else if (/^[0-9]{3}-[0-9]{3}$/.test(part)) range = [Number(part.slice(0, 3)), Number(part.slice(4))];
    if (range === null || range[0] < 100 || range[1] > 599 || range[0] > range[1])
      return `expected statuses such as 5xx, 429, 500-504 or gateway-error, got ${JSON.stringify(raw.trim())}`;
    for (let code = range[0]; code <= range[1]; code++) codes.add(code);
  }
  return [...codes].sort((x, y) => x - y);
}

/** "unavailable,deadline-exceeded" as sorted gRPC status codes, or the problem. */
export function parseGrpcCodes(text: string): number[] | string {
  const codes = new Set<number>();
  for (const raw of text.split(',')) {
    const code = GRPC_STATUS_NAMES[raw.trim().toLowerCase().replaceAll('_', '-')];
    if (code === undefined || code === 0)
      return `expected gRPC status names such as unavailable or deadline-exceeded, got ${JSON.stringify(raw.trim())}`;
    codes.add(code);
  }
  return [...codes].sort((x, y) => x - y);
}
