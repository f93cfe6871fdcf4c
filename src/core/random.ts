// Randomness, injectable. The balancer draws its two choices from a Random so tests can replay a
// run exactly with seededRandom(seed). Hot paths use unseededRandom(): the same generator seeded
// from Math.random once, because every Math.random() call allocates a heap number in V8 and the
// generator's draws do not.

/** A source of uniform numbers in [0, 1). */
export interface Random {
  next(): number;
}

export const mathRandom: Random = { next: () => Math.random() };

/**
 * A small, fast, deterministic PRNG (mulberry32, 32-bit state) for tests and simulations. Not
 * for anything security-related. The same seed always gives the same sequence.
 */
export function seededRandom(seed: number): Random {
  // In a typed array: a uint32 above 2^30 kept in a plain variable would be boxed on every draw.
  const state = new Uint32Array([seed >>> 0]);
  return {
    next(): number {
      const t0 = ((state[0] as number) + 0x6d2b79f5) >>> 0;
      state[0] = t0;
      let t = t0;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    },
  };
}

/** A fast generator with an unpredictable seed, for hot paths (not for anything secret). */
export function unseededRandom(): Random {
  return seededRandom(Math.floor(Math.random() * 4294967296));
}

/** A draw forced into [0, 1): a Random that misbehaves (1, NaN, out of range) cannot push a result out of its range. */
export function unitDraw(random: Random): number {
  const x = random.next();
  return x >= 0 && x < 1 ? x : x >= 1 ? 1 - Number.EPSILON : 0;
}

/** A uniform integer in [0, n) drawn from `random` (n >= 1). */
export function randomIndex(random: Random, n: number): number {
  // Guard against a Random that returns exactly 1 (or more) by mistake.
  const i = Math.floor(random.next() * n);
  return i < n ? i : n - 1;
}
