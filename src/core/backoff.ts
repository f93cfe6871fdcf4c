// Exponential backoff with "equal jitter", shared by everything that retries a control-plane call
// (the Destination and Policy watches, the identity client): the delay before retry n+1 is drawn
// uniformly in [ceiling/2, ceiling], where the ceiling doubles from `initialMs` with each failure
// up to `maxMs`. Retries spread out (many proxies restarted together do not call at once) but
// never collapse to zero.
import { type Random, unitDraw } from './random.ts';

export interface BackoffSettings {
  readonly initialMs: number;
  readonly maxMs: number;
}

/** The proxy's watches of the control plane (Destination, Policy): 250 ms doubling to 10 s. */
export const WATCH_BACKOFF: BackoffSettings = { initialMs: 250, maxMs: 10_000 };

/** Settings from optional values: the initial delay at least 1 ms, the cap at least the initial delay. */
export function backoffSettings(
  given: { readonly initialMs?: number; readonly maxMs?: number } | undefined,
  defaults: BackoffSettings,
): BackoffSettings {
  const initialMs = Math.max(1, given?.initialMs ?? defaults.initialMs);
  return { initialMs, maxMs: Math.max(initialMs, given?.maxMs ?? defaults.maxMs) };
}

/** The delay before retry number `failures + 1` (`failures` >= 0 attempts have failed so far). */
export function backoffDelay(failures: number, settings: BackoffSettings, random: Random): number {
  const doublings = Math.min(Math.max(0, failures), 30);
  const ceiling = Math.min(settings.maxMs, settings.initialMs * 2 ** doublings);
  return ceiling / 2 + (ceiling / 2) * unitDraw(random);
}
