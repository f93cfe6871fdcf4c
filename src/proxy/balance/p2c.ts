// Power of two choices (linkerd2-proxy's p2c balancer, Mitzenmacher's "power of two random
// choices"): draw two distinct endpoints at random and send the request to the one with the lower
// cost (a weighted Peak-EWMA load). Nearly as good as asking every endpoint, at the cost of two.
//
// pick() runs once per HTTP request and once per TCP connection, so it is O(1) and allocates
// nothing: it reads the source's current array (replaced, never mutated, when endpoints change),
// draws two indices and compares two costs.

import { randomIndex, unseededRandom, type Random } from '../../core/random.ts';

/** Anything with a load to compare; lower is better. */
export interface Costed {
  cost(): number;
}

/** Where the candidates come from: `endpoints` is read on every pick (EndpointSet fits). */
export interface PickSource<T> {
  readonly endpoints: readonly T[];
}

export class P2c<T extends Costed> {
  readonly #source: PickSource<T>;
  readonly #random: Random;

  constructor(source: PickSource<T>, random: Random = unseededRandom()) {
    this.#source = source;
    this.#random = random;
  }

  /** The endpoint for the next request, or null when there are none. Never throws. */
  pick(): T | null {
    const endpoints = this.#source.endpoints;
    const n = endpoints.length;
    if (n === 0) return null;
    if (n === 1) return endpoints[0] as T;
    const i = randomIndex(this.#random, n);
    let j = randomIndex(this.#random, n - 1);
    if (j >= i) j++;
    const first = endpoints[i] as T;
    const second = endpoints[j] as T;
    // Ties go to the first draw, which is itself random. A NaN cost (a broken state) never wins
    // against a real one.
    const firstCost = first.cost();
    const secondCost = second.cost();
    if (secondCost < firstCost) return second;
    return Number.isNaN(firstCost) && !Number.isNaN(secondCost) ? second : first;
  }
}
