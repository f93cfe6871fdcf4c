// What the tap benchmark produces: the trellis two-hop pair without a tap and the same pair with a
// live tap attached to both of its proxies, their ratios (issue 11: tap attached loses at most 10%
// of throughput), what the taps received and what the proxies left out, and the markdown table.
// Pure functions over the numbers; bench/tap.ts does the measuring.
import { noiseSummary, runWarnings, type HttpRow, type Target } from '../report.ts';
import { pairRatios, pairsMeasured, type RoutedRatios } from '../routes/report.ts';
import { cell, int, judgeLoss, num, ratioLine, targetLines } from '../pair-report.ts';

export const UNTAPPED = 'trellis';
export const TAPPED = 'trellis + tap';
/** Issue 11: two hops with mTLS, a tap attached against none. */
export const TAP_GOAL = 0.9;

export interface TapRow extends HttpRow {
  /** How the taps were seen attached before measuring (tapped row only). */
  tapCheck?: string;
  /** Over the measured run, both proxies together (tapped row only). */
  tapEvents?: number;
  /** Exchanges the proxies passed over at the taps' rate cap, and dropped for a slow reader. */
  tapRateCapped?: number;
  tapSlowConsumer?: number;
}

export function tapRatios(rows: readonly TapRow[]): RoutedRatios {
  return pairRatios(
    rows.find((r) => r.name === UNTAPPED && !r.error),
    rows.find((r) => r.name === TAPPED && !r.error),
  );
}

export function judgeTap(ratios: RoutedRatios): Target[] {
  return judgeLoss('tap attached (both proxies, default cap), two hops with mTLS', TAP_GOAL, ratios);
}

export interface TapReport {
  readonly startedAt: string;
  readonly versions: Record<string, string>;
  readonly settings: Record<string, unknown>;
  /** The taps' events per second per proxy. */
  readonly maxRps: number;
  readonly rows: readonly TapRow[];
  readonly ratios: RoutedRatios;
  readonly targets: readonly Target[];
  readonly loadAverage: readonly number[];
}

export function tapMarkdown(r: TapReport): string {
  const lines = [
    `# Trellis tap benchmark, ${r.startedAt}`,
    '',
    `Versions: ${Object.entries(r.versions)
      .map(([k, v]) => `${k} ${v}`)
      .join('; ')}.`,
    `Path: load -> client-side proxy -> mTLS -> server-side proxy -> app (nginx "ok"), two trellis pairs ` +
      `(each its own \`trellis up\`): one without a tap, one with a live tap attached to each proxy for ` +
      `the whole run, at ${r.maxRps} events per second per proxy (the default of \`trellis tap\`): the ` +
      `server-side proxy's through the control plane (GET /api/tap, as \`trellis tap\` does), the ` +
      `client-side proxy's on its admin GET /tap; both read by the benchmark's process. ` +
      pairsMeasured(r.settings, 'app, load generators, tap readers and control planes', r.loadAverage),
  ];
  const noise = noiseSummary(r.rows);
  if (noise) lines.push('', noise);
  lines.push(
    '',
    '## Two hops with mTLS, without and with a tap',
    '',
    '| pair | req/s (best) | req/s (median) | p50 ms | p99 ms | CPU s / 1000 req | tap events | left out (rate cap / slow reader) |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  );
  for (const row of r.rows) {
    if (row.error) {
      lines.push(`| ${row.name} | error: ${cell(row.error)} | | | | | | |`);
      continue;
    }
    const l = row.latency?.latencyMs;
    const tapped = row.tapEvents !== undefined;
    lines.push(
      `| ${row.name} | ${int(row.throughput?.rps)} | ${int(row.throughput?.rpsMedian)} | ${num(l?.p50, 3)} | ` +
        `${num(l?.p99, 3)} | ${num(row.cpuSecondsPer1000Requests, 3)} | ${tapped ? int(row.tapEvents) : '-'} | ` +
        `${tapped ? `${int(row.tapRateCapped)} / ${int(row.tapSlowConsumer)}` : '-'} |`,
    );
  }
  lines.push('', ratioLine('Tapped / untapped', r.ratios), '', ...targetLines(r.targets));
  const warnings = tapWarnings(r);
  if (warnings.length > 0) lines.push('', '## Warnings', '', ...warnings.map((w) => `- ${w}`));
  return lines.join('\n') + '\n';
}

export function tapWarnings(r: Pick<TapReport, 'rows' | 'loadAverage'>): string[] {
  const out = runWarnings(r.rows, []);
  for (const row of r.rows) {
    if (row.tapEvents === 0)
      out.push(`${row.name}: the taps received no event over the run: the tap was not in force`);
    if ((row.tapSlowConsumer ?? 0) > 0)
      out.push(
        `${row.name}: ${row.tapSlowConsumer} events dropped for a slow reader: the benchmark's reader ` +
          `did not keep up, so part of the tap's cost was not paid`,
      );
  }
  const load = r.loadAverage[0] ?? 0;
  if (load > 2)
    out.push(`load average ${load.toFixed(2)} on the machine at the start: other work shared the CPUs`);
  return out;
}
