// What the two-hop benchmark produces: one row per contender (direct, and the haproxy, nginx and
// trellis pairs) with the one-hop table's numbers plus each proxy's memory and whether mTLS was
// verified, the targets of issue 4 judged on them, and the markdown table. Pure functions over
// the numbers; bench/two-hop.ts does the measuring.
import { noiseSummary, runWarnings, type HttpRow, type Target } from '../report.ts';

export interface ProxyMemory {
  readonly role: 'client' | 'server';
  readonly pid: number;
  /** max of VmHWM and the sampled VmRSS over the process's life in the run. */
  peakRssMb?: number;
  peakPrivateMb?: number;
}

export interface TwoHopRow extends HttpRow {
  /** How the second hop was checked ("verified: ...", "not verified (...)"), see mtls-check.ts. */
  mtls?: string;
  /** true / false / null (not verifiable) for the targets table. */
  mtlsVerified?: boolean | null;
  /** What travels between the two proxies. */
  secondHop?: string;
  proxies?: ProxyMemory[];
  /** trellis only: the control plane's peak RSS (not a proxy, not in the targets). */
  controlPlanePeakRssMb?: number;
  /** trellis only: what the server-side proxy's metrics said at the end of the run. */
  serverMetrics?: { inboundRequests: number; inboundH2Requests: number; meshConnections: number | null };
}

export const SECOND_HOP: Record<string, string> = {
  haproxy: 'HTTP/1.1 keep-alive over mTLS 1.3',
  nginx: 'HTTP/1.1 keep-alive over mTLS 1.3',
  trellis: 'HTTP/2 between the proxies (by design), mTLS when the mesh path is in use',
};

function num(v: number | undefined, digits: number): string {
  return v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(digits);
}

const cell = (s: string): string => s.replace(/\|/g, '\\|').replace(/\s+/g, ' ').slice(0, 200);

function memory(row: TwoHopRow, role: 'client' | 'server'): ProxyMemory | undefined {
  return row.proxies?.find((p) => p.role === role);
}

/** Issue 4's benchmark targets for trellis, on this run's numbers. */
export function judgeTwoHop(rows: readonly TwoHopRow[]): Target[] {
  const found = rows.find((r) => r.name === 'trellis');
  const t = found && !found.error ? found : undefined;
  const judge = (
    name: string,
    goal: string,
    v: number | undefined,
    pass: (v: number) => boolean,
    unit: string,
  ) =>
    v === undefined || !Number.isFinite(v)
      ? { name, goal, value: 'not measured', pass: null }
      : { name, goal, value: `${num(v, unit === 'x' ? 2 : 3)}${unit}`, pass: pass(v) };
  const rss = (role: 'client' | 'server') =>
    judge(`peak RSS, ${role}-side proxy`, '<= 60 MB', t && memory(t, role)?.peakRssMb, (v) => v <= 60, ' MB');
  return [
    judge('throughput', '>= 0.5x haproxy (two hops)', t?.ratioToHaproxy?.rps, (v) => v >= 0.5, 'x'),
    judge('added p99 latency', '<= 1.5 ms over direct', t?.addedOverDirectMs?.p99, (v) => v <= 1.5, ' ms'),
    rss('client'),
    rss('server'),
    {
      name: 'mTLS between the proxies',
      goal: 'in use (server-side metrics)',
      value: t?.mtls ?? 'not measured',
      pass: t?.mtlsVerified ?? null,
    },
  ];
}

/** A bare Node process's memory on this machine (bench/two-hop.ts measureNodeFloor). */
export interface NodeFloor {
  readonly rssMb: number;
  /** The part of it that is file-backed: the node binary's and the libraries' pages. */
  readonly fileMb: number;
}

export interface TwoHopReport {
  readonly startedAt: string;
  readonly nodeFloor?: NodeFloor;
  readonly versions: Record<string, string>;
  readonly settings: Record<string, unknown>;
  readonly rows: readonly TwoHopRow[];
  readonly targets: readonly Target[];
}

export function twoHopMarkdown(r: TwoHopReport): string {
  const s = r.settings;
  const lines = [
    `# Trellis two-hop mTLS benchmark, ${r.startedAt}`,
    '',
    `Versions: ${Object.entries(r.versions)
      .map(([k, v]) => `${k} ${v}`)
      .join('; ')}.`,
    `Path: load -> client-side proxy -> second hop -> server-side proxy -> app (nginx "ok"). ` +
      `Both proxies of a contender pinned to CPU ${s['proxyCpu'] ?? '-'}; app, load generators (and the ` +
      `trellis control plane) on CPU ${s['loadCpu'] ?? '-'}. ` +
      `Throughput: wrk -t1 -c${s['connections']}, ${s['durationS']} s per contender in ${s['rounds']} ` +
      `interleaved rounds, best round. Latency: open-loop ${s['rate']} req/s over ${s['latencyConnections']} ` +
      `connections, ${s['latencyDurationS']} s per contender, median round. CPU and memory: both proxies.`,
  ];
  const noise = noiseSummary(r.rows);
  if (noise) lines.push('', noise);
  lines.push(
    '',
    '## Two hops, HTTP/1.1 keep-alive at the edges',
    '',
    '| contender | second hop | mTLS | req/s | ratio to haproxy | p50 ms | p90 ms | p99 ms | added p99 vs direct (ms) | CPU s / 1000 req | client proxy RSS / private MB | server proxy RSS / private MB |',
    '| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  );
  for (const row of r.rows) {
    if (row.error) {
      lines.push(`| ${row.name} | ${row.secondHop ?? '-'} | error: ${cell(row.error)} | | | | | | | | | |`);
      continue;
    }
    const l = row.latency?.latencyMs;
    const mem = (role: 'client' | 'server'): string => {
      const m = memory(row, role);
      return m ? `${num(m.peakRssMb, 1)} / ${num(m.peakPrivateMb, 1)}` : '-';
    };
    const rps = row.throughput ? Math.round(row.throughput.rps).toLocaleString('en-US') : '-';
    const ratio = row.ratioToHaproxy?.rps === undefined ? '-' : `${num(row.ratioToHaproxy.rps, 2)}x`;
    lines.push(
      `| ${row.name} | ${row.secondHop ?? '-'} | ${cell(row.mtls ?? '-')} | ${rps} | ${ratio} | ` +
        `${num(l?.p50, 3)} | ${num(l?.p90, 3)} | ${num(l?.p99, 3)} | ` +
        `${row.name === 'direct' ? '-' : num(row.addedOverDirectMs?.p99, 3)} | ` +
        `${num(row.cpuSecondsPer1000Requests, 3)} | ${mem('client')} | ${mem('server')} |`,
    );
  }
  lines.push('', '## Targets (trellis, issue 4)', '', '| target | goal | this run | result |');
  lines.push('| --- | --- | --- | --- |');
  for (const t of r.targets) {
    const result = t.pass === null ? 'not measured' : t.pass ? 'PASS' : 'FAIL';
    lines.push(`| ${t.name} | ${t.goal} | ${cell(t.value)} | ${result} |`);
  }
  const floor = r.nodeFloor;
  if (floor !== undefined) {
    lines.push(
      '',
      `For the RSS targets: a Node process with the proxy's flags that runs nothing has ` +
        `${num(floor.rssMb, 1)} MB RSS on this machine, ${num(floor.fileMb, 1)} MB of it the node ` +
        `binary's and libraries' own pages (the proxies' "private" column leaves those out).`,
    );
  }
  const warnings = twoHopWarnings(r.rows);
  if (warnings.length > 0) lines.push('', '## Warnings', '', ...warnings.map((w) => `- ${w}`));
  return lines.join('\n') + '\n';
}

/** The one-hop table's warnings, plus a trellis pair that was measured without verified mTLS. */
export function twoHopWarnings(rows: readonly TwoHopRow[]): string[] {
  const out = runWarnings(rows, []);
  for (const row of rows) {
    if (row.name === 'trellis' && !row.error && row.mtlsVerified !== true) {
      out.push(`trellis: mTLS ${row.mtls ?? 'not checked'}; its numbers are for the path as it is today`);
    }
  }
  return out;
}
