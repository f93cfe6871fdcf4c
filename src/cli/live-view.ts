// The live golden-metrics table of the CLI: per workload, whether it is meshed, success rate,
// request rate, latency percentiles and open TCP connections, computed from successive scrapes of
// each proxy's /metrics over a sliding window (counter and histogram deltas, like Prometheus's
// rate() and histogram_quantile(), from src/core/golden-metrics.ts). Used by `trellis demo`; its
// table is also the one of `trellis stat`.
// Rendering: a redrawn screen on a terminal, plain text tables otherwise, or JSON arrays.
import {
  bucketDeltas,
  histogramQuantile,
  snapshotFromSamples,
  type Direction,
  type ProxySnapshot,
} from '../core/golden-metrics.ts';
import type { PromSample } from '../core/prom-parse.ts';

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
