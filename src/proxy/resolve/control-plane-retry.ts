// Retrying a call to the control plane, the one way the proxy's clients of it do (the Destination
// and Policy watches through watch-stream.ts, the identity client for its certificate requests):
// after each failure the call is made again after the shared exponential backoff with jitter
// (src/core/backoff.ts), counting consecutive failures until one succeeds; a failure that may
// mean the control plane went away asks the locator to look for it again
// (control-plane-address.ts); and when the control plane restarted or moved, a retry waiting out
// its backoff is made at once (or the owner's own `onMove` runs instead). At most one retry is
// pending. Nothing here loads gRPC.
import { backoffDelay, type BackoffSettings } from '../../core/backoff.ts';
import { systemTimers, type TimerHandle, type Timers } from '../../core/clock.ts';
import { mathRandom, type Random } from '../../core/random.ts';
import type { ControlPlaneLocator } from './control-plane-address.ts';

export interface ControlPlaneRetryOptions {
  readonly locator: ControlPlaneLocator;
  readonly backoff: BackoffSettings;
  /** Makes the call again. */
  readonly run: () => void;
  /** When the control plane restarted or moved (default: a pending retry is made at once). */
  readonly onMove?: () => void;
  readonly timers?: Timers;
  readonly random?: Random;
}

export class ControlPlaneRetry {
  readonly #locator: ControlPlaneLocator;
  readonly #backoff: BackoffSettings;
  readonly #run: () => void;
  readonly #timers: Timers;
  readonly #random: Random;
  readonly #stopFollowing: () => void;
  #failures = 0;
  #timer: TimerHandle | null = null;
  #closed = false;

  constructor(options: ControlPlaneRetryOptions) {
    this.#locator = options.locator;
    this.#backoff = options.backoff;
    this.#run = options.run;
    this.#timers = options.timers ?? systemTimers;
    this.#random = options.random ?? mathRandom;
    const onMove = options.onMove ?? (() => this.now());
    this.#stopFollowing = this.#locator.onMove(() => {
      if (!this.#closed) onMove();
    });
  }

  /** Consecutive failures since the last success (or reset). */
  get failures(): number {
    return this.#failures;
  }

  /** Whether a retry is waiting out its backoff. */
  get waiting(): boolean {
    return this.#timer !== null;
  }

  /**
   * The call failed: runs it again after the backoff for one more failure, and returns that delay.
   * `lookAgain`: the failure may mean the control plane is gone; ask the locator where it is now.
   */
  failed(lookAgain: boolean): number {
    if (lookAgain) this.#locator.refresh();
    const delay = backoffDelay(this.#failures++, this.#backoff, this.#random);
    this.#timer?.cancel();
    if (!this.#closed) this.#timer = this.#timers.setTimeout(() => this.#fire(), delay);
    return delay;
  }

  /** The call succeeded: true when failures came before it (it recovered). */
  succeeded(): boolean {
    const recovered = this.#failures > 0;
    this.#failures = 0;
    return recovered;
  }

  /** Makes a pending retry at once; nothing when none is pending. */
  now(): void {
    if (this.#timer === null || this.#closed) return;
    this.#timer.cancel();
    this.#fire();
  }

  /** Forgets the failures and any pending retry (the owner starts the call again itself). */
  reset(): void {
    this.#timer?.cancel();
    this.#timer = null;
    this.#failures = 0;
  }

  /** No more retries, and no more news of moves. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#stopFollowing();
    this.#timer?.cancel();
    this.#timer = null;
  }

  #fire(): void {
    this.#timer = null;
    this.#run();
  }
}
