// HTTPFault (traffic.trellis.dev/v1alpha1): fault injection for a route rule, referenced from an
// HTTPRoute or GRPCRoute rule by a filter `{type: ExtensionRef, extensionRef: {group:
// traffic.trellis.dev, kind: HTTPFault, name}}` in the route's namespace (the Gateway API has no
// fault kind). Modelled on Istio's HTTPFaultInjection and Envoy's fault filter:
//
//   apiVersion: traffic.trellis.dev/v1alpha1
//   kind: HTTPFault
//   metadata: { name: flaky, namespace: shop }
//   spec:
//     abort:                # answer without forwarding
//       httpStatus: 503     # 200..599; or grpcStatus: UNAVAILABLE (a gRPC status name)
//       percentage: 10      # of requests, 0..100 with decimals; default 100
//     delay:                # wait, then go on
//       fixedDelay: 2s      # a Gateway API duration, at most 1h
//       percentage: 50
//
// At least one of abort and delay. The delay is drawn first, then the abort (as Envoy does): a
// request may be delayed and then aborted. For a gRPC request an httpStatus answers with the gRPC
// status the gRPC spec maps it to; for another request a grpcStatus answers with the HTTP status
// Envoy maps that status to. Validation, the document form and the status mappings are pure;
// used by `trellis apply` (src/control/resources.ts), the state folder and the proxy
// (src/proxy/route/route-table.ts), so both ends accept the same faults.
import * as v from 'valibot';
import { duration, metadataSchema, objectIssue } from './schema-common.ts';
import { parseGatewayDuration } from './duration.ts';
import { schemaIssues, type RouteIssue } from './parse.ts';

export const FAULT_GROUP = 'traffic.trellis.dev';
export const FAULT_API_VERSION = `${FAULT_GROUP}/v1alpha1`;
export const FAULT_KIND = 'HTTPFault';
/** The longest delay a fault may ask for. */
export const MAX_FAULT_DELAY_MS = 3_600_000;

/** gRPC status codes by name (grpc/doc/statuscodes.md). */
export const GRPC_STATUS_CODES = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;
type GrpcStatusName = keyof typeof GRPC_STATUS_CODES;
const GRPC_NAMES = Object.keys(GRPC_STATUS_CODES) as GrpcStatusName[];

const percentage = v.optional(
  v.pipe(
    v.number('expected a percentage 0..100'),
    v.finite('expected a percentage 0..100'),
    v.minValue(0, 'expected a percentage 0..100'),
    v.maxValue(100, 'expected a percentage 0..100'),
  ),
  100,
);

const abortSchema = v.pipe(
  v.strictObject(
    {
      httpStatus: v.optional(
        v.pipe(
          v.number('expected an HTTP status 200..599'),
          v.integer('expected an HTTP status 200..599'),
          v.minValue(200, 'expected an HTTP status 200..599'),
          v.maxValue(599, 'expected an HTTP status 200..599'),
        ),
      ),
      grpcStatus: v.optional(
        v.picklist(
          GRPC_NAMES.filter((n) => n !== 'OK'),
          'expected a gRPC status name other than OK, such as UNAVAILABLE',
        ),
      ),
      percentage,
    },
    objectIssue,
  ),
  v.check(
    (a) => (a.httpStatus === undefined) !== (a.grpcStatus === undefined),
    'give httpStatus or grpcStatus (one of them)',
  ),
);

const delaySchema = v.strictObject(
  {
    fixedDelay: v.pipe(
      duration,
      v.check((d) => (parseGatewayDuration(d) ?? 0) <= MAX_FAULT_DELAY_MS, 'at most 1h'),
    ),
    percentage,
  },
  objectIssue,
);

export const faultSchema = v.strictObject(
  {
    apiVersion: v.literal(FAULT_API_VERSION, `expected ${FAULT_API_VERSION}`),
    kind: v.literal(FAULT_KIND, `expected ${FAULT_KIND}`),
    metadata: metadataSchema,
    spec: v.pipe(
      v.strictObject({ abort: v.optional(abortSchema), delay: v.optional(delaySchema) }, objectIssue),
      v.check((s) => s.abort !== undefined || s.delay !== undefined, 'give abort, delay or both'),
    ),
  },
  objectIssue,
);

export type FaultSpec = v.InferOutput<typeof faultSchema>['spec'];

export interface FaultResource {
  readonly kind: 'HTTPFault';
  readonly namespace: string;
  readonly name: string;
  readonly spec: FaultSpec;
}

/** A fault as the proxy applies it: chances in [0, 1], statuses resolved. */
export interface CompiledFault {
  readonly name: string;
  readonly abortChance: number;
  /** The HTTP status of an abort (for a gRPC request too, when the fault gave an httpStatus). */
  readonly abortHttpStatus: number;
  /** The gRPC status of an abort of a gRPC request. */
  readonly abortGrpcStatus: number;
  readonly delayChance: number;
  readonly delayMs: number;
}

/** The fault, or null with every issue found. */
export function validateFault(raw: unknown): { fault: FaultResource | null; issues: RouteIssue[] } {
  const result = v.safeParse(faultSchema, raw);
  if (!result.success) return { fault: null, issues: schemaIssues(result.issues) };
  const { metadata, spec } = result.output;
  return {
    fault: { kind: FAULT_KIND, namespace: metadata.namespace, name: metadata.name, spec },
    issues: [],
  };
}

/** The fault as a Kubernetes-shaped document (a state file; what the route API carries as spec). */
export function faultDocument(fault: FaultResource): Record<string, unknown> {
  return {
    apiVersion: FAULT_API_VERSION,
    kind: FAULT_KIND,
    metadata: { name: fault.name, namespace: fault.namespace },
    spec: fault.spec,
  };
}

/** True when an ExtensionRef names the HTTPFault kind. */
export function refersToFault(ref: { readonly group: string; readonly kind: string }): boolean {
  return ref.group === FAULT_GROUP && ref.kind === FAULT_KIND;
}

export function compileFault(fault: FaultResource): CompiledFault {
  const { abort, delay } = fault.spec;
  const grpcName = abort?.grpcStatus;
  const httpStatus = abort?.httpStatus;
  return {
    name: `${fault.namespace}/${fault.name}`,
    abortChance: abort === undefined ? 0 : abort.percentage / 100,
    abortHttpStatus:
      httpStatus ?? (grpcName === undefined ? 500 : httpStatusForGrpc(GRPC_STATUS_CODES[grpcName])),
    abortGrpcStatus:
      grpcName === undefined ? grpcStatusForHttp(httpStatus ?? 500) : GRPC_STATUS_CODES[grpcName],
    delayChance: delay === undefined ? 0 : delay.percentage / 100,
    delayMs: delay === undefined ? 0 : (parseGatewayDuration(delay.fixedDelay) ?? 0),
  };
}

/** The gRPC status of an HTTP status (grpc/doc/http-grpc-status-mapping.md). */
export function grpcStatusForHttp(status: number): number {
  switch (status) {
    case 400:
      return GRPC_STATUS_CODES.INTERNAL;
    case 401:
      return GRPC_STATUS_CODES.UNAUTHENTICATED;
    case 403:
      return GRPC_STATUS_CODES.PERMISSION_DENIED;
    case 404:
      return GRPC_STATUS_CODES.UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
      return GRPC_STATUS_CODES.UNAVAILABLE;
    default:
      return GRPC_STATUS_CODES.UNKNOWN;
  }
}

/** The HTTP status of a gRPC status (Envoy's Grpc::Utility::grpcToHttpStatus). */
export function httpStatusForGrpc(code: number): number {
  switch (code) {
    case GRPC_STATUS_CODES.OK:
      return 200;
    case GRPC_STATUS_CODES.CANCELLED:
      return 499;
    case GRPC_STATUS_CODES.INVALID_ARGUMENT:
    case GRPC_STATUS_CODES.FAILED_PRECONDITION:
    case GRPC_STATUS_CODES.OUT_OF_RANGE:
      return 400;
    case GRPC_STATUS_CODES.DEADLINE_EXCEEDED:
      return 504;
    case GRPC_STATUS_CODES.NOT_FOUND:
      return 404;
    case GRPC_STATUS_CODES.ALREADY_EXISTS:
    case GRPC_STATUS_CODES.ABORTED:
      return 409;
    case GRPC_STATUS_CODES.PERMISSION_DENIED:
      return 403;
    case GRPC_STATUS_CODES.RESOURCE_EXHAUSTED:
      return 429;
    case GRPC_STATUS_CODES.UNIMPLEMENTED:
      return 501;
    case GRPC_STATUS_CODES.UNAVAILABLE:
      return 503;
    case GRPC_STATUS_CODES.UNAUTHENTICATED:
      return 401;
    default:
      return 500;
  }
}
