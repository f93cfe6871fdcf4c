// The policy source of one machine: Servers and AuthorizationPolicies from `<state>/policy/`
// (state-files.ts), and what is known of workloads from the rest of the state folder
// (local-state.ts), kept up to date by the shared FolderSnapshot (../discovery/folder-snapshot.ts:
// a recursive fs.watch, debounced, with a periodic full rescan for the events fs.watch misses);
// listeners are told only when the policy resources or the workload facts actually changed.
//
// Workload facts on one machine: labels are the `labels` of the workload's registrations
// (workloads/<ns>/<name>-<id>.json whose service is the workload), or the proxy's own when none
// has any. Port names resolve first through the workload's registrations: `trellis run` records
// the app port (`appPort`) beside the named ports its proxy serves, and every one of them reaches
// that app port. Otherwise through the workload's Service (services/<ns>/<name>.yaml): a port
// named NAME, or whose targetPort is NAME, gives its `port`. Instances of one workload each have
// their own app port, and these facts are per workload (the first registration's): a proxy's own
// names for its app port (InboundRequest.named_ports, from `trellis run`) come before them, and
// instances() gives each registration's names for the views (`trellis authz`).
import type { Logger } from '../../core/log.ts';
import { FolderSnapshot } from '../discovery/folder-snapshot.ts';
import { readLocalState, type LocalState, type StateFileCache } from '../discovery/local-state.ts';
import { EMPTY_SNAPSHOT, type PolicySnapshot, type WorkloadFacts } from './model.ts';
import type { PolicySource, WorkloadInstance } from './source.ts';
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
  readonly #folder: FolderSnapshot<{ readonly snapshot: PolicySnapshot; readonly state: LocalState }>;

  constructor(options: LocalPolicySourceOptions) {
    const log = options.log.child({ component: 'policy-local' });
    const policyCache: PolicyFileCache = new Map();
    const stateCache: StateFileCache = new Map();
    // The whole state folder: workload registrations and services change the facts too.
    this.#folder = new FolderSnapshot({
      ...options,
      log,
      folder: policyDir(options.root),
      initial: { snapshot: EMPTY_SNAPSHOT, state: EMPTY_STATE },
      read: async () => ({
        snapshot: await readPolicyFolder(options.root, policyCache, log),
        state: await readLocalState(options.root, stateCache, log),
      }),
      key: ({ snapshot, state }) => [snapshot, factsKey(state)],
    });
  }

  ready(): Promise<void> {
    return this.#folder.ready();
  }

  snapshot(): PolicySnapshot {
    return this.#folder.value.snapshot;
  }

  workload(namespace: string, name: string, labels: Readonly<Record<string, string>>): WorkloadFacts {
    const state = this.#folder.value.state;
    const registered = state.workloads.find(
      (w) => w.namespace === namespace && w.spec.service === name && Object.keys(w.spec.labels).length > 0,
    );
    const namedPorts = new Map<string, number>();
    // A registration that names its app port (trellis run): each of its named ports reaches it.
    for (const w of state.workloads) {
      if (w.namespace !== namespace || w.spec.service !== name || w.spec.appPort === undefined) continue;
      for (const p of w.spec.ports ?? []) {
        if (p.name !== undefined && !namedPorts.has(p.name)) namedPorts.set(p.name, w.spec.appPort);
      }
    }
    for (const port of state.services.get(`${namespace}/${name}`)?.ports ?? []) {
      if (port.name !== undefined && !namedPorts.has(port.name)) namedPorts.set(port.name, port.port);
      if (typeof port.targetPort === 'string' && !namedPorts.has(port.targetPort))
        namedPorts.set(port.targetPort, port.port);
    }
    return { namespace, name, labels: registered?.spec.labels ?? labels, namedPorts };
  }

  /** Each registration of the workload that names its app port: what its proxy names (run-workload.ts). */
  instances(namespace: string, name: string): WorkloadInstance[] {
    const out: WorkloadInstance[] = [];
    for (const w of this.#folder.value.state.workloads) {
      const appPort = w.spec.appPort;
      if (w.namespace !== namespace || w.spec.service !== name || appPort === undefined) continue;
      const names = (w.spec.ports ?? []).flatMap((p) => (p.name === undefined ? [] : [p.name]));
      out.push({ instance: w.name, namedPorts: new Map(names.map((n) => [n, appPort])) });
    }
    return out;
  }

  onChange(listener: () => void): () => void {
    return this.#folder.onChange(listener);
  }

  /** Scans the folder now (after an in-progress scan, if any) and tells listeners of changes. */
  rescan(): Promise<void> {
    return this.#folder.rescan();
  }

  close(): Promise<void> {
    return this.#folder.close();
  }
}

/** The parts of the state folder that workload facts come from (not readiness, not endpoints). */
function factsKey(state: LocalState): unknown {
  return [
    Array.from(state.services.values(), (s) => [s.namespace, s.name, s.ports]),
    state.workloads.map((w) => [w.namespace, w.spec.service, w.spec.labels]),
  ];
}
