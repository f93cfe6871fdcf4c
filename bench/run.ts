// `npm run bench`: measures the Trellis proxy against direct, haproxy and nginx in one run on one
// machine (throughput, latency at a fixed rate, CPU per request, peak memory, opaque TCP), then
// writes bench/results/<time>.json, latest.json and latest.md and prints the table. Every process
// it starts is pinned with taskset and stopped at the end, also on Ctrl-C or an error.
// How to read the numbers: docs/benchmark.md.
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { combineRounds, combineThroughput, fixedRateRound, throughputRound, warmUp } from './measure.ts';
import { findTools, helpText, machineInfo, parseOptions, type BenchOptions } from './options.ts';
import {
  killAllNow,
  machineBusyFraction,
  pinSelf,
  sampleRss,
  stopAll,
  tail,
  treeCpuSeconds,
  treeMemoryMb,
} from './processes.ts';
import {
  compareHttp,
  compareTcp,
  judgeTargets,
  markdown,
  runWarnings,
  type HttpRow,
  type TcpRow,
} from './report.ts';
import * as targets from './targets.ts';

type Tools = targets.Tools;
type Target = targets.Target;

function log(msg: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

/** A target under measurement: its row, its process (none for direct) and its memory sampler. */
interface Running<Row extends HttpRow | TcpRow> {
  readonly row: Row;
  readonly target: Target;
  readonly pid: number | undefined;
  readonly rss: { stop(): number; peakPrivateMb(): number } | undefined;
}

function fail(row: HttpRow | TcpRow, err: unknown): void {
  row.error = (err as Error).message;
  log(`${row.name}: ERROR ${tail(row.error, 400)}`);
}

/** Starts each target; a target that fails to start keeps its row with the error. */
async function startAll<Row extends HttpRow | TcpRow>(
  names: readonly string[],
  start: (name: string) => Promise<Target>,
  isDirect: (name: string) => boolean,
): Promise<{ rows: Row[]; running: Running<Row>[] }> {
  const rows: Row[] = [];
  const running: Running<Row>[] = [];
  for (const name of names) {
    const row = { name } as Row;
    rows.push(row);
    try {
      const target = await start(name);
      const pid = isDirect(name) ? undefined : target.process?.pid;
      running.push({ row, target, pid, rss: pid === undefined ? undefined : sampleRss(pid) });
    } catch (err) {
      fail(row, err);
    }
  }
  return { rows, running };
}

function finishMemory(r: Running<HttpRow | TcpRow>): void {
  if (r.pid === undefined || !r.rss) return;
  r.row.peakRssMb = Math.max(r.rss.stop(), treeMemoryMb(r.pid).hwmMb);
  r.row.peakPrivateMb = r.rss.peakPrivateMb();
}

async function closeAll(running: readonly Running<HttpRow | TcpRow>[], upstream: Target): Promise<void> {
  for (const r of running) {
    r.rss?.stop();
    if (r.target !== upstream) await r.target.close();
  }
}

/**
 * Runs `step` for every target that has not failed, round after round; each round starts one
 * target further along, so no target is always measured first or last.
 */
async function inRounds<Row extends HttpRow | TcpRow>(
  running: readonly Running<Row>[],
  rounds: number,
  step: (r: Running<Row>, round: number) => Promise<void>,
): Promise<void> {
  for (let round = 0; round < rounds; round++) {
    const live = running.filter((r) => !r.row.error);
    for (let i = 0; i < live.length; i++) {
      const r = live[(i + round) % live.length]!;
      await step(r, round + 1).catch((err: unknown) => fail(r.row, err));
    }
  }
}

/** Warm-up, then interleaved wrk rounds; fills throughput, its rounds and CPU per 1000 requests. */
async function throughputPhase<Row extends HttpRow | TcpRow>(
  o: BenchOptions,
  tools: Tools,
  running: readonly Running<Row>[],
): Promise<void> {
  const roundS = Math.max(1, Math.round(o.durationS / o.rounds));
  await inRounds(running, 1, async (r) => {
    log(`${r.row.name}: warm-up ${o.warmupS} s`);
    await warmUp(o, tools, r.target);
  });
  const cpu = new Map<Running<Row>, number>();
  await inRounds(running, o.rounds, async (r, round) => {
    log(`${r.row.name}: throughput round ${round}/${o.rounds} (${roundS} s)`);
    const { wrk, cpuSeconds, noise } = await throughputRound(o, tools, r.target, r.pid, roundS);
    (r.row.throughputRounds ??= []).push(wrk);
    if (noise) (r.row.noise ??= []).push(noise);
    if (cpuSeconds !== undefined) cpu.set(r, (cpu.get(r) ?? 0) + cpuSeconds);
  });
  for (const r of running) {
    if (r.row.error || !r.row.throughputRounds) continue;
    r.row.throughput = combineThroughput(r.row.throughputRounds);
    const used = cpu.get(r);
    if (used !== undefined && r.row.throughput.requests > 0) {
      r.row.cpuSecondsPer1000Requests = (used / r.row.throughput.requests) * 1000;
    }
  }
}

/** Interleaved fixed-rate rounds; fills latency, its rounds and CPU per 1000 requests at that rate. */
async function latencyPhase(
  o: BenchOptions,
  tools: Tools,
  running: readonly Running<HttpRow>[],
): Promise<void> {
  const roundS = Math.max(1, o.latencyDurationS / o.rounds);
  const cpu = new Map<Running<HttpRow>, number>();
  await inRounds(running, o.rounds, async (r, round) => {
    log(`${r.row.name}: latency at ${o.rate} req/s, round ${round}/${o.rounds} (${roundS} s)`);
    const cpuBefore = r.pid === undefined ? 0 : treeCpuSeconds(r.pid);
    const result = await fixedRateRound(o, tools, r.target, roundS);
    if (r.pid !== undefined) cpu.set(r, (cpu.get(r) ?? 0) + treeCpuSeconds(r.pid) - cpuBefore);
    (r.row.latencyRounds ??= []).push(result);
  });
  for (const r of running) {
    if (r.row.error || !r.row.latencyRounds) continue;
    r.row.latency = combineRounds(r.row.latencyRounds);
    const used = cpu.get(r);
    if (used !== undefined && r.row.latency.completed > 0) {
      r.row.cpuSecondsPer1000RequestsAtFixedRate = (used / r.row.latency.completed) * 1000;
    }
  }
}

async function benchHttp(o: BenchOptions, tools: Tools, upstream: Target): Promise<HttpRow[]> {
  const start = (name: string): Promise<Target> => {
    log(`${name}: starting`);
    if (name === 'direct') return Promise.resolve(upstream);
    if (name === 'haproxy') return targets.startHaproxy(tools, o.proxyCpu, upstream.port, 'http');
    if (name === 'nginx') return targets.startNginxProxy(tools, o.proxyCpu, upstream.port);
    return targets.startTrellis(tools, o.proxyCpu, upstream.port, 'inbound');
  };
  const { rows, running } = await startAll<HttpRow>(o.proxies, start, (n) => n === 'direct');
  try {
    await throughputPhase(o, tools, running);
    await latencyPhase(o, tools, running);
    for (const r of running) if (!r.row.error) finishMemory(r);
  } finally {
    await closeAll(running, upstream);
  }
  return rows;
}

const TCP_PATHS = ['tcp-pipe', 'haproxy-tcp', 'trellis-opaque'] as const;

async function benchTcp(o: BenchOptions, tools: Tools, upstream: Target): Promise<TcpRow[]> {
  const start = (name: string): Promise<Target> => {
    log(`${name}: starting`);
    if (name === 'tcp-pipe') return targets.startTcpPipe(tools, o.proxyCpu, upstream.port);
    if (name === 'haproxy-tcp') return targets.startHaproxy(tools, o.proxyCpu, upstream.port, 'tcp');
    return targets.startTrellis(tools, o.proxyCpu, upstream.port, 'opaque');
  };
  const { rows, running } = await startAll<TcpRow>(TCP_PATHS, start, () => false);
  try {
    await throughputPhase(o, tools, running);
    for (const r of running) if (!r.row.error) finishMemory(r);
  } finally {
    await closeAll(running, upstream);
  }
  return rows;
}

/** The first line a command prints (stdout, else stderr: nginx -v and wrk -v use stderr). */
function firstLine(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 5000, stdio: ['ignore', 'pipe', 'pipe'] });
  const out = (r.stdout ?? '').trim() || (r.stderr ?? '').trim();
  return out.split('\n')[0] ?? '';
}

function versions(tools: Tools): Record<string, string> {
  const nginxV = firstLine(tools.nginx, ['-v']);
  const gitCommit = firstLine('git', ['-C', targets.REPO_ROOT, 'rev-parse', '--short', 'HEAD']);
  return {
    node: firstLine(tools.node, ['--version']),
    haproxy: /version (\S+)/.exec(firstLine(tools.haproxy, ['-v']))?.[1] ?? 'unknown',
    nginx: /nginx\/(\S+)/.exec(nginxV)?.[1] ?? nginxV,
    wrk: /wrk (\S+)/.exec(firstLine(tools.wrk, ['-v']))?.[1] ?? 'unknown',
    trellis: gitCommit ? `git ${gitCommit}` : 'unknown',
    trellisCommand: targets
      .trellisCommand(tools)
      .map((part) => part.replace(targets.REPO_ROOT + '/', ''))
      .join(' '),
  };
}

/**
 * Waits (bounded) until the machine's CPUs are less than a quarter busy over 2 s, so that the run
 * does not start in the middle of someone else's build; returns the last busy fraction seen.
 */
async function waitForQuiet(maxS: number): Promise<number> {
  const deadline = Date.now() + maxS * 1000;
  let busy = await machineBusyFraction(1000);
  while (busy > 0.25 && Date.now() < deadline) {
    log(
      `machine is ${Math.round(busy * 100)}% busy with other work; waiting for it to quieten (up to ${maxS} s)`,
    );
    busy = await machineBusyFraction(2000);
  }
  if (busy > 0.25)
    log(`machine still ${Math.round(busy * 100)}% busy: starting anyway, expect noisy numbers`);
  return busy;
}

async function main(): Promise<number> {
  const parsed = parseOptions(process.argv.slice(2), process.env);
  if (parsed === 'help') {
    process.stdout.write(helpText());
    return 0;
  }
  const o = parsed;
  const tools = findTools(process.env);
  const startedAt = new Date();
  const perHttp = o.warmupS + o.durationS + o.latencyDurationS + 2 * o.rounds;
  const estimate = o.proxies.length * perHttp + (o.opaque ? 3 * (o.warmupS + o.durationS + 1) : 0);
  log(`about ${Math.ceil(estimate / 60)} min (${Math.round(estimate)} s of load); results in ${o.outDir}`);
  if (o.proxyCpu === undefined) log('fewer than 2 CPUs: processes are not pinned, numbers are rough');

  if (o.loadCpu !== undefined) pinSelf(o.loadCpu);
  const busyAtStart = await waitForQuiet(o.waitQuietS);
  let http: HttpRow[] = [];
  let tcp: TcpRow[] = [];
  const upstream = await targets.startUpstream(tools, o.loadCpu);
  try {
    http = await benchHttp(o, tools, upstream);
    if (o.opaque) tcp = await benchTcp(o, tools, upstream);
  } finally {
    await upstream.close();
  }
  compareHttp(http);
  compareTcp(tcp);
  const settings = { ...o, outDir: undefined };
  const input = { startedAt: startedAt.toISOString(), versions: versions(tools), settings, http, tcp };
  const report = { ...input, targets: judgeTargets(http, tcp) };
  const results = {
    ...report,
    finishedAt: new Date().toISOString(),
    elapsedS: (Date.now() - startedAt.getTime()) / 1000,
    machine: { ...machineInfo(), busyPercentAtStart: Math.round(busyAtStart * 100) },
    warnings: runWarnings(http, tcp),
  };
  const md = markdown(report);
  mkdirSync(o.outDir, { recursive: true });
  const stamp = startedAt.toISOString().replace(/[:.]/g, '-');
  const json = JSON.stringify(results, null, 2) + '\n';
  writeFileSync(join(o.outDir, `${stamp}.json`), json);
  writeFileSync(join(o.outDir, 'latest.json'), json);
  writeFileSync(join(o.outDir, 'latest.md'), md);
  process.stdout.write(md);
  log(`wrote ${join(o.outDir, `${stamp}.json`)}, latest.json, latest.md`);
  return 0;
}

let interrupted = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (interrupted) return;
    interrupted = true;
    log(`${signal}: stopping every process started`);
    void stopAll().finally(() => {
      targets.removeTempDirs();
      process.exit(130);
    });
  });
}
process.on('exit', () => {
  killAllNow();
  targets.removeTempDirs();
});

main().then(
  async (code) => {
    await stopAll();
    targets.removeTempDirs();
    process.exitCode = code;
  },
  async (err: unknown) => {
    process.stderr.write(`bench: ${(err as Error).message}\n`);
    await stopAll();
    targets.removeTempDirs();
    process.exitCode = 1;
  },
);
