// The local discovery source of one-machine mode: a Watcher over the state folder of `trellis up`
// (format and validation in local-state.ts). Changes are seen through a recursive fs.watch,
// debounced, with a periodic full rescan as the fallback for events fs.watch misses (new
// subfolders, editors that replace files, platforms without recursive watching). Each scan
// rebuilds the state and diffs every subscription's endpoints against what it last delivered, so
// subscribers get a reset / add / remove / does-not-exist stream as from the Kubernetes watcher.
//
// Registrations with a lease (`trellis run` renews its own) hold only while it is renewed: a scan
// leaves an expired one out at once, and removes its file (and its workload token) after checking
// once more that it is still expired; a scan is due when the next lease runs out. This is also how
// a control plane that starts over an old state folder re-checks what was registered before.
//
// Address subscriptions: services here have no virtual IPs, so an address is either a ready
// registered workload's address and one of its ports (that endpoint as its service describes it),
// or unknown (the address itself).
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { silentLogger, type Logger } from '../../core/log.ts';
import { targetKey } from '../../core/target.ts';
import { FolderScanner } from './folder-scanner.ts';
import {
  endpointsOf,
  readLocalState,
  type LocalState,
  type LocalWorkload,
  type StateFileCache,
} from './local-state.ts';
import { type Lease, leaseExpired, workloadTokenPath } from './state-layout.ts';
import { makeStateDir } from './state-file-io.ts';
import {
  canonicalIp,
  plainEndpoint,
  type AddressKey,
  type Endpoint,
  type ServicePortKey,
  type Subscription,
  type Update,
  type Watcher,
} from './watcher.ts';

export interface LocalWatcherOptions {
  /** The state folder; created when missing. Default ".trellis". */
  readonly root?: string;
  /** How long to wait after a file event for more before rescanning. Default 50 ms. */
  readonly debounceMs?: number;
  /** The fallback full rescan. Default 2000 ms. */
  readonly rescanIntervalMs?: number;
  readonly log?: Logger;
}

/** An endpoint set by address key; null: the service port does not exist. */
type View = Map<string, { endpoint: Endpoint; fingerprint: string }> | null;

type LocalTarget =
  | { readonly kind: 'service'; readonly key: ServicePortKey }
  | { readonly kind: 'address'; readonly address: AddressKey };

interface LocalSubscription {
  readonly target: LocalTarget;
  readonly listener: (update: Update) => void;
  active: boolean;
  /** What the subscriber has been told; undefined until its first update. */
  view: View | undefined;
}

const EMPTY_STATE: LocalState = { services: new Map(), workloads: [] };

export class LocalWatcher implements Watcher {
  readonly root: string;
  readonly #log: Logger;
  readonly #cache: StateFileCache = new Map();
  readonly #subscriptions = new Set<LocalSubscription>();
  readonly #ready: Promise<void>;
  readonly #scanner: FolderScanner;
  #state: LocalState = EMPTY_STATE;
  #closed = false;
  /** The scan due when the next lease runs out. */
  #expiryTimer: NodeJS.Timeout | null = null;

  constructor(options: LocalWatcherOptions = {}) {
    this.root = options.root ?? '.trellis';
    this.#log = (options.log ?? silentLogger).child({ component: 'local-watcher' });
    this.#scanner = new FolderScanner({
      root: this.root,
      debounceMs: options.debounceMs ?? 50,
      rescanIntervalMs: options.rescanIntervalMs ?? 2000,
      log: this.#log,
      pass: () => this.#scanPass(),
    });
    this.#ready = this.#start();
    this.#ready.catch(() => {}); // reported to whoever awaits ready()
  }

  ready(): Promise<void> {
    return this.#ready;
  }

  subscribe(key: ServicePortKey, listener: (update: Update) => void): Subscription {
    return this.#subscribe({ kind: 'service', key }, listener);
  }

  subscribeAddress(address: AddressKey, listener: (update: Update) => void): Subscription {
    return this.#subscribe({ kind: 'address', address }, listener);
  }

  #subscribe(target: LocalTarget, listener: (update: Update) => void): Subscription {
    const subscription: LocalSubscription = { target, listener, active: !this.#closed, view: undefined };
    if (subscription.active) {
      this.#subscriptions.add(subscription);
      // The first update comes from the state as it is once the initial scan is done.
      this.#ready.then(
        () => this.#deliverChanges(subscription),
        () => {},
      );
    }
    return {
      unsubscribe: () => {
        subscription.active = false;
        this.#subscriptions.delete(subscription);
      },
    };
  }

  /** Scans the folder now (after an in-progress scan, if any) and delivers the changes. */
  rescan(): Promise<void> {
    return this.#scanner.rescan();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const subscription of this.#subscriptions) subscription.active = false;
    this.#subscriptions.clear();
    if (this.#expiryTimer !== null) clearTimeout(this.#expiryTimer);
    await this.#scanner.close();
  }

  async #start(): Promise<void> {
    await makeStateDir(join(this.root, 'services'));
    await makeStateDir(join(this.root, 'workloads'));
    await this.#scanner.start();
  }

  async #scanPass(): Promise<void> {
    const state = await readLocalState(this.root, this.#cache, this.#log);
    if (this.#closed) return;
    this.#state = state;
    for (const subscription of this.#subscriptions) {
      // Subscriptions still waiting for their first update get it from their own callback.
      if (subscription.view !== undefined) this.#deliverChanges(subscription);
    }
    for (const workload of state.expired ?? []) await this.#removeExpired(workload);
    this.#scanAtNextExpiry(state);
  }

  /** Removes an expired registration's file and token, unless its holder renewed it meanwhile. */
  async #removeExpired(workload: LocalWorkload): Promise<void> {
    let lease: Lease | undefined;
    try {
      lease = (JSON.parse(await readFile(workload.file, 'utf8')) as { lease?: Lease }).lease;
    } catch {
      return; // gone already, or being rewritten: the next scan sees it again
    }
    if (!leaseExpired(lease, Date.now())) return;
    await rm(workload.file, { force: true });
    await rm(workloadTokenPath(this.root, workload.namespace, workload.name), { force: true });
    this.#log.info('registration lease expired; removed', {
      namespace: workload.namespace,
      workload: workload.name,
      renewedAt: lease === undefined ? undefined : new Date(lease.renewedAt).toISOString(),
    });
  }

  #scanAtNextExpiry(state: LocalState): void {
    let next = Infinity;
    for (const { spec } of state.workloads) {
      if (spec.lease !== undefined) next = Math.min(next, spec.lease.renewedAt + spec.lease.durationMs);
    }
    if (this.#expiryTimer !== null) clearTimeout(this.#expiryTimer);
    this.#expiryTimer = null;
    if (next === Infinity || this.#closed) return;
    // Past setTimeout's range, the periodic rescan comes first anyway.
    const delay = Math.min(Math.max(0, next - Date.now()) + 5, 2 ** 31 - 1);
    this.#expiryTimer = setTimeout(() => void this.rescan(), delay);
    this.#expiryTimer.unref();
  }

  /** Tells `subscription` how the current state differs from what it was last told. */
  #deliverChanges(subscription: LocalSubscription): void {
    if (!subscription.active) return;
    const target = subscription.target;
    const next = viewOf(
      target.kind === 'service'
        ? endpointsOf(this.#state, target.key)
        : addressEndpointsOf(this.#state, target.address),
    );
    const previous = subscription.view;
    subscription.view = next;
    const ports = () => (target.kind === 'service' ? servicePortsOf(this.#state, target.key) : []);
    for (const update of diff(previous, next, ports)) {
      if (!subscription.active) return;
      try {
        subscription.listener(update);
      } catch (error) {
        this.#log.error('watcher listener threw', { error });
      }
    }
  }
}

function viewOf(endpoints: readonly Endpoint[] | null): View {
  if (endpoints === null) return null;
  const view: NonNullable<View> = new Map();
  for (const endpoint of endpoints) {
    view.set(targetKey(endpoint.address), { endpoint, fingerprint: fingerprint(endpoint) });
  }
  return view;
}

/**
 * The endpoints behind a destination address (see Watcher.subscribeAddress): the last ready
 * workload (in file order, as for services) registered with that address and port, described as
 * its service's endpoints describe it; a workload that no port of its service leads to still
 * counts, with the facts of its own file. Anything else is the address itself.
 */
export function addressEndpointsOf(state: LocalState, address: AddressKey): Endpoint[] {
  const ip = canonicalIp(address.host);
  const workload = state.workloads.findLast(({ spec }) => {
    if (!spec.ready || canonicalIp(spec.address) !== ip) return false;
    return spec.port === address.port || (spec.ports ?? []).some((p) => p.port === address.port);
  });
  if (workload === undefined) return [plainEndpoint(address)];
  const { namespace } = workload;
  const spec = workload.spec;
  const service = state.services.get(`${namespace}/${spec.service}`);
  for (const servicePort of service?.ports ?? []) {
    const endpoint = endpointsOf(state, { namespace, name: spec.service, port: servicePort.port })?.find(
      (e) => e.labels.workload === workload.name && e.address.port === address.port,
    );
    if (endpoint !== undefined) return [{ ...endpoint, address: { host: address.host, port: address.port } }];
  }
  return [
    {
      address: { host: address.host, port: address.port },
      weight: spec.weight,
      labels: { ...spec.labels, namespace, workload: workload.name, zone: spec.zone },
      meshed: spec.meshed,
      identity: spec.identity === '' ? null : spec.identity,
      protocolHint: spec.meshed ? 'h2' : 'unknown',
    },
  ];
}

/** The ports of the service `key` names (none when there is no such service). */
function servicePortsOf(state: LocalState, key: ServicePortKey): number[] {
  return (state.services.get(`${key.namespace}/${key.name}`)?.ports ?? []).map((p) => p.port);
}

/**
 * The updates that take a subscriber from `previous` (undefined: nothing yet) to `next`;
 * `ports()` gives the service's ports for a does-not-exist (a service without the port asked for).
 */
function diff(previous: View | undefined, next: View, ports: () => number[]): Update[] {
  if (next === null) {
    if (previous === null) return [];
    const known = ports();
    return [known.length > 0 ? { kind: 'does-not-exist', ports: known } : { kind: 'does-not-exist' }];
  }
  if (previous === undefined || previous === null) {
    return [{ kind: 'reset', endpoints: Array.from(next.values(), (e) => e.endpoint) }];
  }
  const updates: Update[] = [];
  const removed = Array.from(previous.keys()).filter((key) => !next.has(key));
  if (removed.length > 0) updates.push({ kind: 'remove', addresses: removed });
  const added: Endpoint[] = [];
  for (const [key, entry] of next) {
    if (previous.get(key)?.fingerprint !== entry.fingerprint) added.push(entry.endpoint);
  }
  if (added.length > 0) updates.push({ kind: 'add', endpoints: added });
  return updates;
}

function fingerprint(endpoint: Endpoint): string {
  const labels = Object.keys(endpoint.labels)
    .sort()
    .map((k) => [k, endpoint.labels[k]]);
  return JSON.stringify([endpoint.weight, labels, endpoint.meshed, endpoint.identity, endpoint.protocolHint]);
}
