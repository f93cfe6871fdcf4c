// `node bench/tracing-ab.ts [--together] BASE_MAIN_JS NEW_MAIN_JS [rounds] [seconds]`: the CPU a traced request
// costs, two builds against each other (a change to tracing against the build before it). Four
// trellis two-hop pairs with mTLS (bench/two-hop/contenders.ts), one untraced and one traced
// (ratio 1, OTLP/HTTP to bench/tracing/receiver.ts) per build, all running at once; each round
// loads each pair in turn with wrk (-t1 -c50, fixed seconds) and reads the CPU time both of its
// proxies used over it (/proc/PID/task/*/schedstat: nanoseconds, all threads). The result is the
// CPU per request, and traced / untraced of the same build, per round, with their min and median.
// Rounds are interleaved so that a busy neighbour on the machine weighs on all four alike: CPU
// per request is the number to read, req/s on a shared machine is not. Not part of `npm run bench`.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startPinned, stopAll } from './processes.ts';
import { checkTwoHopsMtls } from './routes/pair-access.ts';
import { startBenchReceiver } from './tracing/receiver.ts';
import * as targets from './targets.ts';
import { findTools } from './options.ts';
import { startTrellisPair, type Pair } from './two-hop/contenders.ts';
import { makePki } from './two-hop/pki.ts';
import { parseWrk } from './wrk.ts';

/** CPU nanoseconds used so far by every thread of `pid`. */
function cpuNs(pid: number): number {
  let ns = 0;
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${task}/schedstat`, 'latin1').split(' ')[0]);
    } catch {
      // the thread ended
    }
  }
  return ns;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  // --together: each round loads the four pairs at the same time (they share the proxies' CPU), so
  // that whatever else runs on the machine weighs on all four within the round alike.
  const together = args.includes('--together');
  const [base, next, roundsArg, secondsArg] = args.filter((a) => a !== '--together');
  if (base === undefined || next === undefined)
    throw new Error('usage: tracing-ab.ts BASE_MAIN_JS NEW_MAIN_JS');
  const rounds = Number(roundsArg ?? 5);
  const seconds = Number(secondsArg ?? 6);
  const tools = findTools(process.env);
  const pki = makePki(join(targets.tempDir('pki'), 'pki'));
  const receiver = await startBenchReceiver('http/protobuf');
  const upstream = await targets.startUpstream(tools, 1);
  const tracing = ['--trace-collector', receiver.url, '--trace-sample-ratio', '1'];
  const pairs: { name: string; pair: Pair; cpu: number[]; reqs: number[] }[] = [];
  try {
    for (const [build, main] of [
      ['base', base],
      ['new', next],
    ] as const) {
      for (const traced of [false, true]) {
        const pair = await startTrellisPair(
          { ...tools, trellisMain: main },
          0,
          1,
          upstream.port,
          pki,
          traced ? tracing : [],
        );
        await checkTwoHopsMtls(build, pair);
        pairs.push({ name: `${build} ${traced ? 'traced' : 'untraced'}`, pair, cpu: [], reqs: [] });
      }
    }
    // A warm-up per pair (JIT, connection pools), not measured.
    for (const p of pairs) await wrk(p.pair, 3);
    for (let r = 0; r < rounds; r++) {
      if (together) {
        const pidsOf = (p: (typeof pairs)[number]) => p.pair.proxies.map((x) => x.process.pid);
        const before = pairs.map((p) => pidsOf(p).reduce((n, pid) => n + cpuNs(pid), 0));
        const requests = await Promise.all(pairs.map((p) => wrk(p.pair, seconds)));
        pairs.forEach((p, i) => {
          const after = pidsOf(p).reduce((n, pid) => n + cpuNs(pid), 0);
          p.cpu.push((after - before[i]!) / requests[i]! / 1000);
          p.reqs.push(requests[i]! / seconds);
        });
        process.stderr.write(`round ${r + 1}/${rounds}\n`);
        continue;
      }
      // The order turns from round to round.
      for (let i = 0; i < pairs.length; i++) {
        const p = pairs[(i + r) % pairs.length]!;
        const pids = p.pair.proxies.map((x) => x.process.pid);
        const before = pids.reduce((n, pid) => n + cpuNs(pid), 0);
        const requests = await wrk(p.pair, seconds);
        const after = pids.reduce((n, pid) => n + cpuNs(pid), 0);
        p.cpu.push((after - before) / requests / 1000); // µs per request
        p.reqs.push(requests / seconds);
      }
      process.stderr.write(`round ${r + 1}/${rounds}\n`);
    }
    for (const p of pairs)
      console.log(
        `${p.name.padEnd(16)} µs/req min ${Math.min(...p.cpu).toFixed(1)} median ${median(p.cpu).toFixed(1)}` +
          `  rounds ${p.cpu.map((x) => x.toFixed(1)).join(' ')}  req/s median ${Math.round(median(p.reqs))}`,
      );
    for (const build of ['base', 'new']) {
      const u = pairs.find((p) => p.name === `${build} untraced`)!;
      const t = pairs.find((p) => p.name === `${build} traced`)!;
      const ratios = t.cpu.map((c, i) => c / u.cpu[i]!);
      console.log(
        `${build} traced/untraced CPU per request: min ${Math.min(...ratios).toFixed(3)} median ${median(ratios).toFixed(3)}` +
          ` (rounds ${ratios.map((x) => x.toFixed(3)).join(' ')})`,
      );
    }
    console.log(`spans received by the collector: ${receiver.spans}`);
  } finally {
    for (const p of pairs) await p.pair.close();
    await upstream.close();
    await receiver.close();
    await stopAll();
    targets.removeTempDirs();
  }
}

async function wrk(pair: Pair, seconds: number): Promise<number> {
  const tools = findTools(process.env);
  const p = startPinned('wrk', 1, [
    tools.wrk,
    '-t1',
    '-c50',
    `-d${seconds}s`,
    `http://127.0.0.1:${pair.port}/`,
  ]);
  const code = await p.exited;
  if (code !== 0) throw new Error(`wrk exited with ${code}`);
  const r = parseWrk(p.output());
  if (r.non2xx > 0 || r.socketErrors > 0)
    throw new Error(`wrk: ${r.non2xx} non-2xx, ${r.socketErrors} socket errors`);
  return r.requests;
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
