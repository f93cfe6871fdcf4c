// What the tracing benchmark produces: the trellis two-hop pair with tracing off and the same pair
// with every request traced (ratio 1) and exported to a collector, their ratios (issue 11: tracing
// on loses at most 15% of throughput), the export's own counts, and the markdown table. Pure
// functions over the numbers; bench/tracing.ts does the measuring.
import { noiseSummary, runWarnings, type HttpRow, type Target } from '../report.ts';
import { pairRatios, pairsMeasured, type RoutedRatios } from '../routes/report.ts';
import { cell, int, judgeLoss, num, ratioLine, targetLines } from '../pair-report.ts';

export const UNTRACED = 'trellis';
export const TRACED = 'trellis + tracing';
/** Issue 11: two hops with mTLS, tracing at 100% sampling against tracing off. */
export const TRACING_GOAL = 0.85;

export interface TracingRow extends HttpRow {
  /** How tracing was seen in force before measuring (traced row only). */
  tracingCheck?: string;
  /** Over the measured run, both proxies together (traced row only). */
  spansExported?: number;
  /** Spans the collector counted in what it received over the same run. */
  spansReceived?: number;
  spansDroppedQueueFull?: number;
  spansDroppedExportFailed?: number;
  /** What the collector received over the run. */
  exportRequests?: number;
  exportBytes?: number;
}

export function tracingRatios(rows: readonly TracingRow[]): RoutedRatios {
  return pairRatios(
    rows.find((r) => r.name === UNTRACED && !r.error),
    rows.find((r) => r.name === TRACED && !r.error),
  );
}

export function judgeTracing(ratios: RoutedRatios): Target[] {
  return judgeLoss('tracing on (ratio 1, exported), two hops with mTLS', TRACING_GOAL, ratios, 'tracing off');
}

export interface TracingReport {
  readonly startedAt: string;
  readonly versions: Record<string, string>;
  readonly settings: Record<string, unknown>;
  readonly protocol: string;
  readonly rows: readonly TracingRow[];
  readonly ratios: RoutedRatios;
  readonly targets: readonly Target[];
  readonly loadAverage: readonly number[];
}

export function tracingMarkdown(r: TracingReport): string {
  const s = r.settings;
  const lines = [
    `# Trellis tracing benchmark, ${r.startedAt}`,
    '',
    `Versions: ${Object.entries(r.versions)
      .map(([k, v]) => `${k} ${v}`)
      .join('; ')}.`,
    `Path: load -> client-side proxy -> mTLS -> server-side proxy -> app (nginx "ok"), two trellis pairs ` +
      `(each its own \`trellis up\`): one with tracing off, one whose proxies trace every request ` +
      `(\`--trace-sample-ratio 1\`: a CLIENT and a SERVER span per request) and export over ${r.protocol} ` +
      `to a collector in the benchmark's process (it counts and answers, on the load CPU). ` +
      pairsMeasured(s, 'app, load generators, collector and control planes', r.loadAverage),
  ];
  const noise = noiseSummary(r.rows);
  if (noise) lines.push('', noise);
  lines.push(
    '',
    '## Two hops with mTLS, tracing off and on',
    '',
    '| pair | req/s (best) | req/s (median) | p50 ms | p99 ms | CPU s / 1000 req | spans exported / received | dropped (queue full / export failed) | export requests | export MB |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  );
  for (const row of r.rows) {
    if (row.error) {
      lines.push(`| ${row.name} | error: ${cell(row.error)} | | | | | | | | |`);
      continue;
    }
    const l = row.latency?.latencyMs;
    const traced = row.spansExported !== undefined;
    lines.push(
      `| ${row.name} | ${int(row.throughput?.rps)} | ${int(row.throughput?.rpsMedian)} | ${num(l?.p50, 3)} | ` +
        `${num(l?.p99, 3)} | ${num(row.cpuSecondsPer1000Requests, 3)} | ${traced ? `${int(row.spansExported)} / ${int(row.spansReceived)}` : '-'} | ` +
        `${traced ? `${int(row.spansDroppedQueueFull)} / ${int(row.spansDroppedExportFailed)}` : '-'} | ` +
        `${traced ? int(row.exportRequests) : '-'} | ${traced ? num((row.exportBytes ?? 0) / 1e6, 1) : '-'} |`,
    );
  }
  const x = r.ratios;
  // At the same open-loop rate both pairs do the same work per wake-up, so this ratio is the
  // tracing's own CPU, without the saturated rounds' feedback (a slower pair batches less per
  // event-loop turn and so spends more per request on system calls and wake-ups).
  const atRate = (name: string) =>
    r.rows.find((row) => row.name === name && !row.error)?.cpuSecondsPer1000RequestsAtFixedRate;
  const cpuAtRate = (atRate(TRACED) ?? NaN) / (atRate(UNTRACED) ?? NaN);
  lines.push(
    '',
    ratioLine(
      'Traced / untraced',
      x,
      `CPU per request at the latency rounds' fixed rate ${num(cpuAtRate, 3)}x`,
    ),
    '',
    ...targetLines(r.targets),
  );
  const warnings = tracingWarnings(r);
  if (warnings.length > 0) lines.push('', '## Warnings', '', ...warnings.map((w) => `- ${w}`));
  return lines.join('\n') + '\n';
}

export function tracingWarnings(r: Pick<TracingReport, 'rows' | 'loadAverage'>): string[] {
  const out = runWarnings(r.rows, []);
  for (const row of r.rows) {
    const dropped = (row.spansDroppedQueueFull ?? 0) + (row.spansDroppedExportFailed ?? 0);
    if (row.spansReceived !== undefined && row.spansReceived !== row.spansExported)
      out.push(
        `${row.name}: the collector counted ${row.spansReceived} spans where the proxies say they exported ${row.spansExported}`,
      );
    if (dropped > 0)
      out.push(
        `${row.name}: ${dropped} spans dropped over the run: the export did not keep up, so part of ` +
          `the tracing cost was not paid (and a real collector would miss them)`,
      );
  }
  const load = r.loadAverage[0] ?? 0;
  if (load > 2)
    out.push(`load average ${load.toFixed(2)} on the machine at the start: other work shared the CPUs`);
  return out;
}
