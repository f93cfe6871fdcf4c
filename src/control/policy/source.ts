// The seam between where policy resources live and the Policy API (component.ts): one interface,
// two sources: the state folder of one machine (local.ts) and the Kubernetes API (kubernetes.ts).
// Both run through one contract test (test/unit/policy-source-contract.ts).
import type { PolicySnapshot, WorkloadFacts } from './model.ts';

/** One instance of a workload and the names its proxy gives its own app port. */
export interface WorkloadInstance {
  readonly instance: string;
  readonly namedPorts: ReadonlyMap<string, number>;
}

export interface PolicySource {
  /** Resolves once the first full read (list) is done. */
  ready(): Promise<void>;
  /** Every valid Server and AuthorizationPolicy known now. */
  snapshot(): PolicySnapshot;
  /**
   * What the source knows of a workload (labels for podSelector, port names for named Server
   * ports), with `labels` from the proxy's request filling in when the source knows none.
   */
  workload(namespace: string, name: string, labels: Readonly<Record<string, string>>): WorkloadFacts;
  /**
   * The instances of a workload whose proxies each name their own app port (one machine: the
   * registrations of `trellis run`, each with the names its proxy sends in
   * InboundRequest.named_ports), for the views; absent where a workload is one instance (a pod).
   */
  instances?(namespace: string, name: string): readonly WorkloadInstance[];
  /** Called after anything the snapshot or workload facts depend on changed. Returns an unsubscribe. */
  onChange(listener: () => void): () => void;
  close(): Promise<void>;
}

/** Listener plumbing shared by the sources: a listener that throws never stops the others. */
export class ChangeListeners {
  readonly #listeners = new Set<() => void>();
  readonly #onError: (error: unknown) => void;

  constructor(onError: (error: unknown) => void) {
    this.#onError = onError;
  }

  add(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  notify(): void {
    for (const listener of Array.from(this.#listeners)) {
      try {
        listener();
      } catch (error) {
        this.#onError(error);
      }
    }
  }

  clear(): void {
    this.#listeners.clear();
  }
}
