// Outbound discovery: turns a logical target ("web.default:8080") into one endpoint per request
// (HTTP) or per connection (TCP), through the resolver's stream of updates, an EndpointSet per
// target and power-of-two-choices over peak-EWMA (linkerd's "concrete" balance layer).
//
// Targets that are IP literals, and names the control plane does not know (does-not-exist), are
// forwarded to their original address unchanged. A known target with no endpoints waits up to
// failFastMs for one, then fails with `no-endpoints` (503).
import { isIP } from 'node:net';
import { EndpointSet } from '../balance/endpoint-set.ts';
import { P2c } from '../balance/p2c.ts';
import type { Endpoint, Resolution, Resolver } from '../resolve/resolver.ts';
import type { Logger } from '../../core/log.ts';
import { type Target, targetKey } from '../transport/target.ts';

/** Where one request or connection goes; call done() when it ends (with the RTT when known). */
export interface Pick {
  readonly address: Target;
  /** The endpoint as discovery described it, or null for a direct (undiscovered) target. */
  readonly endpoint: Endpoint | null;
  /** The endpoint's key in its set (for retries that must pick another). */
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
  readonly log: Logger;
}

interface Entry {
  readonly set: EndpointSet;
  readonly p2c: P2c<ReturnType<EndpointSet['get']> & object>;
  readonly resolution: Resolution;
  lastUsed: number;
}

const noop = (): void => {};

export class ServiceDiscovery {
  private readonly opts: DiscoveryOptions;
  private readonly entries = new Map<string, Entry>();
  private sweeper: NodeJS.Timeout | null = null;

  constructor(opts: DiscoveryOptions) {
    this.opts = opts;
  }

  /** True when a target is resolved through the control plane (else it is always direct). */
  isLogical(target: Target): boolean {
    return this.opts.resolver !== null && isIP(target.host) === 0;
  }

  /**
   * Picks where a request or connection to `target` goes. Synchronous when the answer is known
   * (the common case), a promise when the target's endpoints are still on their way.
   * `avoid`: a key not to pick again (a retry after a failed connect), when there is another.
   */
  pick(target: Target, avoid: string | null = null): PickOutcome | Promise<PickOutcome> {
    if (!this.isLogical(target)) return direct(target);
    const entry = this.entry(target);
    entry.lastUsed = Date.now();
    const now = this.fromSet(entry, target, avoid);
    if (now !== null) return now;
    return entry.set
      .waitReady(this.opts.failFastMs)
      .then(() => this.fromSet(entry, target, avoid) ?? NO_ENDPOINTS);
  }

  private fromSet(entry: Entry, target: Target, avoid: string | null): PickOutcome | null {
    switch (entry.set.status) {
      case 'does-not-exist':
        return direct(target);
      case 'ready': {
        let state = entry.p2c.pick();
        for (let i = 0; i < 3 && state !== null && state.key === avoid; i++) state = entry.p2c.pick();
        if (state === null) return null;
        const handle = state.start();
        return {
          address: state.endpoint.address,
          endpoint: state.endpoint,
          key: state.key,
          done: (rttMs?: number) => handle.complete(rttMs),
        };
      }
      default:
        return null;
    }
  }

  private entry(target: Target): Entry {
    const key = targetKey(target);
    let entry = this.entries.get(key);
    if (entry === undefined) {
      const set = new EndpointSet({ log: this.opts.log });
      const resolution = set.subscribe(this.opts.resolver!, key);
      entry = { set, p2c: new P2c(set), resolution, lastUsed: Date.now() };
      this.entries.set(key, entry);
      this.startSweeper();
    }
    return entry;
  }

  private startSweeper(): void {
    if (this.sweeper !== null || this.opts.idleMs <= 0) return;
    this.sweeper = setInterval(
      () => {
        const cutoff = Date.now() - this.opts.idleMs;
        for (const [key, e] of this.entries) {
          if (e.lastUsed < cutoff) {
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
    for (const e of this.entries.values()) {
      e.resolution.cancel();
      e.set.close();
    }
    this.entries.clear();
  }
}

const NO_ENDPOINTS: PickOutcome = { error: 'no-endpoints' };

function direct(target: Target): Pick {
  return { address: target, endpoint: null, key: null, done: noop };
}
