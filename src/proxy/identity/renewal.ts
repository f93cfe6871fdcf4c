// When the identity client asks for its next certificate: pure functions of the leaf's validity,
// the time and a random draw, so that tests (and fast-check) can check the rules without waiting.
//
// - Renewal at 70% of the lifetime, spread by up to ±5% of the lifetime (uniform), the way
//   linkerd2-proxy renews: many proxies started together (a rollout) must not all call the CA at
//   the same instant, and renewing well before expiry leaves 25-35% of the lifetime for retries
//   while the control plane is down (about 6 h of a 24 h certificate).
// - Retries after a failure: exponential backoff from 100 ms, doubling, capped at 10 s, each delay
//   drawn uniformly in [ceiling/2, ceiling] ("equal jitter") so that retries spread out but never
//   collapse to zero.
import type { BackoffSettings } from '../../core/backoff.ts';
import { type Random, unitDraw } from '../../core/random.ts';

export const RENEW_AT_FRACTION = 0.7;
export const RENEW_JITTER_FRACTION = 0.05;
const BACKOFF_INITIAL_MS = 100;
const BACKOFF_MAX_MS = 10_000;
export const IDENTITY_BACKOFF: BackoffSettings = { initialMs: BACKOFF_INITIAL_MS, maxMs: BACKOFF_MAX_MS };

/**
 * The time (ms since the epoch) to renew a leaf valid from `notBeforeMs` to `notAfterMs`, received
 * at `nowMs`: (70% ± 5%) of the way from when it became usable to its expiry, which is strictly
 * before notAfter. "Usable" is the later of notBefore and now: CAs backdate notBefore to absorb
 * clock skew (ours by a minute), and counting from a backdated notBefore would make a short-lived
 * leaf look mostly spent the moment it arrives (linkerd2-proxy also counts from now). When even
 * that moment has passed (a machine that slept): soon but not in a hot loop, after the first
 * backoff step or half of what is left, whichever is shorter.
 */
export function renewalTime(notBeforeMs: number, notAfterMs: number, nowMs: number, random: Random): number {
  const start = Math.max(notBeforeMs, nowMs);
  const lifetime = notAfterMs - start;
  const fraction = RENEW_AT_FRACTION + RENEW_JITTER_FRACTION * (2 * unitDraw(random) - 1);
  const at = start + lifetime * fraction;
  if (at > nowMs) return at;
  return nowMs + Math.max(0, Math.min(BACKOFF_INITIAL_MS, (notAfterMs - nowMs) / 2));
}
