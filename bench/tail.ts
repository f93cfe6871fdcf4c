// `node bench/tail.ts`: the tail-latency benchmark of issue 10, measured by generators that are
// not the project's own: Debian's `hey` (Go, one goroutine per connection, HTTP proxy support) and
// `h2load` (nghttp2, event loop, per-request log). Both send a fixed rate (default 1000 req/s over
// 16 connections) for the same seconds through each contender, in interleaved rounds:
//   direct           load -> app (the floor every "added" number is taken from)
//   haproxy          load -> haproxy -> mTLS -> haproxy -> app
//   trellis          load -> trellis proxy (a fixed --destination port) -> mTLS -> trellis -> app
//   trellis-proxy    the path apps of `trellis run` take: the client proxy's outbound listener as
//                    HTTP_PROXY (hey -x; h2load, which cannot speak to a proxy, sends the service's
//                    name as Host to the same listener)
//   trellis-cold     a second trellis pair like the first, started with `--jit-warm-up 0`: what the
//                    JIT warm-up (src/proxy/jit-warm-up.ts) saves, in the same run (not judged)
// The pairs are started fresh for each generator and measured from their first request, so the
// p99 includes warm-up; the first round is also reported on its own. Processes are pinned as in
// the two-hop table: both proxies of a pair on one core, the generators and the app on the other.
// Writes bench/results/tail-latest.{json,md}. How to read it: docs/benchmark.md.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { fail, firstLine, log, runMain, versions, waitForQuiet, writeResults } from './harness.ts';
import { percentiles, type Percentiles } from './http-response.ts';
import { findTools, type BenchOptions, parseOptions, helpText } from './options.ts';
import { pinSelf } from './processes.ts';
import * as targets from './targets.ts';
import { SERVICE, startHaproxyPair, startTrellisPair, type Pair } from './two-hop/contenders.ts';
import { makePki } from './two-hop/pki.ts';

const run = promisify(execFile);

const USAGE = `Usage: node bench/tail.ts [options]   (tail latency by hey and h2load; of the options of
bench/run.ts it reads --rounds (default 4 here), --rate, --latency-duration, --wait-quiet, --out, --quick;
BENCH_GENERATORS=hey or =h2load measures with one generator only)\n\n`;

/** Connections of the fixed-rate load (the "~1000 req/s over 16 connections"). */
const CONNECTIONS = 16;
/** The target: what two trellis hops may add to the direct p99, by every generator. */
export const TARGET_ADDED_P99_MS = 1.5;

const GENERATORS = ['hey', 'h2load'] as const;
type Generator = (typeof GENERATORS)[number];
const CONTENDERS = ['direct', 'haproxy', 'trellis', 'trellis-proxy', 'trellis-cold'] as const;
/** The contenders the target judges (trellis-cold is the comparison without the JIT warm-up). */
const JUDGED: readonly Contender[] = ['trellis', 'trellis-proxy'];
type Contender = (typeof CONTENDERS)[number];

/** Where one contender's load goes. */
interface Aim {
  readonly url: string;
  /** hey: an HTTP proxy (absolute-form requests); h2load: the Host header to send instead. */
  readonly proxy?: { readonly url: string; readonly host: string };
}

export interface TailRow {
  /** "generator contender", for the harness's error rows. */
  readonly name: string;
  readonly generator: Generator;
  readonly contender: Contender;
  /** Latencies (ms) of every round together, warm-up included. */
  latencyMs?: Percentiles;
  /** The first round alone (the pairs' first seconds). */
  firstRoundMs?: Percentiles;
  /** p99 minus direct's p99 of the same generator (ms). */
  addedP99Ms?: number;
  failed?: number;
  error?: string;
}

async function hey(aim: Aim, rate: number, seconds: number): Promise<{ ok: number[]; failed: number }> {
  const perWorker = Math.max(1, Math.round(rate / CONNECTIONS));
  const argv = ['-z', `${seconds}s`, '-c', String(CONNECTIONS), '-q', String(perWorker), '-o', 'csv'];
  if (aim.proxy) argv.push('-x', aim.proxy.url);
  const { stdout } = await run('hey', [...argv, aim.url], {
    maxBuffer: 1 << 28,
    timeout: (seconds + 30) * 1000,
  });
  // CSV: response-time (s), DNS+dialup, DNS, request-write, response-delay, response-read, status, offset.
  const ok: number[] = [];
  let failed = 0;
  for (const line of stdout.split('\n').slice(1)) {
    const f = line.split(',');
    if (f.length < 7) continue;
    if (f[6] === '200') ok.push(Number(f[0]) * 1000);
    else failed++;
  }
  return { ok, failed };
}

async function h2load(aim: Aim, rate: number, seconds: number): Promise<{ ok: number[]; failed: number }> {
  const logFile = join(targets.tempDir('h2load'), 'requests.log');
  const perClient = Math.max(1, Math.round(rate / CONNECTIONS));
  // prettier-ignore
  const argv = ['--h1', '-c', String(CONNECTIONS), '--rps', String(perClient), '-D', String(seconds),
    '--log-file', logFile];
  if (aim.proxy) argv.push('-H', `:authority: ${aim.proxy.host}`); // `host:` would be a second Host header
  await run('h2load', [...argv, aim.url], { maxBuffer: 1 << 26, timeout: (seconds + 30) * 1000 });
  // One line per request: start (µs since the epoch), status, duration (µs).
  const ok: number[] = [];
  let failed = 0;
  for (const line of readFileSync(logFile, 'utf8').split('\n')) {
    const f = line.split('\t');
    if (f.length < 3) continue;
    if (f[1] === '200') ok.push(Number(f[2]) / 1000);
    else if (failed++ === 0) log(`h2load: first non-200 answer: ${f[1]}`);
  }
  return { ok, failed };
}

const LOAD: Record<Generator, typeof hey> = { hey, h2load };

/** The outbound listener of a trellis pair's client proxy, from its ready line. */
function outboundOf(pair: Pair): string {
  const client = pair.proxies.find((p) => p.role === 'client')!.process;
  const m = /"outbound":"(?:http:\/\/)?([^"]+)"/.exec(client.output());
  if (!m) throw new Error('trellis: the client proxy did not report its outbound listener');
  return m[1]!;
}

async function measureGenerator(
  o: BenchOptions,
  tools: targets.Tools,
  generator: Generator,
  upstream: targets.Target,
): Promise<TailRow[]> {
  const pki = makePki(join(targets.tempDir('pki'), 'pki'));
  const rows = CONTENDERS.map((contender): TailRow => ({
    name: `${generator} ${contender}`,
    generator,
    contender,
  }));
  const aims = new Map<Contender, Aim>([['direct', { url: `http://127.0.0.1:${upstream.port}/` }]]);
  const pairs: Pair[] = [];
  try {
    log(`${generator}: starting fresh haproxy and trellis pairs`);
    const haproxy = await startHaproxyPair(tools, o.proxyCpu, upstream.port, pki);
    pairs.push(haproxy);
    aims.set('haproxy', { url: `http://127.0.0.1:${haproxy.port}/` });
    const trellis = await startTrellisPair(tools, o.proxyCpu, o.loadCpu, upstream.port, pki);
    pairs.push(trellis);
    aims.set('trellis', { url: `http://127.0.0.1:${trellis.port}/` });
    const cold = await startTrellisPair(tools, o.proxyCpu, o.loadCpu, upstream.port, pki, [
      '--jit-warm-up',
      '0',
    ]);
    pairs.push(cold);
    aims.set('trellis-cold', { url: `http://127.0.0.1:${cold.port}/` });
    const service = `${SERVICE.name}.${SERVICE.namespace}:${SERVICE.port}`;
    const outbound = outboundOf(trellis);
    aims.set(
      'trellis-proxy',
      generator === 'hey'
        ? { url: `http://${service}/`, proxy: { url: `http://${outbound}`, host: service } }
        : { url: `http://${outbound}/`, proxy: { url: `http://${outbound}`, host: service } },
    );
    const all = new Map<Contender, number[]>();
    const roundS = Math.max(1, Math.round(o.latencyDurationS / o.rounds));
    for (let round = 1; round <= o.rounds; round++) {
      for (const row of rows) {
        if (row.error) continue;
        log(`${generator} -> ${row.contender}: ${o.rate} req/s, round ${round}/${o.rounds} (${roundS} s)`);
        try {
          const { ok, failed } = await LOAD[generator](aims.get(row.contender)!, o.rate, roundS);
          if (ok.length === 0) throw new Error('no request answered 200');
          if (round === 1) row.firstRoundMs = percentiles(ok);
          all.set(row.contender, [...(all.get(row.contender) ?? []), ...ok]);
          row.failed = (row.failed ?? 0) + failed;
        } catch (err) {
          fail(row, err);
        }
      }
    }
    for (const row of rows) {
      const ms = all.get(row.contender);
      if (ms !== undefined && !row.error) row.latencyMs = percentiles(ms);
    }
    const floor = rows.find((r) => r.contender === 'direct')?.latencyMs?.p99;
    for (const row of rows) {
      if (floor !== undefined && row.latencyMs && row.contender !== 'direct')
        row.addedP99Ms = row.latencyMs.p99 - floor;
    }
  } catch (err) {
    for (const row of rows) if (!row.latencyMs && !row.error) fail(row, err);
  } finally {
    for (const p of pairs) await p.close();
  }
  return rows;
}

/** Pass when every trellis path adds under the target by every generator. */
function judge(rows: readonly TailRow[]) {
  const trellisRows = rows.filter((r) => JUDGED.includes(r.contender));
  const worst = Math.max(...trellisRows.map((r) => r.addedP99Ms ?? Infinity));
  return {
    name: `two trellis hops add < ${TARGET_ADDED_P99_MS} ms to p99 (warm-up included), hey and h2load`,
    value: Number.isFinite(worst) ? `worst ${worst.toFixed(2)} ms` : 'not measured',
    pass: Number.isFinite(worst) ? worst < TARGET_ADDED_P99_MS : null,
  };
}

function tailMarkdown(rows: readonly TailRow[], o: BenchOptions, target: ReturnType<typeof judge>): string {
  const ms = (v: number | undefined) => (v === undefined ? '-' : v.toFixed(2));
  const lines = [
    '# Tail latency by independent generators (bench/tail.ts)',
    '',
    `${o.rate} req/s over ${CONNECTIONS} connections, ${o.rounds} interleaved rounds of ` +
      `${Math.max(1, Math.round(o.latencyDurationS / o.rounds))} s per contender; fresh pairs per ` +
      'generator, measured from their first request (warm-up included).',
    '',
    '| generator | contender | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | added p99 ms | first round p99 ms | non-200 |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const r of rows) {
    const l = r.latencyMs;
    lines.push(
      r.error
        ? `| ${r.generator} | ${r.contender} | error: ${r.error} | | | | | | | |`
        : `| ${r.generator} | ${r.contender} | ${ms(l?.p50)} | ${ms(l?.p90)} | ${ms(l?.p99)} | ${ms(l?.p999)} | ${ms(l?.max)} | ${ms(r.addedP99Ms)} | ${ms(r.firstRoundMs?.p99)} | ${r.failed ?? 0} |`,
    );
  }
  const verdict = target.pass === null ? 'not measured' : target.pass ? 'PASS' : 'FAIL';
  lines.push('', `Target: ${target.name}: ${target.value}: **${verdict}**`, '');
  return lines.join('\n');
}

async function main(): Promise<number> {
  const parsed = parseOptions(process.argv.slice(2), process.env);
  if (parsed === 'help') {
    process.stdout.write(USAGE + helpText());
    return 0;
  }
  const o: BenchOptions = { ...parsed, rounds: process.argv.includes('--rounds') ? parsed.rounds : 4 };
  for (const tool of GENERATORS) {
    try {
      await run(tool, tool === 'hey' ? [] : ['--version']);
    } catch (err) {
      // hey prints its usage and exits 2 without arguments: only a missing binary is an error.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT')
        throw new Error(
          `missing tool: ${tool} (Debian: apt-get install -y ${tool === 'hey' ? 'hey' : 'nghttp2-client'})`,
        );
    }
  }
  const tools = findTools(process.env);
  const startedAt = new Date();
  if (o.loadCpu !== undefined) pinSelf(o.loadCpu);
  const busyAtStart = await waitForQuiet(o.waitQuietS);
  const upstream = await targets.startUpstream(tools, o.loadCpu);
  const rows: TailRow[] = [];
  try {
    const chosen = (process.env['BENCH_GENERATORS'] ?? GENERATORS.join(',')).split(',');
    for (const generator of GENERATORS.filter((g) => chosen.includes(g)))
      rows.push(...(await measureGenerator(o, tools, generator, upstream)));
  } finally {
    await upstream.close();
  }
  const target = judge(rows);
  const report = {
    startedAt: startedAt.toISOString(),
    versions: { ...versions(tools), hey: 'hey (Debian)', h2load: firstLine('h2load', ['--version']) },
    settings: {
      rate: o.rate,
      connections: CONNECTIONS,
      rounds: o.rounds,
      latencyDurationS: o.latencyDurationS,
    },
    rows,
    targets: [target],
  };
  const warnings = rows.filter((r) => r.error).map((r) => `${r.generator} ${r.contender}: ${r.error}`);
  writeResults(
    o.outDir,
    'tail-latest',
    report,
    { startedAt, busyAtStart, warnings },
    tailMarkdown(rows, o, target),
  );
  return 0;
}

runMain(main);
