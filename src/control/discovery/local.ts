// The local discovery source of one-machine mode: a Watcher over the state folder of `trellis up`
// (format and validation in local-state.ts). Changes are seen through a recursive fs.watch,
// debounced, with a periodic full rescan as the fallback for events fs.watch misses (new
// subfolders, editors that replace files, platforms without recursive watching). Each scan
// rebuilds the state and diffs every subscription's endpoints against what it last delivered, so
// subscribers get a reset / add / remove / does-not-exist stream as from the Kubernetes watcher.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { silentLogger, type Logger } from '../../core/log.ts';
import { targetKey } from '../../proxy/transport/target.ts';
import { FolderScanner } from './folder-scanner.ts';
import { endpointsOf, readLocalState, type LocalState, type StateFileCache } from './local-state.ts';
import type { Endpoint, ServicePortKey, Subscription, Update, Watcher } from './watcher.ts';

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

interface LocalSubscription {
  readonly key: ServicePortKey;
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
    const subscription: LocalSubscription = { key, listener, active: !this.#closed, view: undefined };
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
    await this.#scanner.close();
  }

  async #start(): Promise<void> {
    await mkdir(join(this.root, 'services'), { recursive: true });
    await mkdir(join(this.root, 'workloads'), { recursive: true });
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
  }

  /** Tells `subscription` how the current state differs from what it was last told. */
  #deliverChanges(subscription: LocalSubscription): void {
    if (!subscription.active) return;
    const next = viewOf(this.#state, subscription.key);
    const previous = subscription.view;
    subscription.view = next;
    for (const update of diff(previous, next)) {
      if (!subscription.active) return;
      try {
        subscription.listener(update);
      } catch (error) {
        this.#log.error('watcher listener threw', { error });
      }
    }
  }
}

function viewOf(state: LocalState, key: ServicePortKey): View {
  const endpoints = endpointsOf(state, key);
  if (endpoints === null) return null;
  const view: NonNullable<View> = new Map();
  for (const endpoint of endpoints) {
    view.set(targetKey(endpoint.address), { endpoint, fingerprint: fingerprint(endpoint) });
  }
  return view;
}

/** The updates that take a subscriber from `previous` (undefined: nothing yet) to `next`. */
function diff(previous: View | undefined, next: View): Update[] {
  if (next === null) return previous === null ? [] : [{ kind: 'does-not-exist' }];
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
