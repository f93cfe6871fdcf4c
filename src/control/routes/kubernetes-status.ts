// The status the control plane writes back into an HTTPRoute or GRPCRoute on Kubernetes, as pure
// functions (the writer, status-writer.ts, sends what they return):
//
//   routeParents      this controller's RouteParentStatus entries for a route, one per parentRef
//                     that is a Service (a Gateway's belong to its own controller): status.ts's
//                     conditions for a valid route (with the HTTPFaults known, and the problems
//                     of invalid ones its ExtensionRefs may name); for one our schema refuses, Accepted=False
//                     with reason UnsupportedValue and a message naming the field, for every
//                     parentRef that can be read at all
//   statusPatch       the JSON merge patch (RFC 7386) of `status.parents` that puts those entries
//                     in place of ours, keeping the entries of other controllers as they are, each
//                     condition with observedGeneration and a lastTransitionTime kept when its
//                     status did not change; null when the object already says exactly that (so
//                     the writer never writes twice for one state: no write storms)
//
// A policy's status (XBackendTrafficPolicy, backend-policy-status.ts) has the same form under
// other names: `status.ancestors` of entries with an `ancestorRef` (POLICY_STATUS); statusPatch
// writes either.
//
// A merge patch replaces a list whole, so the patch carries every entry, and the object's
// metadata.resourceVersion as a precondition: a patch computed from a stale copy fails with 409
// instead of undoing another controller's write.
import { isDeepStrictEqual } from 'node:util';
import type { FaultResource } from '../../core/routes/fault.ts';
import type { RouteIssue } from '../../core/routes/parse.ts';
import type { RouteResource } from '../../core/routes/schema.ts';
import type { UnsentRoutes } from './route-bound.ts';
import { CONTROLLER_NAME, routeStatus, type ServiceIndex } from './status.ts';

/** The parts of a route object as the API server holds it that status writing reads. */
export interface RouteObject {
  readonly metadata?: {
    readonly resourceVersion?: string;
    readonly generation?: number;
  };
  readonly spec?: unknown;
  readonly status?: unknown;
}

/** A parentRef as written in status (the spec's fields, absent ones left out). */
export type StatusParentRef = Readonly<Record<string, string | number>>;

export interface ParentEntry {
  readonly parentRef: StatusParentRef;
  readonly controllerName: string;
  readonly conditions: readonly { type: string; status: 'True' | 'False'; reason: string; message: string }[];
}

/** Conditions' messages are kept short (the CRD allows 32768 characters). */
const MAX_MESSAGE = 1024;
/** The CRD's maxItems of status.parents. */
export const MAX_STATUS_PARENTS = 32;
const PARENT_REF_FIELDS = ['group', 'kind', 'namespace', 'name', 'sectionName', 'port'] as const;

/** Where the entries live in a status: a route's parents, a policy's ancestors (PolicyStatus). */
export interface StatusShape {
  readonly list: 'parents' | 'ancestors';
  readonly ref: 'parentRef' | 'ancestorRef';
  /** The CRD's maxItems of the list. */
  readonly max: number;
}

export const ROUTE_STATUS: StatusShape = { list: 'parents', ref: 'parentRef', max: MAX_STATUS_PARENTS };
export const POLICY_STATUS: StatusShape = { list: 'ancestors', ref: 'ancestorRef', max: 16 };

/** This controller's entries for a route: valid (`route`) or refused (`issues`). */
export function routeParents(
  object: RouteObject,
  parsed: { readonly route: RouteResource | null; readonly issues: readonly RouteIssue[] },
  services: ServiceIndex,
  faults: readonly FaultResource[] = [],
  invalidFaults: ReadonlyMap<string, string> = new Map(),
  unsent: UnsentRoutes = new Map(),
): ParentEntry[] {
  if (parsed.route !== null)
    return routeStatus(parsed.route, services, faults, invalidFaults, unsent)
      .filter((p) => isService(p.parentRef))
      .map((p) => ({
        parentRef: cleanParentRef(p.parentRef as Record<string, unknown>) ?? {},
        controllerName: p.controllerName,
        conditions: p.conditions,
      }));
  const problem = parsed.issues
    .map((i) => `${i.path.length === 0 ? '(route)' : i.path.join('.')}: ${i.message}`)
    .join('; ');
  const message = `invalid route, not applied: ${problem}`.slice(0, MAX_MESSAGE);
  const refs = (object.spec as { parentRefs?: unknown } | undefined)?.parentRefs;
  if (!Array.isArray(refs)) return [];
  const entries: ParentEntry[] = [];
  for (const raw of refs.slice(0, MAX_STATUS_PARENTS)) {
    const parentRef = cleanParentRef(raw);
    if (
      parentRef === null ||
      !isService(parentRef) ||
      entries.some((e) => isDeepStrictEqual(e.parentRef, parentRef))
    )
      continue;
    entries.push({
      parentRef,
      controllerName: CONTROLLER_NAME,
      conditions: [{ type: 'Accepted', status: 'False', reason: 'UnsupportedValue', message }],
    });
  }
  return entries;
}

/**
 * Whether a parentRef is a Service (group "" and kind Service, both written: absent, they default
 * to a Gateway). Other parents belong to other controllers: Trellis writes no entry for them.
 */
export function isService(ref: { readonly group?: unknown; readonly kind?: unknown }): boolean {
  return ref.group === '' && ref.kind === 'Service';
}

/** The fields of a parentRef the status may hold, or null when it has no usable name. */
export function cleanParentRef(raw: unknown): StatusParentRef | null {
  if (typeof raw !== 'object' || raw === null) return null;
  const ref = raw as Record<string, unknown>;
  if (typeof ref.name !== 'string' || ref.name === '') return null;
  const out: Record<string, string | number> = {};
  for (const field of PARENT_REF_FIELDS) {
    const value = ref[field];
    if (field === 'port' ? Number.isInteger(value) : typeof value === 'string') out[field] = value as string;
  }
  return out;
}

/**
 * The merge patch that makes `status.parents` (or the list of `shape`) hold `desired` as this
 * controller's entries (at time `now`, RFC 3339), or null when it already does.
 */
export function statusPatch(
  object: RouteObject,
  desired: readonly ParentEntry[],
  now: string,
  shape: StatusShape = ROUTE_STATUS,
): Record<string, unknown> | null {
  const status = object.status as Record<string, unknown> | null | undefined;
  const listed = typeof status === 'object' && status !== null ? status[shape.list] : undefined;
  const current: unknown[] = Array.isArray(listed) ? listed : [];
  const isOurs = (entry: unknown): entry is Record<string, unknown> =>
    typeof entry === 'object' &&
    entry !== null &&
    (entry as Record<string, unknown>).controllerName === CONTROLLER_NAME;
  const others = current.filter((e) => !isOurs(e));
  const ours = current.filter(isOurs);
  const generation = object.metadata?.generation;
  const written = desired.slice(0, Math.max(0, shape.max - others.length)).map((entry) => {
    const before = ours.find((e) => isDeepStrictEqual(e[shape.ref], entry.parentRef));
    const conditionsBefore = Array.isArray(before?.conditions) ? (before.conditions as unknown[]) : [];
    return {
      [shape.ref]: entry.parentRef,
      controllerName: CONTROLLER_NAME,
      conditions: entry.conditions.map((c) => {
        const previous = conditionsBefore.find(
          (p): p is Record<string, unknown> =>
            typeof p === 'object' && p !== null && (p as Record<string, unknown>).type === c.type,
        );
        const kept =
          previous !== undefined &&
          previous.status === c.status &&
          typeof previous.lastTransitionTime === 'string'
            ? previous.lastTransitionTime
            : now;
        return {
          type: c.type,
          status: c.status,
          reason: c.reason,
          message: c.message.slice(0, MAX_MESSAGE),
          ...(typeof generation === 'number' ? { observedGeneration: generation } : {}),
          lastTransitionTime: kept,
        };
      }),
    };
  });
  const parents = [...others, ...written];
  if (isDeepStrictEqual(JSON.parse(JSON.stringify(current)), JSON.parse(JSON.stringify(parents))))
    return null;
  return {
    metadata: { resourceVersion: object.metadata?.resourceVersion },
    status: { [shape.list]: parents },
  };
}
