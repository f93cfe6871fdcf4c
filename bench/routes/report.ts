// What the routes benchmark produces: the trellis two-hop pair without routes and with a route of
// ten rules plus retries, their ratio (issue 10: lose at most 10%), the retry storm's ratio of
// upstream to client requests (at most 1.3x), and the markdown table. Pure functions over the
// numbers; bench/routes.ts does the measuring.
import { noiseSummary, runWarnings, type HttpRow, type Target } from '../report.ts';
import { MIN_REQUESTS, type StormResult } from './storm.ts';

export const UNROUTED = 'trellis';
export const ROUTED = 'trellis + route';

export interface RoutesRow extends HttpRow {
  /** How the route was seen in force before measuring (routed row only). */
  routeCheck?: string;
  /** trellis_route_requests_total growth on the client-side proxy over the run (routed row only). */
  routedRequests?: number;
  /** trellis_retries_total{outcome="retried"} growth over the run (routed row only). */
  retried?: number;
}

export interface RoutedRatios {
  /** routed / unrouted req/s, best rounds (what the other tables compare). */
  readonly rps?: number;
  /** routed / unrouted req/s, median rounds. */
  readonly rpsMedian?: number;
  readonly p50?: number;
  readonly p99?: number;
  /** Routed p99 minus unrouted p99 (ms). */
  readonly addedP99Ms?: number;
  /** routed / unrouted CPU seconds of both proxies per 1000 requests under wrk (less noisy than req/s). */
  readonly cpuPer1000?: number;
}

const ratio = (a: number | undefined, b: number | undefined): number | undefined =>
  a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0
    ? undefined
    : a / b;

export function routedRatios(rows: readonly RoutesRow[]): RoutedRatios {
  return pairRatios(
    rows.find((r) => r.name === UNROUTED && !r.error),
    rows.find((x) => x.name === ROUTED && !x.error),
  );
}

/** How two pairs were measured (also bench/tracing): CPUs, wrk and latency settings, load average. */
export function pairsMeasured(
  s: Record<string, unknown>,
  onLoadCpu: string,
  loadAverage: readonly number[],
): string {
  return (
    `Proxies pinned to CPU ${s['proxyCpu'] ?? '-'}; ${onLoadCpu} on CPU ` +
    `${s['loadCpu'] ?? '-'}. Throughput: wrk -t1 -c${s['connections']}, ${s['durationS']} s per pair in ` +
    `${s['rounds']} interleaved rounds, best round. Latency: open-loop ${s['rate']} req/s over ` +
    `${s['latencyConnections']} connections, ${s['latencyDurationS']} s per pair, median round. ` +
    `Load average at the start: ${loadAverage.map((v) => v.toFixed(2)).join(', ')}.`
  );
}

/** `r` over `u`, the same pair measured without and with a feature in one run (also bench/tracing). */
export function pairRatios(u: HttpRow | undefined, r: HttpRow | undefined): RoutedRatios {
  if (!u || !r) return {};
  const up99 = u.latency?.latencyMs.p99;
  const rp99 = r.latency?.latencyMs.p99;
  return {
    rps: ratio(r.throughput?.rps, u.throughput?.rps),
    rpsMedian: ratio(r.throughput?.rpsMedian, u.throughput?.rpsMedian),
    p50: ratio(r.latency?.latencyMs.p50, u.latency?.latencyMs.p50),
    p99: ratio(rp99, up99),
    addedP99Ms: rp99 !== undefined && up99 !== undefined ? rp99 - up99 : undefined,
    cpuPer1000: ratio(r.cpuSecondsPer1000Requests, u.cpuSecondsPer1000Requests),
  };
}

function num(v: number | undefined, digits: number): string {
  return v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(digits);
}

/** Issue 10's two benchmark lines, on this run's numbers. */
export function judgeRoutes(ratios: RoutedRatios, storm: StormResult | undefined): Target[] {
  const rps = ratios.rps;
  const stormOk = storm !== undefined && Number.isFinite(storm.ratio);
  return [
    rps === undefined
      ? {
          name: 'route of 10 rules + retry',
          goal: 'loses <= 10% (>= 0.90x no route)',
          value: 'not measured',
          pass: null,
        }
      : {
          name: 'route of 10 rules + retry',
          goal: 'loses <= 10% (>= 0.90x no route)',
          value: `${num(rps, 2)}x req/s (median rounds ${num(ratios.rpsMedian, 2)}x)`,
          pass: rps >= 0.9,
        },
    !stormOk
      ? {
          name: 'retry storm, backend failing 100%',
          goal: '<= 1.3x the client requests',
          value: 'not measured',
          pass: null,
        }
      : {
          name: 'retry storm, backend failing 100%',
          goal: '<= 1.3x the client requests',
          value:
            `${num(storm.ratio, 3)}x (${storm.upstreamRequests.toLocaleString('en-US')} for ` +
            `${storm.clientRequests.toLocaleString('en-US')}; budget allows ${num(storm.budgetBound, 3)}x)`,
          pass: storm.ratio <= 1.3,
        },
  ];
}

export interface RoutesReport {
  readonly startedAt: string;
  readonly versions: Record<string, string>;
  readonly settings: Record<string, unknown>;
  readonly rows: readonly RoutesRow[];
  readonly ratios: RoutedRatios;
  readonly storm?: StormResult;
  readonly stormError?: string;
  readonly targets: readonly Target[];
  readonly loadAverage: readonly number[];
}

const cell = (s: string): string => s.replace(/\|/g, '\\|').replace(/\s+/g, ' ').slice(0, 200);

export function routesMarkdown(r: RoutesReport): string {
  const s = r.settings;
  const lines = [
    `# Trellis routes and retry-storm benchmark, ${r.startedAt}`,
    '',
    `Versions: ${Object.entries(r.versions)
      .map(([k, v]) => `${k} ${v}`)
      .join('; ')}.`,
    `Path: load -> client-side proxy -> mTLS -> server-side proxy -> app (nginx "ok"), two trellis pairs ` +
      `(each its own \`trellis up\`), one without routes and one with an HTTPRoute of 10 rules, each with ` +
      `retry { codes: [503], attempts: 2 }; the load (GET /) matches only the catch-all rule, last in precedence. ` +
      pairsMeasured(s, 'app, load generators and control planes', r.loadAverage),
  ];
  const noise = noiseSummary(r.rows);
  if (noise) lines.push('', noise);
  lines.push(
    '',
    '## Two hops with mTLS, with and without a route',
    '',
    '| pair | req/s (best) | req/s (median) | p50 ms | p90 ms | p99 ms | CPU s / 1000 req | route in force |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
  );
  for (const row of r.rows) {
    if (row.error) {
      lines.push(`| ${row.name} | error: ${cell(row.error)} | | | | | | |`);
      continue;
    }
    const l = row.latency?.latencyMs;
    const rps = (v: number | undefined) => (v === undefined ? '-' : Math.round(v).toLocaleString('en-US'));
    lines.push(
      `| ${row.name} | ${rps(row.throughput?.rps)} | ${rps(row.throughput?.rpsMedian)} | ${num(l?.p50, 3)} | ` +
        `${num(l?.p90, 3)} | ${num(l?.p99, 3)} | ${num(row.cpuSecondsPer1000Requests, 3)} | ` +
        `${cell(row.routeCheck ?? 'no route')} |`,
    );
  }
  const x = r.ratios;
  lines.push(
    '',
    `Routed / unrouted: req/s ${num(x.rps, 3)}x (median rounds ${num(x.rpsMedian, 3)}x), ` +
      `p50 ${num(x.p50, 3)}x, p99 ${num(x.p99, 3)}x (${num(x.addedP99Ms, 3)} ms added at p99), ` +
      `CPU per request ${num(x.cpuPer1000, 3)}x (the proxies' own CPU time: less disturbed by a busy ` +
      `machine than req/s, which is the judged number).`,
  );
  lines.push('', '## Retry storm: backend failing 100%, route retrying 503 with attempts 3', '');
  const st = r.storm;
  if (st) {
    lines.push(
      '| wrk | client requests (client proxy) | wrk completed | upstream received | ratio | retried | over budget | budget allows |',
      '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
      `| -c${st.connections}, ${num(st.durationS, 1)} s | ${st.clientRequests.toLocaleString('en-US')} | ` +
        `${st.wrkRequests.toLocaleString('en-US')} | ${st.upstreamRequests.toLocaleString('en-US')} | ` +
        `${num(st.ratio, 3)}x | ${st.retried.toLocaleString('en-US')} | ${st.budgetExhausted.toLocaleString('en-US')} | ` +
        `${num(st.budgetBound, 3)}x |`,
    );
  } else {
    lines.push(`error: ${cell(r.stormError ?? 'not run')}`);
  }
  lines.push('', '## Targets (trellis, issue 10)', '', '| target | goal | this run | result |');
  lines.push('| --- | --- | --- | --- |');
  for (const t of r.targets) {
    const result = t.pass === null ? 'not measured' : t.pass ? 'PASS' : 'FAIL';
    lines.push(`| ${t.name} | ${t.goal} | ${cell(t.value)} | ${result} |`);
  }
  const warnings = routesWarnings(r);
  if (warnings.length > 0) lines.push('', '## Warnings', '', ...warnings.map((w) => `- ${w}`));
  return lines.join('\n') + '\n';
}

export function routesWarnings(r: Pick<RoutesReport, 'rows' | 'storm' | 'loadAverage'>): string[] {
  const out = runWarnings(r.rows, []);
  const st = r.storm;
  if (st && st.clientRequests < MIN_REQUESTS) {
    out.push(
      `retry storm: only ${st.clientRequests} client requests (< ${MIN_REQUESTS}): the budget's floor of ` +
        `100 retries per 10 s weighs ${num((100 / Math.max(1, st.clientRequests)) * 100, 1)} points of the ratio`,
    );
  }
  if (st && Math.abs(st.wrkRequests - st.clientRequests) > st.connections * 2) {
    out.push(
      `retry storm: wrk counted ${st.wrkRequests} requests, the client proxy ${st.clientRequests}; the ratio uses the proxy's`,
    );
  }
  const load = r.loadAverage[0] ?? 0;
  if (load > 2)
    out.push(`load average ${load.toFixed(2)} on the machine at the start: other work shared the CPUs`);
  return out;
}
