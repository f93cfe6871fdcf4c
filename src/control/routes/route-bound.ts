// Which routes go into one RouteSet when together they would take more bytes than a set may carry
// (ROUTE_SET_ROUTE_BYTES, src/api/route-set-bound.ts), for the set itself (route-set.ts) and for
// the status of the routes left out (status.ts: Accepted=False, reason RouteSetTooLarge). Pure.
//
// The routes of a set are looked at in the order of precedence the matcher ends on (the oldest
// creationTimestamp, then namespace/name, then kind): each is kept when the bytes it adds to the
// set fit in what is left of the bound, else it is left out and the next one is looked at. What a
// route adds: its Route message, and the unresolved backends and HTTPFaults it names that no
// route kept before it brought already. So an older route never loses its place to a newer one,
// a route too large for any set is left out on its own, and a small newer route still gets in
// after a large one was left out.
//
// A set is the routes of one namespace attached to one port of one Service (select.ts: a client
// gets its own namespace's consumer routes, else the producer routes of the Service's namespace),
// so every client that gets those routes gets the same choice, and a route's status can say, per
// port, whether it is sent.
import { ROUTE_SET_ROUTE_BYTES } from '../../api/route-set-bound.ts';
import type { FaultResource } from '../../core/routes/fault.ts';
import type { RouteResource } from '../../core/routes/schema.ts';
import { attachesTo, type ParentPort } from '../../core/routes/select.ts';
import { referencedFaults } from './extensions.ts';
import { unresolvedBackends, type ServiceIndex } from './status.ts';

/** A route left out of one set. */
export interface UnsentRoute {
  readonly route: RouteResource;
  /** The bytes it would have added to the set. */
  readonly bytes: number;
  /** The bytes of the routes kept before it. */
  readonly keptBytes: number;
}

export interface BoundedRoutes {
  /** The routes sent, in the order given. */
  readonly kept: RouteResource[];
  readonly unsent: UnsentRoute[];
}

/** Precedence among routes: the oldest first, then by namespace/name, then by kind (as the matcher, by code points). */
export function byPrecedence(a: RouteResource, b: RouteResource): number {
  return (
    a.createdMs - b.createdMs ||
    compareText(`${a.namespace}/${a.name}`, `${b.namespace}/${b.name}`) ||
    compareText(a.kind, b.kind)
  );
}

/** The routes of one set (in precedence order) that fit in `budget` bytes; see the file comment. */
export function boundRoutes(
  routes: readonly RouteResource[],
  services: ServiceIndex,
  faults: readonly FaultResource[],
  budget: number = ROUTE_SET_ROUTE_BYTES,
): BoundedRoutes {
  const kept: RouteResource[] = [];
  const unsent: UnsentRoute[] = [];
  const brought = new Set<string>(); // the unresolved backends and faults kept routes bring
  let used = 0;
  for (const route of routes) {
    const adds = new Map<string, number>();
    for (const backend of unresolvedBackends(route, services))
      if (!brought.has(`backend ${backend}`)) adds.set(`backend ${backend}`, stringField(backend));
    for (const fault of referencedFaults([route], faults)) {
      const key = `fault ${fault.namespace}/${fault.name}`;
      if (!brought.has(key)) adds.set(key, faultWireBytes(fault));
    }
    let bytes = routeWireBytes(route);
    for (const more of adds.values()) bytes += more;
    if (used + bytes > budget) {
      unsent.push({ route, bytes, keptBytes: used });
      continue;
    }
    kept.push(route);
    used += bytes;
    for (const key of adds.keys()) brought.add(key);
  }
  return { kept, unsent };
}

/** One port of one Service for which a route is not sent. */
export interface UnsentPort extends ParentPort {
  readonly bytes: number;
  readonly keptBytes: number;
}

/** "kind/namespace/name" of a route -> the Service ports it is left out for (absent: sent everywhere). */
export type UnsentRoutes = ReadonlyMap<string, readonly UnsentPort[]>;

export function routeKey(route: Pick<RouteResource, 'kind' | 'namespace' | 'name'>): string {
  return `${route.kind}/${route.namespace}/${route.name}`;
}

/** Every route left out of some set, over all the sets `routes` make with the Services known. */
export function unsentRoutes(
  routes: readonly RouteResource[],
  services: ServiceIndex,
  faults: readonly FaultResource[] = [],
  budget: number = ROUTE_SET_ROUTE_BYTES,
): UnsentRoutes {
  // The sets: "route namespace, Service, port" -> the port and its routes.
  const sets = new Map<string, { parent: ParentPort; routes: Set<RouteResource> }>();
  for (const route of routes)
    for (const ref of route.spec.parentRefs) {
      if (ref.group !== '' || ref.kind !== 'Service') continue;
      const namespace = ref.namespace ?? route.namespace;
      for (const port of services.get(`${namespace}/${ref.name}`) ?? []) {
        const parent = { namespace, name: ref.name, port: port.port, portName: port.name };
        if (!attachesTo(ref, route.namespace, parent)) continue;
        const key = JSON.stringify([route.namespace, namespace, ref.name, port.port]);
        const set = sets.get(key) ?? { parent, routes: new Set() };
        set.routes.add(route);
        sets.set(key, set);
      }
    }
  const out = new Map<string, UnsentPort[]>();
  for (const { parent, routes: members } of sets.values()) {
    const sorted = [...members].sort(byPrecedence);
    for (const { route, bytes, keptBytes } of boundRoutes(sorted, services, faults, budget).unsent) {
      const list = out.get(routeKey(route)) ?? [];
      list.push({ ...parent, bytes, keptBytes });
      out.set(routeKey(route), list);
    }
  }
  return out;
}

/** "900 bytes", "812 KiB", "2.99 MiB", "3 MiB" (rounded down: a set just under its bound does not read as full). */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} bytes`;
  if (bytes < 1024 * 1024) return `${Math.floor(bytes / 1024)} KiB`;
  return `${Math.floor((100 * bytes) / (1024 * 1024)) / 100} MiB`;
}

// Sizes as protobuf encodes them (route.proto): a length-delimited field is its tag, its length
// as a varint, and its bytes.

function varintBytes(n: number): number {
  let bytes = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 0x80);
    bytes++;
  }
  return bytes;
}

function fieldBytes(length: number): number {
  return 1 + varintBytes(length) + length;
}

function stringField(value: string): number {
  return fieldBytes(Buffer.byteLength(value));
}

const routeBytes = new WeakMap<RouteResource, number>();

/**
 * The bytes a route takes in a RouteSet (the repeated field's entry), as route-set.ts sends it:
 * kind, namespace, name, created_ms (counted as the longest varint), the spec as JSON and every
 * annotation (route-set.ts may leave some out: an upper bound). Kept per route object.
 */
export function routeWireBytes(route: RouteResource): number {
  let bytes = routeBytes.get(route);
  if (bytes === undefined) {
    let message =
      stringField(route.kind) +
      stringField(route.namespace) +
      stringField(route.name) +
      11 +
      stringField(JSON.stringify(route.spec));
    for (const [name, value] of Object.entries(route.annotations ?? {}))
      message += fieldBytes(stringField(name) + stringField(value));
    bytes = fieldBytes(message);
    routeBytes.set(route, bytes);
  }
  return bytes;
}

const faultBytes = new WeakMap<FaultResource, number>();

/** The bytes an HTTPFault takes in a RouteSet's extensions. */
function faultWireBytes(fault: FaultResource): number {
  let bytes = faultBytes.get(fault);
  if (bytes === undefined) {
    bytes = fieldBytes(
      stringField(fault.kind) +
        stringField(fault.namespace) +
        stringField(fault.name) +
        stringField(JSON.stringify(fault.spec)),
    );
    faultBytes.set(fault, bytes);
  }
  return bytes;
}

function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
