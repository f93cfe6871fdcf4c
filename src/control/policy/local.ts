// The policy source of one machine: Servers and AuthorizationPolicies from `<state>/policy/`
// (state-files.ts), and what is known of workloads from the rest of the state folder
// (local-state.ts). Changes are seen through a recursive fs.watch, debounced, with a periodic full
// rescan for the events fs.watch misses (as the LocalWatcher of discovery does); listeners are told
// only when the policy resources or the workload facts actually changed.
//
// Workload facts on one machine: labels are the `labels` of the workload's registrations
// (workloads/<ns>/<name>-<id>.json whose service is the workload), or the proxy's own when none
// has any. Port names resolve first through the workload's registrations: `trellis run` records
// the app port (`appPort`) beside the named ports its proxy serves, and every one of them reaches
// that app port. Otherwise through the workload's Service (services/<ns>/<name>.yaml): a port
// named NAME, or whose targetPort is NAME, gives its `port`.
import { watch, type FSWatcher } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import type { Logger } from '../../core/log.ts';
import { readLocalState, type LocalState, type StateFileCache } from '../discovery/local-state.ts';
import { EMPTY_SNAPSHOT, type PolicySnapshot, type WorkloadFacts } from './model.ts';
import { ChangeListeners, type PolicySource } from './source.ts';
import { policyDir, readPolicyFolder, type PolicyFileCache } from './state-files.ts';

export interface LocalPolicySourceOptions {
  readonly root: string;
  readonly log: Logger;
  /** How long to wait after a file event for more before rescanning. Default 50 ms. */
  readonly debounceMs?: number;
  /** The fallback full rescan. Default 2000 ms. */
  readonly rescanIntervalMs?: number;
}

const EMPTY_STATE: LocalState = { services: new Map(), workloads: [] };

export class LocalPolicySource implements PolicySource {
  readonly #root: string;
  readonly #log: Logger;
  readonly #debounceMs: number;
  readonly #policyCache: PolicyFileCache = new Map();
  readonly #stateCache: StateFileCache = new Map();
  readonly #listeners: ChangeListeners;
  readonly #ready: Promise<void>;
  #snapshot: PolicySnapshot = EMPTY_SNAPSHOT;
  #state: LocalState = EMPTY_STATE;
  #key = '';
  #fsWatcher: FSWatcher | null = null;
  #debounce: NodeJS.Timeout | null = null;
  #interval: NodeJS.Timeout | null = null;
  #scan: Promise<void> | null = null;
  #scanAgain = false;
  #closed = false;

  constructor(options: LocalPolicySourceOptions) {
    this.#root = options.root;
    this.#log = options.log.child({ component: 'policy-local' });
    this.#debounceMs = options.debounceMs ?? 50;
    this.#listeners = new ChangeListeners((error) => this.#log.error('policy listener threw', { error }));
    this.#ready = this.#start(options.rescanIntervalMs ?? 2000);
    this.#ready.catch(() => {});
  }

  ready(): Promise<void> {
    return this.#ready;
  }

  snapshot(): PolicySnapshot {
    return this.#snapshot;
  }

  workload(namespace: string, name: string, labels: Readonly<Record<string, string>>): WorkloadFacts {
    const registered = this.#state.workloads.find(
      (w) => w.namespace === namespace && w.spec.service === name && Object.keys(w.spec.labels).length > 0,
    );
    const namedPorts = new Map<string, number>();
    // A registration that names its app port (trellis run): each of its named ports reaches it.
    for (const w of this.#state.workloads) {
      if (w.namespace !== namespace || w.spec.service !== name || w.spec.appPort === undefined) continue;
      for (const p of w.spec.ports ?? []) {
        if (p.name !== undefined && !namedPorts.has(p.name)) namedPorts.set(p.name, w.spec.appPort);
      }
    }
    for (const port of this.#state.services.get(`${namespace}/${name}`)?.ports ?? []) {
      if (port.name !== undefined && !namedPorts.has(port.name)) namedPorts.set(port.name, port.port);
      if (typeof port.targetPort === 'string' && !namedPorts.has(port.targetPort))
        namedPorts.set(port.targetPort, port.port);
    }
    return { namespace, name, labels: registered?.spec.labels ?? labels, namedPorts };
  }

  onChange(listener: () => void): () => void {
    return this.#listeners.add(listener);
  }

  /** Scans the folder now (after an in-progress scan, if any) and tells listeners of changes. */
  rescan(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    if (this.#scan !== null) {
      this.#scanAgain = true;
      return this.#scan;
    }
    this.#scan = this.#scanLoop().finally(() => {
      this.#scan = null;
    });
    return this.#scan;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#fsWatcher?.close();
    if (this.#debounce !== null) clearTimeout(this.#debounce);
    if (this.#interval !== null) clearInterval(this.#interval);
    this.#listeners.clear();
    await this.#scan?.catch(() => {});
  }

  async #start(rescanIntervalMs: number): Promise<void> {
    await mkdir(policyDir(this.#root), { recursive: true });
    if (this.#closed) return;
    try {
      // The whole state folder: workload registrations and services change the facts too.
      this.#fsWatcher = watch(this.#root, { recursive: true, persistent: false }, () => this.#onFileEvent());
      this.#fsWatcher.on('error', (error) => {
        this.#log.warn('watching the state folder failed; relying on the periodic rescan', { error });
        this.#fsWatcher?.close();
        this.#fsWatcher = null;
      });
    } catch (error) {
      this.#log.warn('cannot watch the state folder; relying on the periodic rescan', { error });
    }
    this.#interval = setInterval(() => void this.rescan(), rescanIntervalMs);
    this.#interval.unref();
    await this.rescan();
  }

  #onFileEvent(): void {
    if (this.#closed) return;
    if (this.#debounce !== null) clearTimeout(this.#debounce);
    this.#debounce = setTimeout(() => {
      this.#debounce = null;
      void this.rescan();
    }, this.#debounceMs);
    this.#debounce.unref();
  }

  async #scanLoop(): Promise<void> {
    // Bounded: each pass consumes one request for another; they keep coming only while files change.
    do {
      this.#scanAgain = false;
      const snapshot = await readPolicyFolder(this.#root, this.#policyCache, this.#log);
      const state = await readLocalState(this.#root, this.#stateCache, this.#log);
      if (this.#closed) return;
      const key = JSON.stringify([snapshot, factsKey(state)]);
      this.#snapshot = snapshot;
      this.#state = state;
      if (key !== this.#key) {
        this.#key = key;
        this.#listeners.notify();
      }
    } while (this.#scanAgain && !this.#closed);
  }
}

/** The parts of the state folder that workload facts come from (not readiness, not endpoints). */
function factsKey(state: LocalState): unknown {
  return [
    Array.from(state.services.values(), (s) => [s.namespace, s.name, s.ports]),
    state.workloads.map((w) => [w.namespace, w.spec.service, w.spec.labels]),
  ];
}
