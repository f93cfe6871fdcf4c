// Outbound discovery: turns a logical target ("web.default:8080") into one endpoint per request
// (HTTP) or per connection (TCP), through the resolver's stream of updates, an EndpointSet per
// target and power-of-two-choices over peak-EWMA (linkerd's "concrete" balance layer).
//
// Names are read as Kubernetes reads them (src/proxy/resolve/mesh-names.ts): a short name (`web`)
// is a service in the proxy's own namespace, `web.ns[.svc[.cluster.local]]` names its namespace.
// `localhost`, and names the control plane does not know (does-not-exist) or rejects as no
// service name, are forwarded to their original address unchanged. IP literals are too, unless
// `resolveAddresses` is set (transparent mode, where an app's connection only tells its original
// destination IP): then they are resolved like names, and the control plane answers a Service's
// ClusterIP with its endpoints, a meshed pod's IP with that pod and its identity, and any other
// address with itself, unmeshed, which goes direct exactly as an unresolved IP would. Loopback
// addresses are never resolved: they are no Service's or pod's, iptables never redirects them,
// and they are where inbound traffic goes (the app on 127.0.0.1), which must not depend on the
// control plane.
//
// A picks fails, with a reason for the proxy's answer, when:
// - `no-endpoints` (503): a known target has no endpoints for failFastMs;
// - `control-plane-unreachable` (503): a mesh name (one the control plane answered before, or one
//   that can only be a mesh name: under `.svc`, or `NAME.<own namespace>`) that the control plane
//   cannot be asked about now, and whose endpoints are not known, for failFastMs. Such a name
//   never falls through to DNS; another name whose resolution fails before its first answer goes
//   direct, as a name the control plane does not know would;
// - `unknown-port` (400): the service exists, but not on that port (the answer lists its ports).
// While the control plane is unreachable the sets keep their last known endpoints, however long
// ago they were used: a target that knows its endpoints is not released when idle then (one that
// knows nothing is, so that names asked for during an outage cannot pile up).
import { BlockList, isIP } from 'node:net';
import { EndpointSet, type EndpointState } from '../balance/endpoint-set.ts';
import { EndpointPresence } from '../balance/endpoint-presence.ts';
import type { PeakEwmaHandle } from '../balance/peak-ewma.ts';
import { P2c } from '../balance/p2c.ts';
import type { Endpoint } from '../../core/endpoints.ts';
import type { Resolution, Resolver } from '../resolve/resolver.ts';
import { isMeshShaped, mayBeService, serviceQuery, canonicalName } from '../resolve/mesh-names.ts';
import type { Logger } from '../../core/log.ts';
import { type Target, TargetMap, targetKey } from '../../core/target.ts';
import type { ServiceTrafficPolicy } from '../../core/routes/service-annotations.ts';
import {
  BackendGuard,
  needsGuard,
  sameGuardPolicy,
  type BackendGuardView,
  type BreakerCounters,
} from '../balance/backend-guard.ts';
import { serviceOf, type ServicePort } from './routes.ts';

/** Where one request or connection goes; call done() when it ends (with the RTT when known). */
export interface Pick {
  readonly address: Target;
  /** The endpoint as discovery described it, or null for a direct (undiscovered) target. */
  readonly endpoint: Endpoint | null;
  /** The endpoint's key in its set (for retries that must pick another), null when direct. */
  readonly key: string | null;
  /**
   * Ends the request's count on the endpoint. `rttMs`: the time to its response (or connect),
   * when it came. `failed`: the endpoint's verdict for its circuit breaker when it answered
   * (true: a 5xx or failing gRPC status; false: success); leave it out when there is none (the
   * exchange was cancelled). Calls after the first are ignored.
   */
  done(rttMs?: number, failed?: boolean): void;
  /**
   * Marks the exchange as failed by the endpoint (unreachable, reset, timed out) before done().
   * Absent where nothing listens (picks made by tests).
   */
  fail?(): void;
}

/** Why discovery has no endpoint for a target (each is a proxy error reason, src/proxy/errors.ts). */
export type DiscoveryFailureReason =
  | 'no-endpoints'
  | 'control-plane-unreachable'
  | 'unknown-port'
  // the backend's circuit breaking (src/proxy/balance/backend-guard.ts)
  | 'all-endpoints-tripped'
  | 'overflow';

/** No endpoint: why, and a sentence for the answer (which ports a service has, say). */
export interface PickFailure {
  readonly error: DiscoveryFailureReason;
  readonly detail: string;
}

export type PickOutcome = Pick | PickFailure;

export interface DiscoveryOptions {
  /** null: no control plane; every target is direct. */
  readonly resolver: Resolver | null;
  /** How long a request waits for a known target to have endpoints. */
  readonly failFastMs: number;
  /** A target nobody asked for during this long stops being watched. */
  readonly idleMs: number;
  /** Resolve IP targets (but loopback ones) through the resolver too (default false: direct). */
  readonly resolveAddresses?: boolean;
  /** The namespace short names mean (default: the proxy's, src/proxy/resolve/mesh-names.ts). */
  readonly namespace?: string;
  readonly log: Logger;
  /** Told of every pick of a discovered endpoint (`trellis edges` counts the plain ones). */
  readonly onEndpointPick?: (endpoint: Endpoint) => void;
  /** Counts a backend's circuit breaker events (ProxyMetrics.breakerCounters). */
  readonly breakerCounters?: (backend: string) => BreakerCounters;
}

interface Entry {
  /** The target's address key. */
  readonly key: string;
  /** The target's host and port as first asked (the keys of Discovery.byHost). */
  readonly target: Target;
  /** Other spellings of its name asked for since (also keys of byHost), at most MAX_SPELLINGS. */
  readonly spellings: Target[];
  /** What it is resolved by (a short name qualified with the namespace). */
  readonly query: string;
  /** Its host, canonical (what the known mesh names remember). */
  readonly host: string;
  /** Its host has a mesh name's shape in this namespace (`web.ns`, `*.svc...`): see isMeshShaped. */
  meshShaped: boolean;
  readonly set: EndpointSet;
  readonly p2c: P2c<EndpointState>;
  /** The Service port it is ("ns/name:port", the key of its traffic policy), null for others. */
  readonly service: string | null;
  /** Its circuit breaking, when its Service's policy asks for it (else the bare P2c picks). */
  guard: BackendGuard | null;
  resolution: Resolution;
  /** The resolution's last news was a failure (the control plane is unreachable). */
  unreachable: boolean;
  /** The control plane rejected the name (not a service name): always direct. */
  rejected: boolean;
  /** does-not-exist for a service that has other ports: those ports. */
  otherPorts: readonly number[] | null;
  /** Picks waiting for the set to settle; each is called after every update or error. */
  readonly waiters: Set<() => void>;
  lastUsed: number;
}

/**
 * The RTT a new endpoint is assumed to have until its first response (tower's default is 30 ms).
 * Low, so that an endpoint that joins a set of fast ones is tried at once and learns its real
 * cost from its first responses (Peak-EWMA jumps up to them); with 30 ms it would get no traffic
 * for half a minute beside endpoints that answer in a millisecond.
 */
const NEW_ENDPOINT_RTT_MS = 1;

/** gRPC INVALID_ARGUMENT: the Destination API's answer to a path that names no service. */
const GRPC_INVALID_ARGUMENT = 3;

const noop = (): void => {};
const noCounters: BreakerCounters = { count: noop };

/** At most this many Services' traffic policies are kept (one per watched Service port). */
const MAX_POLICIES = 1000;

/** How many other spellings of a name (`WEB`, `web.ns.`) are indexed with its entry; others are looked up by name. */
const MAX_SPELLINGS = 8;

/** A query `name.ns.svc:port`: the same Service port as `name.ns:port` (the control plane reads both). */
const SVC_PORT = /^([^.:]+\.[^.:]+)\.svc:(?=[0-9]+$)/;

/** How many mesh names a proxy remembers having been services (the set starts over when full). */
const MAX_KNOWN_NAMES = 4096;

/** 127.0.0.0/8 and ::1 (IPv4-mapped spellings included: BlockList checks them as IPv4). */
const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

export class ServiceDiscovery {
  private readonly opts: DiscoveryOptions;
  private readonly entries = new Map<string, Entry>();
  /**
   * The same entries by host, then port: a pick finds its entry without building the target's key
   * string (a pick runs per request). Kept in step with `entries` by index() and unindex().
   */
  private readonly byHost = new TargetMap<Entry>();
  /** isLogical's answers by host. */
  private readonly logicalHosts = new Map<string, boolean>();
  /** Hosts the control plane answered as services: mesh names, never sent to DNS. */
  private readonly knownNames = new Set<string>();
  private readonly namespace: string;
  /** The circuit breaking policies of Service ports ("ns/name:port"), as their routes brought them. */
  private readonly policies = new Map<string, ServiceTrafficPolicy>();
  /** The endpoint addresses every target's set holds (the pools drain those that leave). */
  private readonly presence: EndpointPresence;
  private sweeper: NodeJS.Timeout | null = null;

  constructor(opts: DiscoveryOptions) {
    this.opts = opts;
    this.namespace = opts.namespace ?? 'default';
    this.presence = new EndpointPresence(opts.log);
  }

  /**
   * Calls `listener` with the address key ("host:port", targetKey) of each endpoint that left
   * discovery: removed from every target that had it (not merely no longer watched).
   */
  onEndpointLeft(listener: (addressKey: string) => void): () => void {
    return this.presence.onLeft(listener);
  }

  /** True when a target is resolved through the control plane (else it is always direct). */
  isLogical(target: Target): boolean {
    if (this.opts.resolver === null) return false;
    let logical = this.logicalHosts.get(target.host);
    if (logical === undefined) {
      const family = isIP(target.host);
      logical =
        family !== 0
          ? this.opts.resolveAddresses === true &&
            !LOOPBACK.check(target.host, family === 4 ? 'ipv4' : 'ipv6')
          : mayBeService(target.host);
      // Asked for every request and connection: node's isIP runs two regular expressions on a
      // name. The hosts a proxy sends to are few; the bound only guards against odd traffic.
      if (this.logicalHosts.size >= 1024) this.logicalHosts.clear();
      this.logicalHosts.set(target.host, logical);
    }
    return logical;
  }

  /**
   * Picks where a request or connection to `target` goes. Synchronous when the answer is known
   * (the common case), a promise when the target's endpoints are still on their way.
   * `avoid`: a key not to pick again (a retry after a failed connect), when there is another.
   */
  pick(target: Target, avoid: string | null = null): PickOutcome | Promise<PickOutcome> {
    if (!this.isLogical(target)) return directPick(target);
    const entry = this.entry(target);
    entry.lastUsed = Date.now();
    const now = fromEntry(entry, target, avoid, this.knownNames);
    if (now !== null) return this.picked(now);
    return this.wait(entry, target, avoid);
  }

  /**
   * The endpoints a target's set holds now, in the set's order: warm-up.ts opens a connection to
   * each ahead. Picks nothing, so no load is counted; none for a target not watched or not ready.
   */
  endpointsOf(target: Target): Endpoint[] {
    const entry = this.byHost.get(target);
    if (entry === undefined || entry.set.status !== 'ready') return [];
    return entry.set.endpoints.map((state) => state.endpoint);
  }

  /** Tells onEndpointPick of a pick of a discovered endpoint. */
  private picked(outcome: PickOutcome): PickOutcome {
    if ('endpoint' in outcome && outcome.endpoint !== null) this.opts.onEndpointPick?.(outcome.endpoint);
    return outcome;
  }

  /**
   * The traffic policy of a Service port (its balancer.trellis.io/* annotations; null: none), as
   * the route level receives it (OutboundRoutes' onPolicy): circuit breaking starts or stops for
   * every target that names that Service port.
   */
  applyTrafficPolicy(service: ServicePort, policy: ServiceTrafficPolicy | null): void {
    const key = servicePortKey(service);
    const wanted = needsGuard(policy) ? policy : null;
    const known = this.policies.get(key) ?? null;
    // Every route update brings the policy anew: the breakers start afresh only when it changed.
    if (sameGuardPolicy(wanted, known)) return;
    if (wanted === null) this.policies.delete(key);
    else if (this.policies.size < MAX_POLICIES || this.policies.has(key)) this.policies.set(key, wanted);
    for (const entry of this.entries.values()) if (entry.service === key) this.guard(entry);
  }

  /** The circuit breakers of every guarded backend (the admin's /debug/breakers). */
  breakerViews(): BackendGuardView[] {
    const views: BackendGuardView[] = [];
    for (const entry of this.entries.values()) if (entry.guard !== null) views.push(entry.guard.view());
    return views;
  }

  /** Gives an entry the guard its Service's policy asks for (or none). */
  private guard(entry: Entry): void {
    const policy = entry.service === null ? undefined : this.policies.get(entry.service);
    if (entry.guard !== null && entry.guard.policy === policy) return;
    entry.guard?.close();
    entry.guard =
      policy === undefined
        ? null
        : new BackendGuard({
            backend: entry.query,
            set: entry.set,
            policy,
            log: this.opts.log,
            counters: this.opts.breakerCounters?.(entry.query) ?? noCounters,
          });
  }

  /** Targets being watched (tests check that idle ones are released). */
  get watchedTargets(): number {
    return this.entries.size;
  }

  private wait(entry: Entry, target: Target, avoid: string | null): Promise<PickOutcome> {
    return new Promise<PickOutcome>((resolve) => {
      const settle = (outcome: PickOutcome): void => {
        clearTimeout(timer);
        entry.waiters.delete(check);
        resolve(this.picked(outcome));
      };
      const check = (): void => {
        const outcome = fromEntry(entry, target, avoid, this.knownNames);
        if (outcome !== null) settle(outcome);
      };
      const timer = setTimeout(
        () => settle(fromEntry(entry, target, avoid, this.knownNames) ?? failureOf(entry)),
        this.opts.failFastMs,
      );
      entry.waiters.add(check);
    });
  }

  private entry(target: Target): Entry {
    const found = this.byHost.get(target);
    if (found !== undefined) return found;
    const host = canonicalName(target.host);
    const named = isIP(target.host) === 0;
    // One entry (one resolution, one balancer, one set of circuit breakers) per name, however the
    // request spells it: case, a trailing dot, `web`, `web.ns` and `web.ns.svc` are one Service
    // port, so a client cannot get fresh breakers or limits by spelling it another way.
    const query = named ? serviceQuery(host, target.port, this.namespace).replace(SVC_PORT, '$1:') : null;
    const key = query ?? targetKey(target);
    const known = this.entries.get(key);
    if (known !== undefined) {
      // Named `.svc` once, it is a mesh name whatever the spelling (never sent to DNS).
      if (named && isMeshShaped(host, this.namespace)) known.meshShaped = true;
      if (known.spellings.length < MAX_SPELLINGS) {
        known.spellings.push({ host: target.host, port: target.port });
        this.byHost.set(target, known);
      }
      return known;
    }
    const set = new EndpointSet({
      log: this.opts.log,
      defaultRttMs: NEW_ENDPOINT_RTT_MS,
      presence: this.presence,
    });
    const service = named ? serviceOf(target, this.namespace) : null;
    const created: Entry = {
      key,
      spellings: [],
      target: { host: target.host, port: target.port },
      query: key,
      host,
      meshShaped: named && isMeshShaped(host, this.namespace),
      set,
      p2c: new P2c(set),
      service: service === null ? null : servicePortKey(service),
      guard: null,
      resolution: { cancel: noop },
      unreachable: false,
      rejected: false,
      otherPorts: null,
      waiters: new Set(),
      lastUsed: Date.now(),
    };
    created.resolution = this.opts.resolver!.resolve(
      key,
      (update) => {
        if (created.unreachable && created.set.status !== 'awaiting') {
          this.opts.log.info('the control plane answers again', { target: key });
        }
        created.unreachable = false;
        const otherPorts = update.kind === 'does-not-exist' ? (update.ports ?? []) : null;
        created.otherPorts = otherPorts !== null && otherPorts.length > 0 ? otherPorts : null;
        set.apply(update);
        if (named) this.remember(host, update.kind !== 'does-not-exist' || created.otherPorts !== null);
        wake(created);
      },
      (error) => this.onResolutionError(key, created, error),
    );
    this.guard(created);
    this.entries.set(key, created);
    this.index(created);
    this.startSweeper();
    return created;
  }

  private index(entry: Entry): void {
    this.byHost.set(entry.target, entry);
  }

  private unindex(entry: Entry): void {
    this.byHost.delete(entry.target);
    for (const spelling of entry.spellings) this.byHost.delete(spelling);
  }

  /** Remembers (or forgets) a host as a service's name. */
  private remember(host: string, isService: boolean): void {
    if (!isService) {
      this.knownNames.delete(host);
      return;
    }
    if (this.knownNames.size >= MAX_KNOWN_NAMES && !this.knownNames.has(host)) this.knownNames.clear();
    this.knownNames.add(host);
  }

  private onResolutionError(query: string, entry: Entry, error: Error): void {
    const code = (error as { cause?: { code?: unknown } }).cause?.code;
    if (code === GRPC_INVALID_ARGUMENT) {
      // Not a service name (api.example.com): the control plane will never know it.
      entry.rejected = true;
      entry.resolution.cancel();
      wake(entry);
      return;
    }
    const first = !entry.unreachable;
    entry.unreachable = true;
    if (!first) {
      // Retries while the control plane stays away: nothing new to say.
    } else if (entry.set.status !== 'awaiting') {
      this.opts.log.debug('resolution failed; keeping the last known endpoints', {
        target: query,
        endpoints: entry.set.size,
        error,
      });
    } else if (isMeshName(entry, this.knownNames)) {
      this.opts.log.warn('cannot reach the control plane to resolve a mesh name; waiting for it', {
        target: query,
        error,
      });
    } else {
      this.opts.log.warn('cannot resolve a name through the control plane; forwarding it direct', {
        target: query,
        error,
      });
    }
    wake(entry);
  }

  private startSweeper(): void {
    if (this.sweeper !== null || this.opts.idleMs <= 0) return;
    this.sweeper = setInterval(
      () => {
        const cutoff = Date.now() - this.opts.idleMs;
        for (const [key, e] of this.entries) {
          if (e.lastUsed < cutoff && e.waiters.size === 0 && !keepsLastKnown(e)) {
            e.resolution.cancel();
            e.guard?.close();
            e.set.close();
            this.entries.delete(key);
            this.unindex(e);
          }
        }
      },
      Math.max(1000, this.opts.idleMs / 4),
    );
    this.sweeper.unref();
  }

  close(): void {
    if (this.sweeper !== null) clearInterval(this.sweeper);
    this.sweeper = null;
    for (const e of this.entries.values()) {
      e.resolution.cancel();
      e.guard?.close();
      e.set.close();
      wake(e);
    }
    this.entries.clear();
    this.byHost.clear();
  }
}

/**
 * Whether an idle entry stays: one that knows a service's endpoints (or that it has none) while
 * the control plane is unreachable, for they are all there is until it is back. Entries that
 * know nothing are released as usual, so names asked for during an outage cannot pile up.
 */
function keepsLastKnown(entry: Entry): boolean {
  const status = entry.set.status;
  return entry.unreachable && (status === 'ready' || status === 'no-endpoints');
}

/** Why an entry that waited failFastMs has no endpoint. */
function failureOf(entry: Entry): PickFailure {
  if (entry.unreachable) {
    return {
      error: 'control-plane-unreachable',
      detail: `the control plane is unreachable and no endpoint of ${entry.query} is known`,
    };
  }
  return { error: 'no-endpoints', detail: `no endpoints for ${entry.query}` };
}

/** A pick that sends to the target's own address (no discovery). */
export function directPick(target: Target): Pick {
  return { address: target, endpoint: null, key: null, done: noop, fail: noop };
}

/** A pick of a discovered endpoint without a circuit breaker: one object per request, no closure. */
class EndpointPick implements Pick {
  readonly address: Target;
  readonly endpoint: Endpoint;
  readonly key: string;
  readonly #handle: PeakEwmaHandle;

  constructor(state: EndpointState) {
    this.endpoint = state.endpoint;
    this.address = state.endpoint.address;
    this.key = state.key;
    this.#handle = state.start();
  }

  done(rttMs?: number): void {
    this.#handle.complete(rttMs);
  }

  fail(): void {}
}

/** Whether an entry's host is certainly a mesh name (see the file comment): it never goes direct. */
function isMeshName(entry: Entry, knownNames: ReadonlySet<string>): boolean {
  return entry.meshShaped || knownNames.has(entry.host);
}

/**
 * The pick for an entry as things stand, or null while its endpoints are still to come.
 * `knownNames`: hosts the control plane answered as services (see isMeshName).
 */
function fromEntry(
  entry: Entry,
  target: Target,
  avoid: string | null,
  knownNames: ReadonlySet<string>,
): PickOutcome | null {
  if (entry.rejected) return directPick(target);
  switch (entry.set.status) {
    case 'ready': {
      if (isOnlyItself(entry)) return directPick(target);
      if (entry.guard !== null) return entry.guard.pick(avoid);
      let state = entry.p2c.pick();
      if (state === null) return null;
      if (state.key === avoid && entry.set.size > 1) state = cheapestOther(entry.set.endpoints, avoid);
      return new EndpointPick(state);
    }
    case 'does-not-exist':
      if (entry.otherPorts === null) return directPick(target);
      return {
        error: 'unknown-port',
        detail:
          `${entry.query.slice(0, entry.query.lastIndexOf(':'))} has no port ${target.port}; ` +
          `its ports: ${entry.otherPorts.join(', ')}`,
      };
    case 'awaiting':
      return entry.unreachable && !isMeshName(entry, knownNames) ? directPick(target) : null;
    default:
      return null;
  }
}

/**
 * Whether discovery answered a target with the target itself, unmeshed (an address it does not
 * know, or an unmeshed pod): such a target goes direct, exactly as when it is not resolved (no
 * balancer bookkeeping, and no retry of a failed connect on the same address). Only an IP target
 * can be its own endpoint; a name's set never holds a key equal to the name's.
 */
function isOnlyItself(entry: Entry): boolean {
  if (entry.set.size !== 1) return false;
  const only = entry.set.get(entry.key);
  return only !== undefined && !only.endpoint.meshed;
}

/** The least loaded endpoint other than `avoid` (retries only: O(n)). */
function cheapestOther(endpoints: readonly EndpointState[], avoid: string): EndpointState {
  let best: EndpointState | null = null;
  let bestCost = Infinity;
  for (const e of endpoints) {
    if (e.key === avoid) continue;
    const cost = e.cost();
    if (best === null || cost < bestCost) {
      best = e;
      bestCost = cost;
    }
  }
  return best!;
}

function wake(entry: Entry): void {
  for (const waiter of Array.from(entry.waiters)) waiter();
}

/** The key of a Service port's traffic policy. */
function servicePortKey(service: ServicePort): string {
  return `${service.namespace}/${service.name}:${service.port}`;
}
