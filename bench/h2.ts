// `node bench/h2.ts`: the HTTP/2 benchmark. One hop of h2c (HTTP/2 with prior knowledge, what the
// app's HTTP/2 and gRPC take through the proxy), load -> proxy -> nginx h2c, measured with h2load
// for trellis (the inbound listener forwarding to the upstream as its app) against haproxy doing
// the same in `proto h2` on both sides, and direct (load -> nginx) as the floor. Interleaved rounds;
// each proxy's throughput is reported as a ratio to haproxy's, measured in the same run, and its
// memory as peak RSS and private. Writes bench/results/h2-latest.{json,md}. Uses the options of
// bench/run.ts (--duration, --warmup, --rounds, --connections, --only, --out, --quick).
// How to read it: docs/benchmark.md.
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fail, inRounds, log, runMain, versions, waitForQuiet } from './harness.ts';
import { findTools, machineInfo, parseOptions, type BenchOptions } from './options.ts';
import { pinSelf, sampleRss, treeMemoryMb } from './processes.ts';
import * as targets from './targets.ts';

/** Concurrent streams each h2load connection keeps open. */
const STREAMS_PER_CONNECTION = 10;
/** h2load connections (fewer than wrk's: each carries STREAMS_PER_CONNECTION requests at once). */
const H2_CONNECTIONS = 8;

interface H2Row {
  name: string;
  /** Requests a second, the median of the rounds. */
  rps?: number;
  rounds?: number[];
  /** Requests that did not get a 2xx, over all rounds. */
  failed?: number;
  /** Throughput as a share of haproxy's in this run. */
  vsHaproxy?: number;
  peakRssMb?: number;
  peakPrivateMb?: number;
  error?: string;
}

interface Running {
  readonly row: H2Row;
  readonly target: targets.Target;
  readonly pids: readonly number[];
  readonly rss: { stop(): number; peakPrivateMb(): number } | undefined;
}

/** One h2load run of `seconds` against `t`: requests a second and requests that failed. */
function h2load(
  o: BenchOptions,
  t: targets.Target,
  seconds: number,
): Promise<{ rps: number; failed: number }> {
  const args = [
    '-D',
    String(seconds),
    '-c',
    String(H2_CONNECTIONS),
    '-m',
    String(STREAMS_PER_CONNECTION),
    '-t',
    '1',
    `http://${t.host}:${t.port}/`,
  ];
  const argv =
    o.loadCpu === undefined ? ['h2load', ...args] : ['taskset', '-c', String(o.loadCpu), 'h2load', ...args];
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    // h2load stops itself after -D seconds; this only guards against a hung run.
    const timer = setTimeout(() => child.kill('SIGKILL'), (seconds + 30) * 1000);
    child.once('error', reject);
    child.once('close', () => {
      clearTimeout(timer);
      const rps = /finished in [\d.]+m?s, ([\d.]+) req\/s/.exec(out);
      const status = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(out);
      const reqs =
        /requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(
          out,
        );
      if (!rps || !status || !reqs) return reject(new Error(`h2load said: ${out.slice(-600)}`));
      const non2xx = Number(status[2]) + Number(status[3]) + Number(status[4]);
      resolve({ rps: Number(rps[1]), failed: non2xx + Number(reqs[4]) + Number(reqs[5]) });
    });
  });
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function markdown(rows: readonly H2Row[], o: BenchOptions): string {
  const lines = [
    '# HTTP/2 (h2c), one hop',
    '',
    `h2load, ${H2_CONNECTIONS} connections × ${STREAMS_PER_CONNECTION} streams, ${o.rounds} interleaved rounds ` +
      `of ${Math.max(1, Math.round(o.durationS / o.rounds))} s; proxy and load each pinned to one core.`,
    '',
    '| path | req/s (median) | vs haproxy | failed | peak RSS MB | peak private MB |',
    '| --- | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const r of rows) {
    if (r.error) {
      lines.push(`| ${r.name} | error: ${r.error.replaceAll('|', '/').slice(0, 120)} | | | | |`);
      continue;
    }
    const ratio = r.vsHaproxy === undefined ? '-' : `${r.vsHaproxy.toFixed(2)}x`;
    const mem = (v: number | undefined) => (v === undefined ? '-' : v.toFixed(1));
    lines.push(
      `| ${r.name} | ${Math.round(r.rps ?? 0).toLocaleString('en-US')} | ${ratio} | ${r.failed ?? 0} | ${mem(r.peakRssMb)} | ${mem(r.peakPrivateMb)} |`,
    );
  }
  return lines.join('\n') + '\n';
}

async function main(): Promise<number> {
  const parsed = parseOptions(process.argv.slice(2), process.env);
  if (parsed === 'help') {
    process.stdout.write('Usage: node bench/h2.ts [options]   (the HTTP/2 table; options of bench/run.ts)\n');
    return 0;
  }
  const o = parsed;
  const tools = findTools(process.env);
  const startedAt = new Date();
  if (o.loadCpu !== undefined) pinSelf(o.loadCpu);
  const busyAtStart = await waitForQuiet(o.waitQuietS);
  const names = o.proxies.filter((n) => n !== 'nginx'); // nginx cannot proxy to an h2c upstream
  const upstream = await targets.startNginxWith(
    tools,
    'upstream-h2',
    'h2/upstream-nginx.conf',
    o.loadCpu,
    {},
  );
  const rows: H2Row[] = [];
  const running: Running[] = [];
  try {
    for (const name of names) {
      const row: H2Row = { name };
      rows.push(row);
      try {
        log(`${name}: starting`);
        const target =
          name === 'direct'
            ? upstream
            : name === 'haproxy'
              ? await targets.startHaproxyWith(tools, 'haproxy', 'h2/haproxy.cfg', o.proxyCpu, {
                  UPSTREAM_PORT: upstream.port,
                })
              : await targets.startTrellis(tools, o.proxyCpu, upstream.port, 'inbound');
        const pid = name === 'direct' ? undefined : target.process?.pid;
        running.push({
          row,
          target,
          pids: pid === undefined ? [] : [pid],
          rss: pid === undefined ? undefined : sampleRss(pid),
        });
      } catch (err) {
        fail(row, err);
      }
    }
    const roundS = Math.max(1, Math.round(o.durationS / o.rounds));
    await inRounds(running, 1, async (r) => {
      log(`${r.row.name}: warm-up ${o.warmupS} s`);
      await h2load(o, r.target, Math.max(1, o.warmupS));
    });
    await inRounds(running, o.rounds, async (r, round) => {
      const res = await h2load(o, r.target, roundS);
      log(`${r.row.name}: round ${round}: ${Math.round(res.rps)} req/s, ${res.failed} failed`);
      (r.row.rounds ??= []).push(res.rps);
      r.row.failed = (r.row.failed ?? 0) + res.failed;
    });
    for (const r of running) {
      if (r.row.rounds?.length) r.row.rps = median(r.row.rounds);
      const pid = r.pids[0];
      if (pid !== undefined && r.rss) {
        r.row.peakRssMb = Math.max(r.rss.stop(), treeMemoryMb(pid).hwmMb);
        r.row.peakPrivateMb = r.rss.peakPrivateMb();
      }
    }
  } finally {
    for (const r of running) {
      r.rss?.stop();
      if (r.target !== upstream) await r.target.close();
    }
    await upstream.close();
  }
  const haproxy = rows.find((r) => r.name === 'haproxy' && r.rps !== undefined);
  for (const r of rows) if (haproxy?.rps && r.rps !== undefined) r.vsHaproxy = r.rps / haproxy.rps;
  const md = markdown(rows, o);
  const results = {
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    versions: versions(tools),
    settings: {
      ...o,
      outDir: undefined,
      h2Connections: H2_CONNECTIONS,
      streamsPerConnection: STREAMS_PER_CONNECTION,
    },
    machine: { ...machineInfo(), busyPercentAtStart: Math.round(busyAtStart * 100) },
    rows,
  };
  mkdirSync(o.outDir, { recursive: true });
  writeFileSync(join(o.outDir, 'h2-latest.json'), JSON.stringify(results, null, 2) + '\n');
  writeFileSync(join(o.outDir, 'h2-latest.md'), md);
  process.stdout.write(md);
  log(`wrote ${join(o.outDir, 'h2-latest.json')}, h2-latest.md`);
  return 0;
}

runMain(main);
