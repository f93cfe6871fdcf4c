// What the "a feature on against off" benchmarks of issue 11 share (bench/tap.ts,
// bench/tracing.ts): the judgement of one pair ratio against
// an allowed loss, the line that states the ratios, and the table of targets. Pure functions.
import type { Target } from './report.ts';
import type { RoutedRatios } from './routes/report.ts';

export const num = (v: number | undefined, digits: number): string =>
  v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(digits);
export const int = (v: number | undefined): string =>
  v === undefined ? '-' : Math.round(v).toLocaleString('en-US');
export const cell = (s: string): string => s.replace(/\|/g, '\\|').replace(/\s+/g, ' ').slice(0, 200);

/**
 * PASS when the feature's req/s is at least `goal` times the baseline's (best rounds);
 * `baseline` names the baseline in the goal's text.
 */
export function judgeLoss(name: string, goal: number, ratios: RoutedRatios, baseline = 'without'): Target[] {
  const goalText = `loses <= ${Math.round((1 - goal) * 100)}% (>= ${goal.toFixed(2)}x ${baseline})`;
  const rps = ratios.rps;
  if (rps === undefined) return [{ name, goal: goalText, value: 'not measured', pass: null }];
  return [
    {
      name,
      goal: goalText,
      value:
        `${num(rps, 2)}x req/s (median rounds ${num(ratios.rpsMedian, 2)}x), ` +
        `CPU per request ${num(ratios.cpuPer1000, 2)}x`,
      pass: rps >= goal,
    },
  ];
}

/** "LABEL: req/s 0.950x (...), p50 ..., CPU per request ...[; MORE]." */
export function ratioLine(label: string, x: RoutedRatios, more?: string): string {
  return (
    `${label}: req/s ${num(x.rps, 3)}x (median rounds ${num(x.rpsMedian, 3)}x), ` +
    `p50 ${num(x.p50, 3)}x, p99 ${num(x.p99, 3)}x (${num(x.addedP99Ms, 3)} ms added at p99), ` +
    `CPU per request ${num(x.cpuPer1000, 3)}x (the proxies' own CPU time: less disturbed by a busy ` +
    `machine than req/s, which is the judged number)${more === undefined ? '' : `; ${more}`}.`
  );
}

/** The "Target" section's lines. */
export function targetLines(targets: readonly Target[]): string[] {
  const lines = [
    '## Target (trellis, issue 11)',
    '',
    '| target | goal | this run | result |',
    '| --- | --- | --- | --- |',
  ];
  for (const t of targets) {
    const result = t.pass === null ? 'not measured' : t.pass ? 'PASS' : 'FAIL';
    lines.push(`| ${t.name} | ${t.goal} | ${cell(t.value)} | ${result} |`);
  }
  return lines;
}
