// `npm run bench`: measures the Trellis proxy against direct, haproxy and nginx in one run on one
// machine (throughput, latency at a fixed rate, CPU per request, peak memory, opaque TCP), then
// writes bench/results/<time>.json, latest.json and latest.md and prints the table. Every process
// it starts is pinned with taskset and stopped at the end, also on Ctrl-C or an error.
// How to read the numbers: docs/benchmark.md.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  fail,
  latencyPhase,
  log,
  runMain,
  throughputPhase,
  versions,
  waitForQuiet,
  type Measured,
} from './harness.ts';
import { findTools, helpText, machineInfo, parseOptions, type BenchOptions } from './options.ts';
import { pinSelf, sampleRss, treeMemoryMb } from './processes.ts';
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

/** A target under measurement, with the memory sampler of its process (none for direct). */
interface Running<Row extends HttpRow | TcpRow> extends Measured<Row> {
  readonly rss: { stop(): number; peakPrivateMb(): number } | undefined;
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
      const pids = pid === undefined ? [] : [pid];
      running.push({ row, target, pids, rss: pid === undefined ? undefined : sampleRss(pid) });
    } catch (err) {
      fail(row, err);
    }
  }
  return { rows, running };
}

function finishMemory(r: Running<HttpRow | TcpRow>): void {
  const pid = r.pids[0];
  if (pid === undefined || !r.rss) return;
  r.row.peakRssMb = Math.max(r.rss.stop(), treeMemoryMb(pid).hwmMb);
  r.row.peakPrivateMb = r.rss.peakPrivateMb();
}

async function closeAll(running: readonly Running<HttpRow | TcpRow>[], upstream: Target): Promise<void> {
  for (const r of running) {
    r.rss?.stop();
    if (r.target !== upstream) await r.target.close();
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

runMain(main);
