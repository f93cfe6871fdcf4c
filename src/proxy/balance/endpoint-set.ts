// The endpoints a balancer chooses from, kept up to date by a resolver's stream of updates
// (reset / add / remove / does-not-exist, as linkerd's discovery). Each endpoint carries its own
// Peak-EWMA load, kept for as long as the endpoint stays in the set, so a `reset` that repeats a
// known endpoint does not forget what was learnt about it. An endpoint that leaves is marked
// removed and never offered again; requests already in flight on it complete normally. With an
// EndpointPresence (endpoint-presence.ts), the set tells it which addresses it holds, so that the
// pooled connections to an address that left every set are drained.
//
// `endpoints` is an array that is replaced (never mutated) on every change, so P2c can read it
// per pick without copying. Callers that arrive while there are no endpoints can wait for some
// with waitReady(timeoutMs) and answer "no endpoints" when it resolves false.

import { systemClock, systemTimers, type Clock, type TimerHandle, type Timers } from '../../core/clock.ts';
import { silentLogger, type Logger } from '../../core/log.ts';
import { isPort } from '../../core/schema.ts';
import { targetKey } from '../../core/target.ts';
import type { Endpoint, Update } from '../../core/endpoints.ts';
import type { Resolution, Resolver } from '../resolve/resolver.ts';
import { PeakEwma, type PeakEwmaHandle, type PeakEwmaOptions } from './peak-ewma.ts';
import type { FailureAccrual } from './failure-accrual.ts';
import type { EndpointPresence } from './endpoint-presence.ts';

/**
 * `awaiting`: no update yet. `ready`: at least one endpoint. `no-endpoints`: the target exists
 * but has none. `does-not-exist`: the resolver does not know the target.
 */
export type EndpointSetStatus = 'awaiting' | 'ready' | 'no-endpoints' | 'does-not-exist';

export interface EndpointSetOptions extends PeakEwmaOptions {
  /** Schedules waitReady's timeouts (FakeClock in tests). */
  readonly timers?: Timers;
  readonly log?: Logger;
  /** Told of every address the set takes in and removes (the proxy's discovery shares one). */
  readonly presence?: EndpointPresence;
}

/** One endpoint of the set with its load; what P2c picks. */
export class EndpointState {
  readonly key: string;
  readonly load: PeakEwma;
  /** Its circuit breaker, while its backend's policy asks for failure accrual (backend-guard.ts). */
  accrual: FailureAccrual | null = null;
  #endpoint: Endpoint;
  #weight = 1; // a number from the start, so V8 keeps the field unboxed
  #removed = false;

  constructor(key: string, endpoint: Endpoint, load: PeakEwma) {
    this.key = key;
    this.load = load;
    this.#endpoint = endpoint;
    this.#weight = usableWeight(endpoint.weight);
  }

  /** The endpoint as the resolver last described it (weight, labels, identity may change). */
  get endpoint(): Endpoint {
    return this.#endpoint;
  }

  /** True once the endpoint has left the set: drop pooled connections, do not reuse. */
  get removed(): boolean {
    return this.#removed;
  }

  /** The Peak-EWMA cost divided by the endpoint's weight: twice the weight, half the cost. */
  cost(): number {
    return this.load.cost() / this.#weight;
  }

  /** Counts one request in flight; complete the handle with the observed RTT when it ends. */
  start(): PeakEwmaHandle {
    return this.load.start();
  }

  /** For EndpointSet: takes a newer description of the same address. */
  refresh(endpoint: Endpoint): void {
    this.#endpoint = endpoint;
    this.#weight = usableWeight(endpoint.weight);
  }

  /** For EndpointSet: the endpoint has left the set. */
  markRemoved(): void {
    this.#removed = true;
  }
}

interface Waiter {
  readonly resolve: (ready: boolean) => void;
  timer: TimerHandle | null;
}

export class EndpointSet {
  /** The clock every endpoint's load uses. */
  readonly clock: Clock;
  readonly #options: EndpointSetOptions;
  /** The load options of the current update's newcomers (#newcomerOptions), null until needed. */
  #newcomerStart: PeakEwmaOptions | null = null;
  readonly #timers: Timers;
  readonly #log: Logger;
  readonly #presence: EndpointPresence | null;
  readonly #byKey = new Map<string, EndpointState>();
  #list: readonly EndpointState[] = [];
  #status: EndpointSetStatus = 'awaiting';
  #waiters = new Set<Waiter>();
  #listeners = new Set<(set: EndpointSet) => void>();
  #resolution: Resolution | null = null;
  #lastError: Error | null = null;
  #closed = false;

  constructor(options: EndpointSetOptions = {}) {
    this.clock = options.clock ?? systemClock;
    this.#options = { ...options, clock: this.clock };
    this.#timers = options.timers ?? systemTimers;
    this.#log = options.log ?? silentLogger;
    this.#presence = options.presence ?? null;
  }

  /** The current endpoints (a fresh array after every change; do not mutate). */
  get endpoints(): readonly EndpointState[] {
    return this.#list;
  }

  get size(): number {
    return this.#list.length;
  }

  get status(): EndpointSetStatus {
    return this.#status;
  }

  /** The resolver's last error, if any since the last update (the set keeps its endpoints). */
  get lastError(): Error | null {
    return this.#lastError;
  }

  /** The endpoint with this address key ("host:port", "[v6]:port"), if it is in the set. */
  get(key: string): EndpointState | undefined {
    return this.#byKey.get(key);
  }

  ready(): boolean {
    return this.#list.length > 0;
  }

  /**
   * Resolves true as soon as the set has endpoints (at once if it has), false after `timeoutMs`
   * without any or when the set is closed. `does-not-exist` does not end the wait early: the
   * target may appear, and the caller's timeout decides.
   */
  waitReady(timeoutMs: number): Promise<boolean> {
    if (this.ready()) return Promise.resolve(true);
    if (this.#closed || !(timeoutMs > 0)) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      const waiter: Waiter = { resolve, timer: null };
      waiter.timer = this.#timers.setTimeout(() => {
        this.#waiters.delete(waiter);
        resolve(false);
      }, timeoutMs);
      this.#waiters.add(waiter);
    });
  }

  /** Calls `listener` after every update that changed the endpoints or the status. */
  onChange(listener: (set: EndpointSet) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Feeds the set from `resolver` for `target` (replacing any earlier subscription). */
  subscribe(resolver: Resolver, target: string): Resolution {
    this.#resolution?.cancel();
    const resolution = resolver.resolve(
      target,
      (update) => this.apply(update),
      (error) => {
        this.#lastError = error;
        this.#log.warn('resolution failed; keeping the last known endpoints', {
          target,
          endpoints: this.#list.length,
          error,
        });
      },
    );
    this.#resolution = resolution;
    return resolution;
  }

  /** Applies one resolver update. Never throws; invalid endpoints are skipped with a warning. */
  apply(update: Update): void {
    if (this.#closed) return;
    this.#lastError = null;
    this.#newcomerStart = null; // worked out at this update's first newcomer, once
    let changed = false;
    switch (update.kind) {
      case 'reset': {
        const incoming = this.#validKeyed(update.endpoints);
        for (const [key, state] of this.#byKey) {
          if (!incoming.has(key)) changed = this.#remove(key, state) || changed;
        }
        for (const [key, endpoint] of incoming) changed = this.#upsert(key, endpoint) || changed;
        break;
      }
      case 'add':
        for (const [key, endpoint] of this.#validKeyed(update.endpoints)) {
          changed = this.#upsert(key, endpoint) || changed;
        }
        break;
      case 'remove':
        for (const key of arrayOrEmpty(update.addresses)) {
          const state = this.#byKey.get(key);
          if (state !== undefined) changed = this.#remove(key, state) || changed;
        }
        break;
      case 'does-not-exist':
        for (const [key, state] of this.#byKey) changed = this.#remove(key, state) || changed;
        break;
      default:
        this.#log.warn('resolver sent an update of an unknown kind; ignored', {
          kind: String((update as { kind?: unknown }).kind),
        });
        return;
    }
    if (changed) this.#list = Array.from(this.#byKey.values());
    const status = this.#nextStatus(update.kind);
    if (status !== this.#status) {
      this.#status = status;
      changed = true;
    }
    if (!changed) return;
    if (this.ready()) this.#settleWaiters(true);
    for (const listener of this.#listeners) {
      try {
        listener(this);
      } catch (error) {
        this.#log.error('endpoint set listener threw', { error });
      }
    }
  }

  /**
   * Stops the resolution, forgets the endpoints and answers every waiter false. Idempotent. The
   * endpoints did not leave discovery: the presence forgets them without draining anything.
   */
  close(): void {
    if (this.#closed) return;
    this.#resolution?.cancel();
    this.#resolution = null;
    for (const [key, state] of this.#byKey) this.#remove(key, state, false);
    this.#list = [];
    this.#closed = true;
    this.#settleWaiters(false);
    this.#listeners.clear();
  }

  #nextStatus(kind: Update['kind']): EndpointSetStatus {
    if (this.#list.length > 0) return 'ready';
    if (kind === 'does-not-exist') return 'does-not-exist';
    // Removing from an empty, unknown target does not make it known.
    if (kind === 'remove' && this.#status === 'does-not-exist') return 'does-not-exist';
    return 'no-endpoints';
  }

  /** Later duplicates of an address win; endpoints with an unusable address are skipped. */
  #validKeyed(endpoints: readonly Endpoint[]): Map<string, Endpoint> {
    const keyed = new Map<string, Endpoint>();
    for (const endpoint of arrayOrEmpty(endpoints)) {
      if (!hasUsableAddress(endpoint)) {
        this.#log.warn('resolver sent an endpoint without a usable address; skipped', {
          address: safeDescribe(endpoint),
        });
        continue;
      }
      const key = targetKey(endpoint.address);
      keyed.delete(key); // re-insert so the map's order is the order of last appearance
      keyed.set(key, endpoint);
    }
    return keyed;
  }

  #upsert(key: string, endpoint: Endpoint): boolean {
    const existing = this.#byKey.get(key);
    if (existing !== undefined) {
      existing.refresh(endpoint);
      return false;
    }
    this.#newcomerStart ??= this.#newcomerOptions();
    this.#byKey.set(key, new EndpointState(key, endpoint, new PeakEwma(this.#newcomerStart)));
    this.#presence?.enter(key);
    return true;
  }

  /**
   * A new endpoint's load starts at the mean of its peers' current estimates (when it has peers),
   * not at the default RTT. With the default (30 ms, decaying with a 10 s time constant) an
   * endpoint that joins a set whose endpoints answer in 1 ms loses every two-choice comparison
   * while requests come one at a time (none pending): it got no request for about 30 s (seen when a
   * second instance of a service started beside a warm one). At its peers' estimate it competes
   * at once and its own first answers set its estimate; it does not win every pick either (no rush
   * onto an endpoint nobody has measured). Worked out once per update, from the endpoints the set
   * held before that update's newcomers (a reset of a thousand endpoints costs one pass, not a
   * thousand).
   */
  #newcomerOptions(): PeakEwmaOptions {
    if (this.#byKey.size === 0) return this.#options;
    let sum = 0;
    for (const state of this.#byKey.values()) sum += state.load.rttEstimate();
    return { ...this.#options, defaultRttMs: sum / this.#byKey.size };
  }

  /** `left`: discovery removed it (the presence may drain its connections); false: the set closed. */
  #remove(key: string, state: EndpointState, left = true): boolean {
    state.markRemoved();
    if (!this.#byKey.delete(key)) return false;
    if (left) this.#presence?.leave(key);
    else this.#presence?.forget(key);
    return true;
  }

  #settleWaiters(ready: boolean): void {
    const waiters = this.#waiters;
    this.#waiters = new Set();
    for (const waiter of waiters) {
      waiter.timer?.cancel();
      waiter.resolve(ready);
    }
  }
}

/** The resolver's lists, or nothing when it sent something that is not a list. */
function arrayOrEmpty<T>(list: readonly T[]): readonly T[] {
  return Array.isArray(list) ? list : [];
}

function usableWeight(weight: number): number {
  return Number.isFinite(weight) && weight > 0 ? weight : 1;
}

function hasUsableAddress(endpoint: Endpoint): boolean {
  const address = (endpoint as Partial<Endpoint> | null | undefined)?.address;
  return typeof address?.host === 'string' && address.host.length > 0 && isPort(address.port);
}

function safeDescribe(endpoint: unknown): string {
  try {
    return JSON.stringify((endpoint as { address?: unknown } | null)?.address) ?? 'undefined';
  } catch {
    return String(endpoint);
  }
}
