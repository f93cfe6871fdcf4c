// A resolver over a fixed table of target -> endpoints, for configuration that lists endpoints
// directly (no control plane) and for tests. Each resolution gets a `reset` with the target's
// endpoints, or `does-not-exist` for a target that is not in the table. `set` replaces a target's
// endpoints and pushes the change to every open resolution, so tests can script discovery.

import { ConfigError } from '../../core/errors.ts';
import { parseAuthority } from '../../core/target.ts';
import type { Endpoint, EndpointAddress, Update } from '../../core/endpoints.ts';
import type { Resolution, Resolver } from './resolver.ts';

/** Builds an Endpoint from "host:port" (or an address) with plain defaults for the rest. */
export function staticEndpoint(
  address: string | EndpointAddress,
  fields: Partial<Omit<Endpoint, 'address'>> = {},
): Endpoint {
  let parsed: EndpointAddress;
  if (typeof address === 'string') {
    const target = parseAuthority(address, 0);
    if (target === null || target.port === 0) {
      throw new ConfigError('endpoints', `"${address}" is not host:port`);
    }
    parsed = { host: target.host, port: target.port };
  } else {
    parsed = { host: address.host, port: address.port };
  }
  return {
    address: parsed,
    weight: fields.weight ?? 1,
    labels: fields.labels ?? {},
    meshed: fields.meshed ?? false,
    identity: fields.identity ?? null,
    protocolHint: fields.protocolHint ?? 'unknown',
  };
}

type Table = ReadonlyMap<string, readonly Endpoint[]> | Readonly<Record<string, readonly Endpoint[]>>;

interface Watch {
  readonly target: string;
  readonly onUpdate: (update: Update) => void;
  cancelled: boolean;
}

export class StaticResolver implements Resolver {
  readonly #table = new Map<string, readonly Endpoint[]>();
  readonly #watches = new Set<Watch>();

  constructor(table: Table = {}) {
    const entries = table instanceof Map ? table.entries() : Object.entries(table);
    for (const [target, endpoints] of entries) this.#table.set(target, [...endpoints]);
  }

  resolve(target: string, onUpdate: (update: Update) => void, _onError: (error: Error) => void): Resolution {
    const watch: Watch = { target, onUpdate, cancelled: false };
    this.#watches.add(watch);
    // Never deliver synchronously: the caller must get its Resolution first. The first update is
    // read when it is delivered, so a `set` in between is not lost or reordered.
    queueMicrotask(() => this.#deliver(watch, this.#current(target)));
    return {
      cancel: () => {
        watch.cancelled = true;
        this.#watches.delete(watch);
      },
    };
  }

  /** Replaces `target`'s endpoints (null: the target no longer exists) and tells open resolutions. */
  set(target: string, endpoints: readonly Endpoint[] | null): void {
    if (endpoints === null) this.#table.delete(target);
    else this.#table.set(target, [...endpoints]);
    const update = this.#current(target);
    for (const watch of this.#watches) {
      if (watch.target === target) queueMicrotask(() => this.#deliver(watch, update));
    }
  }

  /** How many resolutions are open (tests check that cancel releases them). */
  get openResolutions(): number {
    return this.#watches.size;
  }

  #current(target: string): Update {
    const endpoints = this.#table.get(target);
    return endpoints === undefined ? { kind: 'does-not-exist' } : { kind: 'reset', endpoints };
  }

  #deliver(watch: Watch, update: Update): void {
    if (!watch.cancelled) watch.onUpdate(update);
  }
}
