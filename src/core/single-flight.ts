// An async task that runs once at a time, where asking again while it runs is not lost: the run in
// progress goes round once more when it is done (requests during a run coalesce into that one
// extra pass), and every caller gets the promise of the run that will see its request. Used where
// events ask to look at something again (a folder after file events, the control file after a
// failed call): a burst of them costs at most two passes.

export class SingleFlight {
  readonly #pass: () => Promise<void>;
  readonly #stopped: () => boolean;
  #running: Promise<void> | null = null;
  #again = false;

  /** `pass` does the work once; no further pass starts once `stopped()` is true. */
  constructor(pass: () => Promise<void>, stopped: () => boolean = () => false) {
    this.#pass = pass;
    this.#stopped = stopped;
  }

  /** Runs now, or once more after the run in progress; resolves when that run is over. */
  run(): Promise<void> {
    if (this.#running !== null) {
      this.#again = true;
      return this.#running;
    }
    this.#running = this.#loop().finally(() => {
      this.#running = null;
    });
    return this.#running;
  }

  /** The run in progress, if any. */
  get running(): Promise<void> | null {
    return this.#running;
  }

  async #loop(): Promise<void> {
    // Bounded: each pass consumes the requests made before it; more come only while events do.
    do {
      this.#again = false;
      await this.#pass();
    } while (this.#again && !this.#stopped());
  }
}
