// What the tap benchmark produces: the trellis two-hop pair without a tap and the same pair with a
// live tap attached to both of its proxies, their ratios (issue 11: tap attached loses at most 10%
// of throughput), what the taps received and what the proxies left out, and the markdown table.
// Pure functions over the numbers; bench/tap.ts does the measuring.
import { noiseSummary, runWarnings, type HttpRow, type Target } from '../report.ts';
import { pairRatios, pairsMeasured, type RoutedRatios } from '../routes/report.ts';

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

const num = (v: number | undefined, digits: number): string =>
  v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(digits);
const int = (v: number | undefined): string =>
  v === undefined ? '-' : Math.round(v).toLocaleString('en-US');
const cell = (s: string): string => s.replace(/\|/g, '\\|').replace(/\s+/g, ' ').slice(0, 200);

export function judgeTap(ratios: RoutedRatios): Target[] {
  const name = 'tap attached (both proxies, default cap), two hops with mTLS';
  const goal = `loses <= 10% (>= ${TAP_GOAL.toFixed(2)}x no tap)`;
  const rps = ratios.rps;
  if (rps === undefined) return [{ name, goal, value: 'not measured', pass: null }];
  return [
    {
      name,
      goal,
      value:
        `${num(rps, 2)}x req/s (median rounds ${num(ratios.rpsMedian, 2)}x), ` +
        `CPU per request ${num(ratios.cpuPer1000, 2)}x`,
      pass: rps >= TAP_GOAL,
    },
  ];
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
  const x = r.ratios;
  lines.push(
    '',
    `Tapped / untapped: req/s ${num(x.rps, 3)}x (median rounds ${num(x.rpsMedian, 3)}x), ` +
      `p50 ${num(x.p50, 3)}x, p99 ${num(x.p99, 3)}x (${num(x.addedP99Ms, 3)} ms added at p99), ` +
      `CPU per request ${num(x.cpuPer1000, 3)}x (the proxies' own CPU time: less disturbed by a busy ` +
      `machine than req/s, which is the judged number).`,
    '',
    '## Target (trellis, issue 11)',
    '',
    '| target | goal | this run | result |',
    '| --- | --- | --- | --- |',
  );
  for (const t of r.targets) {
    const result = t.pass === null ? 'not measured' : t.pass ? 'PASS' : 'FAIL';
    lines.push(`| ${t.name} | ${t.goal} | ${cell(t.value)} | ${result} |`);
  }
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
