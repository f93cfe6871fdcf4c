// Outbound discovery: turns a logical target ("web.default:8080") into one endpoint per request
// (HTTP) or per connection (TCP), through the resolver's stream of updates, an EndpointSet per
// target and power-of-two-choices over peak-EWMA (linkerd's "concrete" balance layer).
//
// Single-label names (localhost), and names the control plane does not know (does-not-exist) or
// rejects as no service name, are forwarded to their original address unchanged. IP literals are
// too, unless `resolveAddresses` is set (transparent mode, where an app's connection only tells
// its original destination IP): then they are resolved like names, and the control plane answers
// a Service's ClusterIP with its endpoints, a meshed pod's IP with that pod and its identity, and
// any other address with itself, unmeshed, which goes direct exactly as an unresolved IP would.
// Loopback addresses are never resolved: they are no Service's or pod's, iptables never redirects
// them, and they are where inbound traffic goes (the app on 127.0.0.1), which must not depend on
// the control plane.
//
// A known target with no endpoints waits up to failFastMs for one, then fails with `no-endpoints`
// (503). While the control plane is unreachable the sets keep their last known endpoints; a
// target that was never resolved before the control plane became unreachable goes direct.
import { BlockList, isIP } from 'node:net';
import { EndpointSet, type EndpointState } from '../balance/endpoint-set.ts';
import { P2c } from '../balance/p2c.ts';
import type { Endpoint, Resolution, Resolver } from '../resolve/resolver.ts';
import type { Logger } from '../../core/log.ts';
import { type Target, targetKey } from '../transport/target.ts';

/** Where one request or connection goes; call done() when it ends (with the RTT when known). */
export interface Pick {
  readonly address: Target;
  /** The endpoint as discovery described it, or null for a direct (undiscovered) target. */
  readonly endpoint: Endpoint | null;
  /** The endpoint's key in its set (for retries that must pick another), null when direct. */
  readonly key: string | null;
  done(rttMs?: number): void;
}

export type PickOutcome = Pick | { readonly error: 'no-endpoints' };

export interface DiscoveryOptions {
  /** null: no control plane; every target is direct. */
  readonly resolver: Resolver | null;
  /** How long a request waits for a known target to have endpoints. */
  readonly failFastMs: number;
  /** A target nobody asked for during this long stops being watched. */
  readonly idleMs: number;
  /** Resolve IP targets (but loopback ones) through the resolver too (default false: direct). */
  readonly resolveAddresses?: boolean;
  readonly log: Logger;
}

interface Entry {
  /** The target's address key (what it is resolved by). */
  readonly key: string;
  readonly set: EndpointSet;
  readonly p2c: P2c<EndpointState>;
  resolution: Resolution;
  /** The resolution failed before its first update (the control plane is unreachable). */
  failedBeforeUpdate: boolean;
  /** The control plane rejected the name (not a service name): always direct. */
  rejected: boolean;
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

/** 127.0.0.0/8 and ::1 (IPv4-mapped spellings included: BlockList checks them as IPv4). */
const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

export class ServiceDiscovery {
  private readonly opts: DiscoveryOptions;
  private readonly entries = new Map<string, Entry>();
  /** isLogical's answers by host. */
  private readonly logicalHosts = new Map<string, boolean>();
  private sweeper: NodeJS.Timeout | null = null;

  constructor(opts: DiscoveryOptions) {
    this.opts = opts;
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
          : target.host.includes('.');
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
    const now = fromEntry(entry, target, avoid);
    if (now !== null) return now;
    return this.wait(entry, target, avoid);
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
        resolve(outcome);
      };
      const check = (): void => {
        const outcome = fromEntry(entry, target, avoid);
        if (outcome !== null) settle(outcome);
      };
      const timer = setTimeout(
        () => settle(fromEntry(entry, target, avoid) ?? NO_ENDPOINTS),
        this.opts.failFastMs,
      );
      entry.waiters.add(check);
    });
  }

  private entry(target: Target): Entry {
    const key = targetKey(target);
    const existing = this.entries.get(key);
    if (existing !== undefined) return existing;
    const set = new EndpointSet({ log: this.opts.log, defaultRttMs: NEW_ENDPOINT_RTT_MS });
    const created: Entry = {
      key,
      set,
      p2c: new P2c(set),
      resolution: { cancel: noop },
      failedBeforeUpdate: false,
      rejected: false,
      waiters: new Set(),
      lastUsed: Date.now(),
    };
    created.resolution = this.opts.resolver!.resolve(
      key,
      (update) => {
        created.failedBeforeUpdate = false;
        set.apply(update);
        wake(created);
      },
      (error) => this.onResolutionError(key, created, error),
    );
    this.entries.set(key, created);
    this.startSweeper();
    return created;
  }

  private onResolutionError(key: string, entry: Entry, error: Error): void {
    const code = (error as { cause?: { code?: unknown } }).cause?.code;
    if (code === GRPC_INVALID_ARGUMENT) {
      // Not a service name (api.example.com): the control plane will never know it.
      entry.rejected = true;
      entry.resolution.cancel();
    } else if (entry.set.status === 'awaiting') {
      entry.failedBeforeUpdate = true;
      this.opts.log.warn('cannot resolve a service through the control plane; forwarding it direct', {
        target: key,
        error,
      });
    } else {
      this.opts.log.debug('resolution failed; keeping the last known endpoints', {
        target: key,
        endpoints: entry.set.size,
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
          if (e.lastUsed < cutoff && e.waiters.size === 0) {
            e.resolution.cancel();
            e.set.close();
            this.entries.delete(key);
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
      e.set.close();
      wake(e);
    }
    this.entries.clear();
  }
}

const NO_ENDPOINTS: PickOutcome = { error: 'no-endpoints' };

/** A pick that sends to the target's own address (no discovery). */
export function directPick(target: Target): Pick {
  return { address: target, endpoint: null, key: null, done: noop };
}

/** The pick for an entry as things stand, or null while its endpoints are still to come. */
function fromEntry(entry: Entry, target: Target, avoid: string | null): PickOutcome | null {
  if (entry.rejected) return directPick(target);
  switch (entry.set.status) {
    case 'ready': {
      if (isOnlyItself(entry)) return directPick(target);
      let state = entry.p2c.pick();
      if (state === null) return null;
      if (state.key === avoid && entry.set.size > 1) state = cheapestOther(entry.set.endpoints, avoid);
      const handle = state.start();
      return {
        address: state.endpoint.address,
        endpoint: state.endpoint,
        key: state.key,
        done: (rttMs?: number) => handle.complete(rttMs),
      };
    }
    case 'does-not-exist':
      return directPick(target);
    case 'awaiting':
      return entry.failedBeforeUpdate ? directPick(target) : null;
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
