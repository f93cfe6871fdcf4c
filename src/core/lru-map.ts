// A Map of at most `max` entries that drops the least recently used first. A Map iterates in
// insertion order, so using an entry (get, set) moves it to the end and the first is the oldest.
// For bounded caches keyed by what others send (patterns, peers, instances).
export class LruMap<K, V> {
  readonly #map = new Map<K, V>();
  readonly #max: number;

  constructor(max: number) {
    this.#max = Math.max(1, max);
  }

  get size(): number {
    return this.#map.size;
  }

  /** Whether `key` is kept (without counting as a use). */
  has(key: K): boolean {
    return this.#map.has(key);
  }

  /** The value of `key` (undefined when not kept), now the most recently used. */
  get(key: K): V | undefined {
    if (!this.#map.has(key)) return undefined;
    const value = this.#map.get(key)!;
    this.#map.delete(key);
    this.#map.set(key, value);
    return value;
  }

  /** Keeps `value` for `key` as the most recently used; the oldest goes past `max`. */
  set(key: K, value: V): void {
    this.#map.delete(key);
    this.#map.set(key, value);
    if (this.#map.size > this.#max) this.#map.delete(this.#map.keys().next().value!);
  }

  delete(key: K): boolean {
    return this.#map.delete(key);
  }
}
