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
import { mkdir } from 'node:fs/promises';
import type { Logger } from '../../core/log.ts';
import { FolderScanner } from '../discovery/folder-scanner.ts';
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
  readonly #scanner: FolderScanner;
  readonly #policyCache: PolicyFileCache = new Map();
  readonly #stateCache: StateFileCache = new Map();
  readonly #listeners: ChangeListeners;
  readonly #ready: Promise<void>;
  #snapshot: PolicySnapshot = EMPTY_SNAPSHOT;
  #state: LocalState = EMPTY_STATE;
  #key = '';
  #closed = false;

  constructor(options: LocalPolicySourceOptions) {
    this.#root = options.root;
    this.#log = options.log.child({ component: 'policy-local' });
    this.#listeners = new ChangeListeners((error) => this.#log.error('policy listener threw', { error }));
    // The whole state folder: workload registrations and services change the facts too.
    this.#scanner = new FolderScanner({
      root: this.#root,
      debounceMs: options.debounceMs ?? 50,
      rescanIntervalMs: options.rescanIntervalMs ?? 2000,
      log: this.#log,
      pass: () => this.#scanPass(),
    });
    this.#ready = this.#start();
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
    return this.#scanner.rescan();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#listeners.clear();
    await this.#scanner.close();
  }

  async #start(): Promise<void> {
    await mkdir(policyDir(this.#root), { recursive: true });
    await this.#scanner.start();
  }

  async #scanPass(): Promise<void> {
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
  }
}

/** The parts of the state folder that workload facts come from (not readiness, not endpoints). */
function factsKey(state: LocalState): unknown {
  return [
    Array.from(state.services.values(), (s) => [s.namespace, s.name, s.ports]),
    state.workloads.map((w) => [w.namespace, w.spec.service, w.spec.labels]),
  ];
}
