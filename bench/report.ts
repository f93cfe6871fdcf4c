// What a benchmark run produces: the rows measured for each proxy, their ratios to haproxy (and
// to the raw pipe for opaque TCP) and to direct, the targets Trellis is held to, and the markdown
// table. Pure functions over the numbers; run.ts does the measuring.
import type { FixedRateResult } from './fixed-rate.ts';
import type { RoundNoise } from './measure.ts';
import type { WrkResult } from './wrk.ts';

export interface Ratios {
  readonly rps?: number;
  readonly p50?: number;
  readonly p90?: number;
  readonly p99?: number;
  readonly cpuPer1000?: number;
  readonly peakRss?: number;
}

export interface HttpRow {
  readonly name: string;
  error?: string;
  /** wrk: req/s is the best of the rounds below (rpsMedian their median). */
  throughput?: WrkResult;
  throughputRounds?: WrkResult[];
  /** Per throughput round: CPU time others and the hypervisor took from the proxy's CPU. */
  noise?: RoundNoise[];
  /** Fixed-rate latency: each percentile is the median over the rounds below. */
  latency?: FixedRateResult;
  latencyRounds?: FixedRateResult[];
  /** CPU seconds (user + system) of the proxy's processes per 1000 requests, in the wrk run. */
  cpuSecondsPer1000Requests?: number;
  /** The same at the fixed rate (a lightly loaded proxy pays more per request: fewer batches). */
  cpuSecondsPer1000RequestsAtFixedRate?: number;
  /** Peak resident memory of the proxy's processes (MB): max of summed VmHWM and sampled VmRSS. */
  peakRssMb?: number;
  /** Peak private (anonymous) resident memory, sampled: RSS without the shared program code. */
  peakPrivateMb?: number;
  ratioToHaproxy?: Ratios;
  /** Fixed-rate latency minus direct's, in ms. */
  addedOverDirectMs?: { p50: number; p90: number; p99: number };
}

export interface TcpRow {
  readonly name: string;
  error?: string;
  throughput?: WrkResult;
  throughputRounds?: WrkResult[];
  noise?: RoundNoise[];
  cpuSecondsPer1000Requests?: number;
  peakRssMb?: number;
  peakPrivateMb?: number;
  ratioToPipe?: number;
  ratioToHaproxyTcp?: number;
}

export interface Target {
  readonly name: string;
  readonly goal: string;
  readonly value: string;
  /** null: not measured (the row failed or was skipped). */
  readonly pass: boolean | null;
}

const ratio = (a: number | undefined, b: number | undefined): number | undefined =>
  a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0
    ? undefined
    : a / b;

/** Fills in every row's ratios to haproxy and added latency over direct. */
export function compareHttp(rows: readonly HttpRow[]): void {
  const haproxy = rows.find((r) => r.name === 'haproxy' && !r.error);
  const direct = rows.find((r) => r.name === 'direct' && !r.error);
  for (const row of rows) {
    if (row.error) continue;
    if (haproxy) {
      row.ratioToHaproxy = {
        rps: ratio(row.throughput?.rps, haproxy.throughput?.rps),
        p50: ratio(row.latency?.latencyMs.p50, haproxy.latency?.latencyMs.p50),
        p90: ratio(row.latency?.latencyMs.p90, haproxy.latency?.latencyMs.p90),
        p99: ratio(row.latency?.latencyMs.p99, haproxy.latency?.latencyMs.p99),
        cpuPer1000: ratio(row.cpuSecondsPer1000Requests, haproxy.cpuSecondsPer1000Requests),
        peakRss: ratio(row.peakRssMb, haproxy.peakRssMb),
      };
    }
    if (direct?.latency && row.latency) {
      const d = direct.latency.latencyMs;
      const l = row.latency.latencyMs;
      row.addedOverDirectMs = { p50: l.p50 - d.p50, p90: l.p90 - d.p90, p99: l.p99 - d.p99 };
    }
  }
}

export function compareTcp(rows: readonly TcpRow[]): void {
  const pipe = rows.find((r) => r.name === 'tcp-pipe' && !r.error);
  const haproxy = rows.find((r) => r.name === 'haproxy-tcp' && !r.error);
  for (const row of rows) {
    if (row.error) continue;
    row.ratioToPipe = ratio(row.throughput?.rps, pipe?.throughput?.rps);
    row.ratioToHaproxyTcp = ratio(row.throughput?.rps, haproxy?.throughput?.rps);
  }
}

/** The targets Trellis is held to, judged on this run's numbers. */
export function judgeTargets(http: readonly HttpRow[], tcp: readonly TcpRow[]): Target[] {
  const t = http.find((r) => r.name === 'trellis');
  const ok = t && !t.error ? t : undefined;
  const o = tcp.find((r) => r.name === 'trellis-opaque');
  const okO = o && !o.error ? o : undefined;
  const judge = (
    name: string,
    goal: string,
    v: number | undefined,
    pass: (v: number) => boolean,
    fmt: string,
  ) =>
    v === undefined
      ? { name, goal, value: 'not measured', pass: null }
      : { name, goal, value: fmt.replace('%', num(v, fmt.endsWith('x') ? 2 : 3)), pass: pass(v) };
  return [
    judge('throughput', '>= 0.5x haproxy', ok?.ratioToHaproxy?.rps, (v) => v >= 0.5, '%x'),
    judge('added p99 latency', '<= 1 ms over direct', ok?.addedOverDirectMs?.p99, (v) => v <= 1, '% ms'),
    judge('peak RSS', '<= 60 MB', ok?.peakRssMb, (v) => v <= 60, '% MB'),
    judge('opaque TCP throughput', '>= 0.8x raw Node pipe', okO?.ratioToPipe, (v) => v >= 0.8, '%x'),
  ];
}

function num(v: number | undefined, digits: number): string {
  if (v === undefined || !Number.isFinite(v)) return '-';
  return v.toFixed(digits);
}

function rps(v: number | undefined): string {
  return v === undefined ? '-' : Math.round(v).toLocaleString('en-US');
}

const x = (v: number | undefined): string => (v === undefined ? '-' : `${num(v, 2)}x`);
const cell = (s: string): string => s.replace(/\|/g, '\\|').replace(/\s+/g, ' ').slice(0, 160);

export interface ReportInput {
  readonly startedAt: string;
  readonly versions: Record<string, string>;
  readonly settings: Record<string, unknown>;
  readonly http: readonly HttpRow[];
  readonly tcp: readonly TcpRow[];
  readonly targets: readonly Target[];
}

export function markdown(r: ReportInput): string {
  const lines: string[] = [];
  const s = r.settings;
  lines.push(`# Trellis benchmark, ${r.startedAt}`, '');
  lines.push(
    `Versions: ${Object.entries(r.versions)
      .map(([k, v]) => `${k} ${v}`)
      .join('; ')}.`,
    `Throughput: wrk -t1 -c${s['connections']}, ${s['durationS']} s per target in ${s['rounds']} interleaved rounds ` +
      `(after ${s['warmupS']} s warm-up); req/s is the best round. ` +
      `Latency: open-loop ${s['rate']} req/s over ${s['latencyConnections']} connections, ${s['latencyDurationS']} s per ` +
      `target in ${s['rounds']} rounds; each percentile is the median round. ` +
      `Proxy pinned to CPU ${s['proxyCpu'] ?? '-'}, upstream and load generators to CPU ${s['loadCpu'] ?? '-'}.`,
    '',
    '## HTTP/1.1 keep-alive, one hop',
    '',
    '| proxy | req/s | ratio to haproxy | p50 ms | p90 ms | p99 ms | added p99 vs direct (ms) | CPU s / 1000 req | peak RSS MB | peak private MB |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  );
  for (const row of r.http) {
    if (row.error) {
      lines.push(`| ${row.name} | error: ${cell(row.error)} | | | | | | | | |`);
      continue;
    }
    const l = row.latency?.latencyMs;
    lines.push(
      `| ${row.name} | ${rps(row.throughput?.rps)} | ${x(row.ratioToHaproxy?.rps)} | ${num(l?.p50, 3)} | ` +
        `${num(l?.p90, 3)} | ${num(l?.p99, 3)} | ${row.name === 'direct' ? '-' : num(row.addedOverDirectMs?.p99, 3)} | ` +
        `${num(row.cpuSecondsPer1000Requests, 3)} | ${num(row.peakRssMb, 1)} | ${num(row.peakPrivateMb, 1)} |`,
    );
  }
  if (r.tcp.length > 0) {
    lines.push(
      '',
      '## Opaque TCP (wrk -> TCP relay -> nginx)',
      '',
      '| path | req/s | ratio to raw pipe | ratio to haproxy tcp | CPU s / 1000 req | peak RSS MB | peak private MB |',
      '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    );
    for (const row of r.tcp) {
      if (row.error) {
        lines.push(`| ${row.name} | error: ${cell(row.error)} | | | | | |`);
        continue;
      }
      lines.push(
        `| ${row.name} | ${rps(row.throughput?.rps)} | ${x(row.ratioToPipe)} | ${x(row.ratioToHaproxyTcp)} | ` +
          `${num(row.cpuSecondsPer1000Requests, 3)} | ${num(row.peakRssMb, 1)} | ${num(row.peakPrivateMb, 1)} |`,
      );
    }
  }
  lines.push(
    '',
    '## Targets (trellis)',
    '',
    '| target | goal | this run | result |',
    '| --- | --- | ---: | --- |',
  );
  for (const t of r.targets) {
    const result = t.pass === null ? 'not measured' : t.pass ? 'PASS' : 'FAIL';
    lines.push(`| ${t.name} | ${t.goal} | ${t.value} | ${result} |`);
  }
  const noise = noiseSummary([...r.http, ...r.tcp]);
  if (noise) lines.splice(lines.indexOf('## HTTP/1.1 keep-alive, one hop') - 1, 0, '', noise);
  const warnings = runWarnings(r.http, r.tcp);
  if (warnings.length > 0) lines.push('', '## Warnings', '', ...warnings.map((w) => `- ${w}`));
  return lines.join('\n') + '\n';
}

/** One line on how much of the proxy's CPU other work took during the throughput rounds. */
export function noiseSummary(rows: readonly (HttpRow | TcpRow)[]): string | undefined {
  const all = rows.flatMap((r) => r.noise ?? []);
  if (all.length === 0) return undefined;
  const seconds = all.reduce((n, x) => n + x.seconds, 0);
  const taken = all.reduce((n, x) => n + x.otherS + x.stealS, 0);
  const worst = Math.max(...all.map((x) => (x.otherS + x.stealS) / x.seconds));
  return (
    `Noise: other processes and the hypervisor took ${Math.round((taken / seconds) * 100)}% of the proxy's CPU ` +
    `over the throughput rounds (worst round ${Math.round(Math.min(1, worst) * 100)}%); under 5% is a quiet run.`
  );
}

/** Things that make a row's numbers suspect: errors during load, a generator that fell behind. */
export function runWarnings(http: readonly HttpRow[], tcp: readonly TcpRow[]): string[] {
  const out: string[] = [];
  for (const row of [...http, ...tcp]) {
    const w = row.throughput;
    if (w && (w.socketErrors > 0 || w.non2xx > 0)) {
      out.push(`${row.name}: wrk saw ${w.socketErrors} socket errors and ${w.non2xx} non-2xx responses`);
    }
  }
  for (const row of [...http, ...tcp]) {
    const rps = (row.throughputRounds ?? []).map((w) => w.rps);
    const mid = row.throughput?.rps;
    if (rps.length > 1 && mid !== undefined && (Math.max(...rps) - Math.min(...rps)) / mid > 0.25) {
      const list = rps.map((v) => Math.round(v)).join(', ');
      out.push(`${row.name}: req/s varied over 25% between rounds (${list}): the machine was busy`);
    }
  }
  for (const row of [...http, ...tcp]) {
    const worst = (row.noise ?? []).reduce((m, n) => Math.max(m, (n.otherS + n.stealS) / n.seconds), 0);
    if (worst > 0.1) {
      const pct = Math.round(worst * 100);
      out.push(
        `${row.name}: in one round, other processes or the hypervisor took ${pct}% of the proxy's CPU`,
      );
    }
  }
  for (const row of http) {
    const l = row.latency;
    if (!l) continue;
    if (l.errors > 0 || l.non2xx > 0) {
      out.push(
        `${row.name}: fixed-rate run had ${l.errors} errors (${l.timeouts} timeouts), ${l.non2xx} non-2xx`,
      );
    }
    if (l.achievedRps < l.rate * 0.95) {
      out.push(`${row.name}: fixed-rate run reached only ${Math.round(l.achievedRps)} of ${l.rate} req/s`);
    }
    if (l.generatorLagMs.p99 > 2) {
      out.push(`${row.name}: load generator lagged (p99 ${num(l.generatorLagMs.p99, 2)} ms): CPU 1 was busy`);
    }
  }
  return out;
}
