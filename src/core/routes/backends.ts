// A rule's weighted backends, compiled once: the cumulative weights for a pick in O(log n) with
// no allocation per request. Weight 0 gets no traffic; a backend the control plane could not
// resolve (no such Service or port) keeps its share, and the proxy answers 500 for that share
// (the spec's rule for invalid backendRefs); when the weights sum to 0 there is nothing to pick
// and the rule answers 500 too.
import { unitDraw, type Random } from '../random.ts';
import type { Filter } from './schema-filters.ts';

export interface CompiledBackend {
  readonly namespace: string;
  readonly name: string;
  readonly port: number;
  readonly weight: number;
  /** False when the Service or its port does not exist: requests picked for it get 500. */
  readonly resolved: boolean;
  /** Backend-level filters (RequestHeaderModifier, ResponseHeaderModifier, ...), applied after the rule's. */
  readonly filters: readonly Filter[];
}

export interface BackendSet {
  readonly backends: readonly CompiledBackend[];
  readonly total: number;
  /** cumulative[i]: the sum of the weights of backends 0..i. */
  readonly cumulative: Float64Array;
}

export function compileBackends(backends: readonly CompiledBackend[]): BackendSet {
  const cumulative = new Float64Array(backends.length);
  let total = 0;
  backends.forEach((backend, i) => {
    total += backend.weight;
    cumulative[i] = total;
  });
  return { backends, total, cumulative };
}

/** A backend drawn by weight, or null when there is none with weight (the rule answers 500). */
export function pickBackend(set: BackendSet, random: Random): CompiledBackend | null {
  if (set.total <= 0) return null;
  const x = unitDraw(random) * set.total;
  let low = 0;
  let high = set.cumulative.length - 1;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if (x < (set.cumulative[mid] as number)) high = mid;
    else low = mid + 1;
  }
  return set.backends[low] ?? null;
}
