// The registration `trellis run` holds for its workload in the state folder
// (`<state>/workloads/<namespace>/<name>-<pid>.json`, read by the control plane's LocalWatcher):
// where its proxy's inbound listener is, whether the app is ready, and a lease renewed every
// LEASE_MS / 3. If `trellis run` dies without withdrawing it (SIGKILL, a crash, a power cut), the
// control plane stops serving it once the lease runs out and removes the file. Writes are
// whole-file and atomic, one at a time, the latest state winning; the control plane may remove an
// expired file while its holder was only stalled (a suspended laptop): the next renewal writes it
// again.
import { rm } from 'node:fs/promises';
import { writeAtomically } from '../control/discovery/state-file-io.ts';
import { workloadPath } from '../control/discovery/state-layout.ts';

/** What the registration says (src/control/discovery/local-state.ts validates the format). */
export interface RegistrationSpec {
  readonly service: string;
  readonly address: string;
  readonly port: number;
  readonly ports: readonly { readonly name: string; readonly port: number }[];
  readonly appPort: number;
  readonly meshed: boolean;
  readonly identity?: string;
  readonly ready: boolean;
  readonly admin: string;
}

export class WorkloadRegistration {
  /** How long a registration holds without renewal. */
  static readonly LEASE_MS = 10_000;
  readonly path: string;
  readonly #note: (text: string) => void;
  readonly #leaseMs: number;
  #spec: RegistrationSpec | null = null;
  #timer: NodeJS.Timeout | null = null;
  #writing: Promise<void> = Promise.resolve();
  #failing = false;
  #withdrawn = false;

  constructor(
    root: string,
    namespace: string,
    instance: string,
    note: (text: string) => void,
    leaseMs = WorkloadRegistration.LEASE_MS,
  ) {
    this.path = workloadPath(root, namespace, instance);
    this.#note = note;
    this.#leaseMs = leaseMs;
  }

  /** Sets (part of) the spec and writes it; the first call also starts the lease renewals. */
  set(spec: RegistrationSpec | Partial<RegistrationSpec>): Promise<void> {
    if (this.#withdrawn) return Promise.resolve();
    const next = { ...this.#spec, ...spec } as RegistrationSpec;
    if (this.#spec === null && !('service' in spec)) throw new TypeError('the first set needs a whole spec');
    this.#spec = next;
    if (this.#timer === null) {
      this.#timer = setInterval(() => void this.#write(), Math.max(100, this.#leaseMs / 3));
      this.#timer.unref();
    }
    return this.#write();
  }

  /** Stops renewing and removes the registration. */
  async withdraw(): Promise<void> {
    this.#withdrawn = true;
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    await this.#writing;
    if (this.#spec !== null) await rm(this.path, { force: true });
  }

  #write(): Promise<void> {
    this.#writing = this.#writing.then(async () => {
      const spec = this.#spec;
      if (spec === null || this.#withdrawn) return;
      const lease = { renewedAt: Date.now(), durationMs: this.#leaseMs };
      try {
        await writeAtomically(this.path, JSON.stringify({ ...spec, lease }, null, 2) + '\n');
        if (this.#failing) this.#note('the registration is written again');
        this.#failing = false;
      } catch (error) {
        if (!this.#failing) this.#note(`cannot write the registration: ${(error as Error).message}`);
        this.#failing = true;
      }
    });
    return this.#writing;
  }
}
