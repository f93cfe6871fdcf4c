// The measuring loop shared by the benchmarks of bench/: the one-hop table (run.ts) and the
// two-hop mTLS table (two-hop.ts). Interleaved rounds over every target, the throughput and
// fixed-rate latency phases with the CPU time of each target's processes read around every round,
// the wait for a quiet machine, the tool versions, and the process-wide cleanup on exit or signal.
// How the numbers are meant to be read: docs/benchmark.md.
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { combineRounds, combineThroughput, fixedRateRound, throughputRound, warmUp } from './measure.ts';
import { machineInfo, type BenchOptions } from './options.ts';
import { killAllNow, machineBusyFraction, stopAll, tail, treesCpuSeconds } from './processes.ts';
import type { HttpRow, TcpRow } from './report.ts';
import * as targets from './targets.ts';

export function log(msg: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

/**
 * A target under measurement: its row, where load goes, and the processes whose CPU time is
 * charged to it (none for direct; both proxies of a two-hop pair).
 */
export interface Measured<Row extends HttpRow | TcpRow> {
  readonly row: Row;
  readonly target: targets.Target;
  readonly pids: readonly number[];
}

/** What every table's row has: its name, and the error that took it out of the run. */
export interface NamedRow {
  readonly name: string;
  error?: string;
}

export function fail(row: NamedRow, err: unknown): void {
  row.error = (err as Error).message;
  log(`${row.name}: ERROR ${tail(row.error, 400)}`);
}

/**
 * Runs `step` for every target that has not failed, round after round; each round starts one
 * target further along, so no target is always measured first or last.
 */
export async function inRounds<M extends { readonly row: NamedRow }>(
  running: readonly M[],
  rounds: number,
  step: (r: M, round: number) => Promise<void>,
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
export async function throughputPhase<M extends Measured<HttpRow | TcpRow>>(
  o: BenchOptions,
  tools: targets.Tools,
  running: readonly M[],
): Promise<void> {
  const roundS = Math.max(1, Math.round(o.durationS / o.rounds));
  await inRounds(running, 1, async (r) => {
    log(`${r.row.name}: warm-up ${o.warmupS} s`);
    await warmUp(o, tools, r.target);
  });
  const cpu = new Map<M, number>();
  await inRounds(running, o.rounds, async (r, round) => {
    log(`${r.row.name}: throughput round ${round}/${o.rounds} (${roundS} s)`);
    const { wrk, cpuSeconds, noise } = await throughputRound(o, tools, r.target, r.pids, roundS);
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
export async function latencyPhase<M extends Measured<HttpRow>>(
  o: BenchOptions,
  tools: targets.Tools,
  running: readonly M[],
): Promise<void> {
  const roundS = Math.max(1, o.latencyDurationS / o.rounds);
  const cpu = new Map<M, number>();
  await inRounds(running, o.rounds, async (r, round) => {
    log(`${r.row.name}: latency at ${o.rate} req/s, round ${round}/${o.rounds} (${roundS} s)`);
    const cpuBefore = treesCpuSeconds(r.pids);
    const result = await fixedRateRound(o, tools, r.target, roundS);
    if (r.pids.length > 0) cpu.set(r, (cpu.get(r) ?? 0) + treesCpuSeconds(r.pids) - cpuBefore);
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

/** The first line a command prints (stdout, else stderr: nginx -v and wrk -v use stderr). */
export function firstLine(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 5000, stdio: ['ignore', 'pipe', 'pipe'] });
  const out = (r.stdout ?? '').trim() || (r.stderr ?? '').trim();
  return out.split('\n')[0] ?? '';
}

export function versions(tools: targets.Tools): Record<string, string> {
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
export async function waitForQuiet(maxS: number): Promise<number> {
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

/**
 * Runs a benchmark's main: every process it started is stopped at the end, also on Ctrl-C,
 * SIGTERM or an error, and the temporary folders are removed; sets the exit code.
 */
export function runMain(main: () => Promise<number>): void {
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
}

/**
 * Writes a table's results: `<outDir>/<name>.json` (the report with the run's end, length, machine
 * and warnings) and `<name>.md` (also on stdout).
 */
export function writeResults(
  outDir: string,
  name: string,
  report: object,
  run: { readonly startedAt: Date; readonly busyAtStart: number; readonly warnings: readonly string[] },
  md: string,
): void {
  const results = {
    ...report,
    finishedAt: new Date().toISOString(),
    elapsedS: (Date.now() - run.startedAt.getTime()) / 1000,
    machine: { ...machineInfo(), busyPercentAtStart: Math.round(run.busyAtStart * 100) },
    warnings: run.warnings,
  };
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, `${name}.json`), JSON.stringify(results, null, 2) + '\n');
  writeFileSync(join(outDir, `${name}.md`), md);
  process.stdout.write(md);
  log(`wrote ${join(outDir, `${name}.json`)} and ${name}.md`);
}
