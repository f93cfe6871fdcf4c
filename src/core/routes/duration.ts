// Gateway API durations (GEP-2257): one to four "NUMBER UNIT" parts, each number of one to five
// digits, units h, m, s, ms ("1h30m", "500ms", "0s"); a strict subset of Go's time.ParseDuration,
// used by HTTPRoute `timeouts` and `retry.backoff`. Pure.

const DURATION = /^([0-9]{1,5}(h|m|s|ms)){1,4}$/;
const PART = /([0-9]{1,5})(h|ms|m|s)/g;
const UNIT_MS: Readonly<Record<string, number>> = { h: 3_600_000, m: 60_000, s: 1000, ms: 1 };

/** The duration in milliseconds, or null when `text` is not a Gateway API duration. */
export function parseGatewayDuration(text: string): number | null {
  if (!DURATION.test(text)) return null;
  let total = 0;
  for (const [, digits, unit] of text.matchAll(PART))
    total += Number(digits) * (UNIT_MS[unit as string] ?? 0);
  return total;
}
