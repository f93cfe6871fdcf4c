// What `trellis stat` asks the control plane for beside the namespace: the direction of the
// traffic (inbound: what the workload serves; outbound: what it calls), the window the rates
// and percentiles run over (`-t 30s`, 1 s .. 10 min), and the workload at the other end it keeps
// to, if any (`--from NS/NAME`: inbound only; `--to NS/NAME`: outbound only). The CLI checks the
// flags with these parsers and sends them as GET /api/stat?direction=..&window=..&from=..; the
// control plane parses them again.
import { ConfigError } from '../../core/errors.ts';
import { parseDuration } from '../../core/duration.ts';
import type { Direction } from '../../core/golden-metrics.ts';

export const DEFAULT_STAT_WINDOW_MS = 10_000;
export const MIN_STAT_WINDOW_MS = 1000;
/** The longest window: the collector keeps that much history (src/control/metrics/snapshot-history.ts). */
export const MAX_STAT_WINDOW_MS = 600_000;

export const DIRECTIONS: readonly Direction[] = ['inbound', 'outbound'];

/** A workload at the other end of the requests: the one they came from or went to. */
export interface StatPeer {
  readonly namespace: string;
  readonly name: string;
}

export interface StatView {
  readonly direction: Direction;
  readonly windowMs: number;
  /** Only the requests from (inbound) or to (outbound) this workload; absent or null: all. */
  readonly peer?: StatPeer | null;
}

/** The longest namespace or workload name a peer may have (a DNS subdomain's). */
const MAX_PEER_NAME = 253;
const PEER_NAME = /^[a-z0-9]([-.a-z0-9]*[a-z0-9])?$/;

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

/** A namespace or workload name of a peer (lower-case DNS subdomain); ConfigError naming `flag`. */
export function parsePeerName(flag: string, text: string): string {
  if (text.length > MAX_PEER_NAME || !PEER_NAME.test(text)) {
    throw new ConfigError(flag, `expected a workload or namespace name (a-z, 0-9, '-', '.'), got '${text}'`);
  }
  return text;
}

/** "NAMESPACE/NAME" as a StatPeer; ConfigError naming `flag`. */
export function parseStatPeer(flag: string, text: string): StatPeer {
  const slash = text.indexOf('/');
  if (slash === -1) throw new ConfigError(flag, `expected NAMESPACE/NAME, got '${text}'`);
  return {
    namespace: parsePeerName(flag, text.slice(0, slash)),
    name: parsePeerName(flag, text.slice(slash + 1)),
  };
}

export function formatStatPeer(peer: StatPeer): string {
  return `${peer.namespace}/${peer.name}`;
}

/**
 * The direction and peer of --direction, --from and --to (`names`: how the caller calls them):
 * --from keeps to the requests a workload served (inbound), --to to those it made (outbound), so
 * each implies its direction, refuses the other one, and the two do not go together.
 */
export function peerView(
  direction: Direction | undefined,
  from: StatPeer | undefined,
  to: StatPeer | undefined,
  names = { from: '--from', to: '--to', direction: '--direction' },
): Pick<StatView, 'direction' | 'peer'> {
  if (from !== undefined && to !== undefined) {
    throw new ConfigError(
      names.from,
      `give ${names.from} or ${names.to}, not both (${names.from}: the requests a workload served; ${names.to}: the requests it made)`,
    );
  }
  if (from !== undefined && direction === 'outbound') {
    throw new ConfigError(
      names.from,
      `filters the requests a workload served (inbound); for the requests it made use ${names.to}`,
    );
  }
  if (to !== undefined && direction === 'inbound') {
    throw new ConfigError(
      names.to,
      `filters the requests a workload made (outbound); for the requests it served use ${names.from}`,
    );
  }
  if (from !== undefined) return { direction: 'inbound', peer: from };
  if (to !== undefined) return { direction: 'outbound', peer: to };
  return { direction: direction ?? DEFAULT_STAT_VIEW.direction };
}

/** The view of GET /api/stat's query (what is absent takes its default); ConfigError when malformed. */
export function statViewOf(query: URLSearchParams): StatView {
  const direction = query.get('direction');
  const window = query.get('window');
  const from = query.get('from');
  const to = query.get('to');
  return {
    ...peerView(
      direction === null ? undefined : parseDirection('direction', direction),
      from === null ? undefined : parseStatPeer('from', from),
      to === null ? undefined : parseStatPeer('to', to),
      { from: 'from', to: 'to', direction: 'direction' },
    ),
    windowMs: window === null ? DEFAULT_STAT_VIEW.windowMs : parseStatWindow('window', window),
  };
}

/** The query string of GET /api/stat for a namespace (every one when absent) and a view. */
export function statQuery(namespace: string | undefined, view: StatView): string {
  const query = new URLSearchParams();
  if (namespace !== undefined) query.set('namespace', namespace);
  query.set('direction', view.direction);
  query.set('window', `${view.windowMs}ms`);
  if (view.peer != null) query.set(view.direction === 'inbound' ? 'from' : 'to', formatStatPeer(view.peer));
  return `?${query.toString()}`;
}
