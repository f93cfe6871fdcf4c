// The live golden-metrics table of the CLI: per workload, whether it is meshed, success rate,
// request rate, latency percentiles and open TCP connections, computed from successive scrapes of
// each proxy's /metrics over a sliding window (counter and histogram deltas, like Prometheus's
// rate() and histogram_quantile()). Used by `trellis demo`; meant to be reused by `trellis stat`.
// Rendering: a redrawn screen on a terminal, plain text tables otherwise, or JSON arrays.
import { histogramBuckets, sumSamples, type CumulativeBucket, type PromSample } from '../core/prom-parse.ts';

export type Direction = 'inbound' | 'outbound';

/** What one scrape of one proxy says about one direction of traffic. */
export interface ProxySnapshot {
  readonly atMs: number;
  readonly responses: number;
  readonly successes: number;
  readonly latencyBuckets: readonly CumulativeBucket[];
  readonly tcpOpen: number;
}

/** One line of the table; null where the window holds no data yet. */
export interface WorkloadRow {
  readonly name: string;
  readonly direction: Direction;
  /** proxies answering / proxies expected, "1/1" */
  readonly meshed: string;
  /** 0..1 */
  readonly success: number | null;
  readonly rps: number | null;
  readonly latencyMsP50: number | null;
  readonly latencyMsP95: number | null;
  readonly latencyMsP99: number | null;
  readonly tcpConnections: number | null;
}

/** Reads the proxy metrics of one direction (names from src/proxy/telemetry/metrics.ts). */
export function snapshotFromSamples(
  samples: readonly PromSample[],
  direction: Direction,
  atMs: number,
): ProxySnapshot {
  const dir = { direction };
  return {
    atMs,
    responses: sumSamples(samples, 'trellis_response_total', dir),
    successes: sumSamples(samples, 'trellis_response_total', { direction, classification: 'success' }),
    latencyBuckets: histogramBuckets(samples, 'trellis_response_latency_seconds', dir),
    tcpOpen: sumSamples(samples, 'trellis_tcp_open_connections', dir),
  };
}

/**
 * The q-quantile (0..1) of a cumulative histogram, as Prometheus's histogram_quantile() computes
 * it: find the bucket holding rank q*total and interpolate linearly inside it (the first bucket
 * starts at 0). A rank in the +Inf bucket gives the highest finite bound. Null without data.
 */
export function histogramQuantile(q: number, buckets: readonly CumulativeBucket[]): number | null {
  if (buckets.length === 0 || Number.isNaN(q)) return null;
  const last = buckets[buckets.length - 1]!;
  if (last.le !== Infinity) return null;
  // Deltas of floats can dip by rounding: force the counts to be non-decreasing.
  const counts: number[] = [];
  let running = 0;
  for (const b of buckets) counts.push((running = Math.max(running, b.count)));
  const total = counts[counts.length - 1]!;
  if (!(total > 0)) return null;
  const rank = Math.min(Math.max(q, 0), 1) * total;
  let i = 0;
  while (counts[i]! < rank || counts[i] === 0) i++; // ends: the last count is total > 0
  if (buckets[i]!.le === Infinity) return i === 0 ? null : buckets[i - 1]!.le;
  const lower = i === 0 ? 0 : buckets[i - 1]!.le;
  const upper = buckets[i]!.le;
  if (i === 0 && upper <= 0) return upper;
  const before = i === 0 ? 0 : counts[i - 1]!;
  const inBucket = counts[i]! - before;
  return lower + ((upper - lower) * (rank - before)) / inBucket;
}

/**
 * newer - older per bound (bounds missing from `older` count from 0). When any count went down
 * the process restarted: the newer snapshot is then the whole delta.
 */
export function bucketDeltas(
  newer: readonly CumulativeBucket[],
  older: readonly CumulativeBucket[],
): CumulativeBucket[] {
  const before = new Map(older.map((b) => [b.le, b.count]));
  const deltas = newer.map((b) => ({ le: b.le, count: b.count - (before.get(b.le) ?? 0) }));
  return deltas.some((d) => d.count < 0) ? [...newer] : deltas;
}

/** The snapshots of one workload's proxy over the last `windowMs`, and the row they give. */
export class WorkloadWindow {
  readonly name: string;
  readonly direction: Direction;
  private readonly windowMs: number;
  private readonly snapshots: ProxySnapshot[] = [];
  private reachable = false;

  constructor(name: string, direction: Direction, windowMs: number) {
    this.name = name;
    this.direction = direction;
    this.windowMs = windowMs;
  }

  /** Records a scrape: its samples, or null when the proxy did not answer. */
  record(samples: readonly PromSample[] | null, atMs: number): void {
    this.reachable = samples !== null;
    if (samples === null) return;
    this.snapshots.push(snapshotFromSamples(samples, this.direction, atMs));
    // Keep the newest snapshot that is at least a window old as the base of the deltas.
    while (this.snapshots.length > 2 && this.snapshots[1]!.atMs <= atMs - this.windowMs) {
      this.snapshots.shift();
    }
  }

  row(): WorkloadRow {
    const meshed = this.reachable ? '1/1' : '0/1';
    const newest = this.snapshots[this.snapshots.length - 1];
    const oldest = this.snapshots[0];
    const empty = {
      name: this.name,
      direction: this.direction,
      meshed,
      success: null,
      rps: null,
      latencyMsP50: null,
      latencyMsP95: null,
      latencyMsP99: null,
      tcpConnections: newest?.tcpOpen ?? null,
    };
    if (newest === undefined || oldest === undefined || newest === oldest) return empty;
    const restarted = newest.responses < oldest.responses || newest.successes < oldest.successes;
    const responses = restarted ? newest.responses : newest.responses - oldest.responses;
    const successes = restarted ? newest.successes : newest.successes - oldest.successes;
    const seconds = (newest.atMs - oldest.atMs) / 1000;
    const latency = bucketDeltas(newest.latencyBuckets, restarted ? [] : oldest.latencyBuckets);
    const ms = (q: number) => {
      const s = histogramQuantile(q, latency);
      return s === null ? null : Math.round(s * 1e5) / 100;
    };
    return {
      ...empty,
      success: responses > 0 ? successes / responses : null,
      rps: seconds > 0 ? responses / seconds : null,
      latencyMsP50: ms(0.5),
      latencyMsP95: ms(0.95),
      latencyMsP99: ms(0.99),
    };
  }
}

export function formatPercent(ratio: number | null): string {
  return ratio === null ? '-' : `${(ratio * 100).toFixed(2)}%`;
}

export function formatRps(rps: number | null): string {
  return rps === null ? '-' : `${rps.toFixed(1)}rps`;
}

export function formatLatency(ms: number | null): string {
  if (ms === null) return '-';
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)}s`;
  return ms < 10 ? `${ms.toFixed(1)}ms` : `${Math.round(ms)}ms`;
}

const COLUMNS: readonly [string, (r: WorkloadRow) => string][] = [
  ['NAME', (r) => r.name],
  ['MESHED', (r) => r.meshed],
  ['SUCCESS', (r) => formatPercent(r.success)],
  ['RPS', (r) => formatRps(r.rps)],
  ['LATENCY_P50', (r) => formatLatency(r.latencyMsP50)],
  ['LATENCY_P95', (r) => formatLatency(r.latencyMsP95)],
  ['LATENCY_P99', (r) => formatLatency(r.latencyMsP99)],
  ['TCP_CONN', (r) => (r.tcpConnections === null ? '-' : String(r.tcpConnections))],
];

/** The rows as an aligned text table (header first, two spaces between columns), one string per line. */
export function formatTable(rows: readonly WorkloadRow[]): string[] {
  const cells = [COLUMNS.map(([h]) => h), ...rows.map((r) => COLUMNS.map(([, cell]) => cell(r)))];
  const widths = COLUMNS.map((_, c) => Math.max(...cells.map((line) => line[c]!.length)));
  return cells.map((line) =>
    line
      .map((cell, c) => cell.padEnd(widths[c]!))
      .join('  ')
      .trimEnd(),
  );
}

/**
 * redraw: one screen redrawn in place (alternate screen of a terminal);
 * lines: a table printed after the other, with a time line above each;
 * json: one JSON array of rows per line.
 */
export type ViewMode = 'redraw' | 'lines' | 'json';

const ESC = '\x1b[';

export class LiveView {
  private readonly write: (text: string) => void;
  private readonly mode: ViewMode;
  private started = false;
  private lastFrame: string[] = [];

  constructor(write: (text: string) => void, mode: ViewMode) {
    this.write = write;
    this.mode = mode;
  }

  /** Shows the rows; `title` lines go above the table (not in JSON). */
  show(rows: readonly WorkloadRow[], title: readonly string[] = []): void {
    if (this.mode === 'json') {
      this.write(JSON.stringify(rows) + '\n');
      return;
    }
    const frame = [...title, ...formatTable(rows)];
    this.lastFrame = frame;
    if (this.mode === 'lines') {
      this.write(frame.join('\n') + '\n\n');
      return;
    }
    if (!this.started) {
      this.started = true;
      this.write(`${ESC}?1049h${ESC}?25l`); // alternate screen, hide the cursor
    }
    this.write(`${ESC}H` + frame.map((l) => l + `${ESC}K`).join('\n') + `\n${ESC}J`);
  }

  /** Gives the terminal back and leaves the last table in its scrollback. */
  close(): void {
    if (this.mode !== 'redraw' || !this.started) return;
    this.started = false;
    this.write(`${ESC}?25h${ESC}?1049l` + this.lastFrame.join('\n') + '\n');
  }
}
