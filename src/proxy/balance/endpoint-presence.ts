// Which endpoint addresses the proxy's discovery holds, across all of its EndpointSets, and who to
// tell when one has left them all. An address may back several targets at once (`web` and
// `web.ns`, a pod behind two Services, a Service's ClusterIP): it leaves discovery only when the
// last set that held it removed it. The connection pools listen (runtime.ts): the pooled
// connections to an address that left are drained (idle ones closed at once, busy ones once their
// requests are done), instead of lingering until their idle timeout, as linkerd and Envoy do.
//
// A set that is closed because nobody used its target for a while (discovery's idle sweep) did not
// see its endpoints leave: it lets go of them without telling (forget), so their connections end
// on their own idle timers as before.
//
// Runs only on discovery updates, never per request.
import { silentLogger, type Logger } from '../../core/log.ts';

export class EndpointPresence {
  /** How many sets hold each address key. */
  readonly #holders = new Map<string, number>();
  readonly #listeners = new Set<(key: string) => void>();
  readonly #log: Logger;

  constructor(log: Logger = silentLogger) {
    this.#log = log;
  }

  /** A set took the address `key` in. */
  enter(key: string): void {
    this.#holders.set(key, (this.#holders.get(key) ?? 0) + 1);
  }

  /** A set removed the address `key` (discovery said it is gone): told when no set holds it any more. */
  leave(key: string): void {
    if (this.#release(key)) this.#tell(key);
  }

  /** A set let go of `key` without discovery removing it (the set was closed): nobody is told. */
  forget(key: string): void {
    this.#release(key);
  }

  /** Whether any set holds the address `key`. */
  holds(key: string): boolean {
    return this.#holders.has(key);
  }

  /** Calls `listener` with each address key that left every set. */
  onLeft(listener: (key: string) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** One holder fewer; true when it was the last. */
  #release(key: string): boolean {
    const n = this.#holders.get(key);
    if (n === undefined) return false;
    if (n > 1) {
      this.#holders.set(key, n - 1);
      return false;
    }
    this.#holders.delete(key);
    return true;
  }

  #tell(key: string): void {
    for (const listener of this.#listeners) {
      try {
        listener(key);
      } catch (error) {
        // A listener's failure is its own: the other pools still drain.
        this.#log.error('an endpoint-left listener threw', { endpoint: key, error });
      }
    }
  }
}
