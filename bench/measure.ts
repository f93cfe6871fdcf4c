// The measurements of one target: a sanity GET and warm-up, throughput rounds under wrk with the
// proxy's CPU time read around each, and latency rounds at a fixed rate. The machine is shared and
// noisy, so run.ts interleaves the rounds of all targets: a burst of noise from a neighbour then
// lands on one round of one target, and the combined number (best round for req/s, median round
// for latency) is not decided by it.
import { request } from 'node:http';
import { join } from 'node:path';
import type { FixedRateResult } from './fixed-rate.ts';
import type { Percentiles } from './http-response.ts';
import type { BenchOptions } from './options.ts';
import { cpuCounters, startPinned, stop, treesCpuSeconds, waitForLine } from './processes.ts';
import { BENCH_DIR, type Target, type Tools } from './targets.ts';
import { runWrk, type WrkResult } from './wrk.ts';

/** One GET before any load: a target that does not answer 200 fails its row with a clear error. */
export function checkAnswers(t: Target): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = request({ host: t.host, port: t.port, path: '/', agent: false, timeout: 5000 }, (res) => {
      res.resume();
      res.on('end', () =>
        res.statusCode === 200
          ? resolve()
          : reject(new Error(`${t.name} answered ${res.statusCode} to GET /`)),
      );
    });
    req.on('timeout', () => req.destroy(new Error(`${t.name} did not answer GET / within 5 s`)));
    req.on('error', (err) => reject(new Error(`${t.name}: GET / failed: ${err.message}`)));
    req.end();
  });
}

function wrk(o: BenchOptions, tools: Tools, t: Target, durationS: number): Promise<WrkResult> {
  const url = `http://${t.host}:${t.port}/`;
  return runWrk({ wrk: tools.wrk, url, cpu: o.loadCpu, threads: 1, connections: o.connections, durationS });
}

/** The sanity GET, then unmeasured load so that JIT, pools and caches are warm. */
export async function warmUp(o: BenchOptions, tools: Tools, t: Target): Promise<void> {
  await checkAnswers(t);
  await wrk(o, tools, t, o.warmupS);
}

/**
 * What else ran on the proxy's CPU during a round: `otherS` is CPU 0's busy time that the proxy
 * did not use (other people's processes on a shared machine), `stealS` time the hypervisor took.
 */
export interface RoundNoise {
  readonly seconds: number;
  readonly otherS: number;
  readonly stealS: number;
}

/**
 * One measured wrk round; `cpuSeconds` is what the process trees of `pids` used meanwhile
 * (undefined when there are none: direct). A two-hop pair passes both proxies, which share a CPU.
 */
export async function throughputRound(
  o: BenchOptions,
  tools: Tools,
  t: Target,
  pids: readonly number[],
  seconds: number,
): Promise<{ wrk: WrkResult; cpuSeconds: number | undefined; noise: RoundNoise | undefined }> {
  const cpuBefore = treesCpuSeconds(pids);
  const coreBefore = o.proxyCpu === undefined ? undefined : cpuCounters(o.proxyCpu);
  const result = await wrk(o, tools, t, seconds);
  const cpuSeconds = pids.length === 0 ? undefined : treesCpuSeconds(pids) - cpuBefore;
  let noise: RoundNoise | undefined;
  if (coreBefore && o.proxyCpu !== undefined && cpuSeconds !== undefined) {
    const after = cpuCounters(o.proxyCpu);
    const busy = after.busyS - coreBefore.busyS;
    noise = {
      seconds,
      otherS: Math.max(0, busy - cpuSeconds),
      stealS: after.stealS - coreBefore.stealS,
    };
  }
  return { wrk: result, cpuSeconds, noise };
}

/**
 * wrk rounds combined: counts add up; req/s is the best round's. Noise from a shared machine can
 * only take throughput away, so the best round is the one least disturbed (every target gets the
 * same number of rounds); the median is kept beside it. Latencies: the median of the rounds'.
 */
export function combineThroughput(rounds: readonly WrkResult[]): WrkResult {
  const sum = (k: 'requests' | 'durationS' | 'socketErrors' | 'non2xx' | 'timeouts'): number =>
    rounds.reduce((n, r) => n + r[k], 0);
  return {
    requests: sum('requests'),
    durationS: sum('durationS'),
    rps: Math.max(...rounds.map((r) => r.rps)),
    rpsMedian: median(rounds.map((r) => r.rps)),
    socketErrors: sum('socketErrors'),
    non2xx: sum('non2xx'),
    timeouts: sum('timeouts'),
    saturatedLatencyMs: {
      p50: median(rounds.map((r) => r.saturatedLatencyMs.p50)),
      p90: median(rounds.map((r) => r.saturatedLatencyMs.p90)),
      p99: median(rounds.map((r) => r.saturatedLatencyMs.p99)),
    },
  };
}

/** One fixed-rate round (bench/fixed-rate.ts in its own process on the load CPU). */
export async function fixedRateRound(
  o: BenchOptions,
  tools: Tools,
  t: Target,
  durationS: number,
): Promise<FixedRateResult> {
  const script = join(BENCH_DIR, 'fixed-rate.ts');
  const argv = [tools.node, script, '--url', `http://${t.host}:${t.port}/`, '--rate', String(o.rate)];
  argv.push('--duration', String(durationS), '--warmup', '1', '--connections', String(o.latencyConnections));
  const p = startPinned('fixed-rate', o.loadCpu, argv);
  try {
    const parse = (line: string): FixedRateResult | undefined =>
      line.startsWith('{"rate"') ? (JSON.parse(line) as FixedRateResult) : undefined;
    return await waitForLine(p, parse, (durationS + 30) * 1000);
  } finally {
    await stop(p);
  }
}

export function median(values: readonly number[]): number {
  const v = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 === 1 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

function medianPercentiles(list: readonly Percentiles[]): Percentiles {
  const pick = (k: keyof Percentiles): number => median(list.map((p) => p[k]));
  return {
    count: list.reduce((n, p) => n + p.count, 0),
    mean: pick('mean'),
    p50: pick('p50'),
    p90: pick('p90'),
    p99: pick('p99'),
    p999: pick('p999'),
    max: Math.max(...list.map((p) => p.max)),
  };
}

/** Rounds combined: counts add up, each percentile is the median of the rounds' (max: the max). */
export function combineRounds(rounds: readonly FixedRateResult[]): FixedRateResult {
  const sum = (k: 'scheduled' | 'completed' | 'errors' | 'timeouts' | 'non2xx'): number =>
    rounds.reduce((n, r) => n + r[k], 0);
  const first = rounds[0]!;
  return {
    rate: first.rate,
    durationS: rounds.reduce((n, r) => n + r.durationS, 0),
    connections: first.connections,
    scheduled: sum('scheduled'),
    completed: sum('completed'),
    errors: sum('errors'),
    timeouts: sum('timeouts'),
    non2xx: sum('non2xx'),
    achievedRps: median(rounds.map((r) => r.achievedRps)),
    latencyMs: medianPercentiles(rounds.map((r) => r.latencyMs)),
    fromScheduleMs: medianPercentiles(rounds.map((r) => r.fromScheduleMs)),
    generatorLagMs: medianPercentiles(rounds.map((r) => r.generatorLagMs)),
  };
}
