// When `trellis run` starts its app or proxy again after it exited, as the kubelet restarts a
// container: a restart policy (docker's and Kubernetes' names) says whether, and a crash-loop
// backoff says when: exponential from 1 s, capped at 30 s, each delay drawn in [delay/2, delay]
// (src/core/backoff.ts), and forgotten once the process has run for a stable period (60 s), so a
// workload that crashes once a day restarts at once, and one that crashes at start does not spin.
import { backoffDelay, type BackoffSettings } from '../core/backoff.ts';
import { mathRandom, type Random } from '../core/random.ts';

/** always: whatever the exit; on-failure: a non-zero exit or a signal; never: not at all. */
export type RestartPolicy = 'always' | 'on-failure' | 'never';
export const RESTART_POLICIES: readonly RestartPolicy[] = ['always', 'on-failure', 'never'];

export const RESTART_BACKOFF: BackoffSettings = { initialMs: 1000, maxMs: 30_000 };
/** A process that ran this long before it exited starts the backoff over. */
export const STABLE_RUN_MS = 60_000;

/** How a process ended: its exit code, or the signal that killed it. */
export interface ExitStatus {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/** Whether `policy` restarts a process that ended with `status` (the app: the proxy always counts as failed). */
export function shouldRestart(policy: RestartPolicy, status: ExitStatus): boolean {
  if (policy === 'never') return false;
  return policy === 'always' || status.code !== 0;
}

/** The crash-loop backoff of one process (see the file comment). */
export class RestartBackoff {
  readonly #settings: BackoffSettings;
  readonly #stableMs: number;
  readonly #random: Random;
  #restarts = 0;

  constructor(options: { settings?: BackoffSettings; stableMs?: number; random?: Random } = {}) {
    this.#settings = options.settings ?? RESTART_BACKOFF;
    this.#stableMs = options.stableMs ?? STABLE_RUN_MS;
    this.#random = options.random ?? mathRandom;
  }

  /** Restarts since the backoff last started over. */
  get restarts(): number {
    return this.#restarts;
  }

  /** The delay before starting again a process that ran for `ranMs` and then exited. */
  next(ranMs: number): number {
    if (ranMs >= this.#stableMs) this.#restarts = 0;
    return backoffDelay(this.#restarts++, this.#settings, this.#random);
  }
}

/** "exited with code 3", "was killed by SIGSEGV". */
export function describeExit(status: ExitStatus): string {
  return status.signal !== null ? `was killed by ${status.signal}` : `exited with code ${status.code}`;
}
