// What `trellis stat` asks the control plane for beside the namespace: the direction of the
// traffic (inbound: what the workload serves; outbound: what it calls) and the window the rates
// and percentiles run over (`-t 30s`, 1 s .. 10 min). The CLI checks the flags with these parsers
// and sends them as GET /api/stat?direction=..&window=..; the control plane parses them again.
import { ConfigError } from '../../core/errors.ts';
import { parseDuration } from '../../core/duration.ts';
import type { Direction } from '../../core/golden-metrics.ts';

export const DEFAULT_STAT_WINDOW_MS = 10_000;
export const MIN_STAT_WINDOW_MS = 1000;
/** The longest window: the collector keeps that much history (src/control/metrics/snapshot-history.ts). */
export const MAX_STAT_WINDOW_MS = 600_000;

export const DIRECTIONS: readonly Direction[] = ['inbound', 'outbound'];

export interface StatView {
  readonly direction: Direction;
  readonly windowMs: number;
}

export const DEFAULT_STAT_VIEW: StatView = { direction: 'inbound', windowMs: DEFAULT_STAT_WINDOW_MS };

/** A window such as "30s", "1m", "10m" in milliseconds, 1 s .. 10 min; ConfigError naming `flag`. */
export function parseStatWindow(flag: string, text: string): number {
  const ms = parseDuration(flag, text);
  if (ms < MIN_STAT_WINDOW_MS || ms > MAX_STAT_WINDOW_MS) {
    throw new ConfigError(flag, `must be between 1s and 10m, got '${text}'`);
  }
  return ms;
}

export function parseDirection(flag: string, text: string): Direction {
  const direction = DIRECTIONS.find((d) => d === text);
  if (direction === undefined) throw new ConfigError(flag, `expected inbound or outbound, got '${text}'`);
  return direction;
}

/** The view of GET /api/stat's query (what is absent takes its default); ConfigError when malformed. */
export function statViewOf(query: URLSearchParams): StatView {
  const direction = query.get('direction');
  const window = query.get('window');
  return {
    direction: direction === null ? DEFAULT_STAT_VIEW.direction : parseDirection('direction', direction),
    windowMs: window === null ? DEFAULT_STAT_VIEW.windowMs : parseStatWindow('window', window),
  };
}

/** The query string of GET /api/stat for a namespace (every one when absent) and a view. */
export function statQuery(namespace: string | undefined, view: StatView): string {
  const query = new URLSearchParams();
  if (namespace !== undefined) query.set('namespace', namespace);
  query.set('direction', view.direction);
  query.set('window', `${view.windowMs}ms`);
  return `?${query.toString()}`;
}
