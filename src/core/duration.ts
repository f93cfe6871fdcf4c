// Durations as people type them on a command line or in a query: "500ms", "90s", "15m", "24h",
// "30d", and sums of those ("1h30m"). Shared by the CLI's flags and the control plane's HTTP API
// (the `window` of GET /api/stat).
import { ConfigError } from './errors.ts';

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3600_000, d: 24 * 3600_000 };

/** "500ms", "90s", "15m", "24h", "30d" (also "1h30m") as milliseconds; ConfigError naming `flag`. */
export function parseDuration(flag: string, text: string): number {
  const part = /(\d{1,9})(ms|s|m|h|d)/y;
  let total = 0;
  let at = 0;
  while (at < text.length) {
    part.lastIndex = at;
    const match = part.exec(text);
    if (match === null) break;
    total += Number(match[1]) * UNIT_MS[match[2]!]!;
    at = part.lastIndex;
  }
  if (text === '' || at !== text.length || !Number.isSafeInteger(total)) {
    throw new ConfigError(flag, `expected a duration such as 24h, 90s or 500ms, got '${text}'`);
  }
  if (total === 0) throw new ConfigError(flag, `must be longer than 0, got '${text}'`);
  return total;
}
