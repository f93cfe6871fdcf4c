// The table of `trellis top`: the busiest paths of a live tap (tap-lines.ts exchanges), one row per
// (source, destination, method, path) with its count, best, worst and last latency and success
// rate, busiest first. The rows kept are bounded (MAX_TOP_ROWS): once full, a new path replaces
// the least busy one, so a tap of a workload with endlessly many paths stays small.
import { alignColumns } from './columns.ts';
import { exchangeSucceeded, formatLatency, type TapExchange } from './tap-lines.ts';

export const MAX_TOP_ROWS = 1000;

export interface TopRow {
  readonly source: string;
  readonly destination: string;
  readonly method: string;
  readonly path: string;
  count: number;
  successes: number;
  bestMs: number;
  worstMs: number;
  lastMs: number;
}

/** "web" of spiffe://td/ns/NS/sa/web; other identities as they are. */
function identityName(id: string): string {
  const m = /\/sa\/([^/]+)$/.exec(id);
  return m?.[1] ?? id;
}

/**
 * Who sent and who served an exchange, as top shows them: the tapped workload on its own side, a
 * meshed peer by its identity's name (its service account), any other by its address or authority.
 */
export function endsOf(e: TapExchange): { source: string; destination: string } {
  if (e.direction === 'outbound') {
    const destination = e.destination_identity !== null ? identityName(e.destination_identity) : e.authority;
    return { source: e.workload || e.instance, destination: destination || e.destination || '-' };
  }
  const source = e.source_identity !== null ? identityName(e.source_identity) : e.source;
  return { source: source || '-', destination: e.workload || e.instance };
}

export class TopTable {
  private readonly rows = new Map<string, TopRow>();
  private readonly maxRows: number;

  constructor(maxRows = MAX_TOP_ROWS) {
    this.maxRows = maxRows;
  }

  add(e: TapExchange): void {
    const { source, destination } = endsOf(e);
    const path = pathOnly(e.path);
    const key = JSON.stringify([source, destination, e.method, path]);
    let row = this.rows.get(key);
    if (row === undefined) {
      if (this.rows.size >= this.maxRows) this.evictLeastBusy();
      row = {
        source,
        destination,
        method: e.method,
        path,
        count: 0,
        successes: 0,
        bestMs: Infinity,
        worstMs: 0,
        lastMs: 0,
      };
      this.rows.set(key, row);
    }
    row.count++;
    if (exchangeSucceeded(e)) row.successes++;
    row.bestMs = Math.min(row.bestMs, e.latency_ms);
    row.worstMs = Math.max(row.worstMs, e.latency_ms);
    row.lastMs = e.latency_ms;
  }

  private evictLeastBusy(): void {
    let least: string | null = null;
    let leastCount = Infinity;
    for (const [key, row] of this.rows) {
      if (row.count < leastCount) {
        least = key;
        leastCount = row.count;
      }
    }
    if (least !== null) this.rows.delete(least);
  }

  /** The busiest `limit` rows, busiest first (ties: by path). */
  busiest(limit: number): TopRow[] {
    return [...this.rows.values()]
      .sort((a, b) => b.count - a.count || (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
      .slice(0, limit);
  }

  /** The table's lines. */
  render(limit: number): string[] {
    const header = [
      'SOURCE',
      'DESTINATION',
      'METHOD',
      'PATH',
      'COUNT',
      'BEST',
      'WORST',
      'LAST',
      'SUCCESS_RATE',
    ];
    const rows = this.busiest(limit).map((r) => [
      r.source,
      r.destination,
      r.method,
      r.path,
      String(r.count),
      formatLatency(r.bestMs),
      formatLatency(r.worstMs),
      formatLatency(r.lastMs),
      `${((100 * r.successes) / r.count).toFixed(2)}%`,
    ]);
    return alignColumns([header, ...rows]);
  }
}

/** The path without its query (top counts /search?q=1 and /search?q=2 as one path). */
function pathOnly(path: string): string {
  const q = path.indexOf('?');
  return q === -1 ? path : path.slice(0, q);
}
