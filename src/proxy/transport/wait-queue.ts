// Requests waiting for room on an upstream's connections (the mesh's own HTTP/2 pool and the pool
// of node:http2 sessions): a peer can keep every connection full, or announce
// SETTINGS_MAX_CONCURRENT_STREAMS 0, so the waiting is bounded in count (add refuses past `max`)
// and in time (each waiter leaves on its own deadline, told by its onTimeout). Served oldest first.

interface Waiting<T> {
  readonly value: T;
  readonly timer: NodeJS.Timeout;
}

export class WaitQueue<T> {
  private readonly max: number;
  private readonly waiting = new Set<Waiting<T>>();

  constructor(max: number) {
    this.max = max;
  }

  get size(): number {
    return this.waiting.size;
  }

  /**
   * Adds `value` for at most `ms`, after which it leaves the queue and `onTimeout` is called with
   * it; false (nothing added) when `max` already wait.
   */
  add(value: T, ms: number, onTimeout: (value: T) => void): boolean {
    if (this.waiting.size >= this.max) return false;
    const entry: Waiting<T> = {
      value,
      timer: setTimeout(() => {
        if (this.waiting.delete(entry)) onTimeout(value);
      }, ms),
    };
    this.waiting.add(entry);
    return true;
  }

  /** The value waiting longest, taken out of the queue; undefined when none waits. */
  shift(): T | undefined {
    const first = this.waiting.values().next();
    if (first.done === true) return undefined;
    this.waiting.delete(first.value);
    clearTimeout(first.value.timer);
    return first.value.value;
  }

  /** Every waiting value, oldest first; the queue is left empty. */
  takeAll(): T[] {
    const all = [...this.waiting];
    this.waiting.clear();
    return all.map((entry) => {
      clearTimeout(entry.timer);
      return entry.value;
    });
  }
}
