// `node bench/tap.ts`: the live-tap benchmark of issue 11, as ratios in one run. Two trellis
// two-hop pairs with mTLS (bench/two-hop/contenders.ts): one without a tap, one with a tap
// attached to each of its proxies for the whole run (the server-side proxy's through the control
// plane's GET /api/tap, as `trellis tap` does; the client-side proxy, which the pair does not
// register with its control plane, on its admin GET /tap, the endpoint the control plane uses),
// both read by this process. The taps are checked in force (events arrive) before anything is
// measured. Throughput (wrk) and fixed-rate latency in the interleaved rounds of the two-hop table
// (bench/harness.ts); the ratio tapped / untapped is held to "lose at most 10%", with the CPU per
// request beside it, the events the taps got and what the proxies left out over the run.
// Writes bench/results/tap-latest.{json,md}. How to read it: docs/benchmark.md.
import { request, type ClientRequest } from 'node:http';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { NdjsonReader } from '../src/core/ndjson.ts';
import { runningControlFile } from '../src/api/control-file.ts';
import { TAP_DEFAULT_MAX_RPS } from '../src/core/tap-filter.ts';
import {
  fail,
  firstLine,
  latencyPhase,
  log,
  runMain,
  throughputPhase,
  versions,
  waitForQuiet,
  writeResults,
} from './harness.ts';
import type { Measured } from './harness.ts';
import { findTools, parseOptions, helpText, type BenchOptions } from './options.ts';
import { pinSelf } from './processes.ts';
import { checkTwoHopsMtls, clientAdminOf, counter, stateDirOf, waitForRoute } from './routes/pair-access.ts';
import {
  judgeTap,
  TAPPED,
  tapMarkdown,
  tapRatios,
  tapWarnings,
  UNTAPPED,
  type TapRow,
} from './tap/report.ts';
import * as targets from './targets.ts';
import { SERVICE, startTrellisPair, type Pair } from './two-hop/contenders.ts';
import { makePki, type Pki } from './two-hop/pki.ts';

const USAGE = `Usage: node bench/tap.ts [options]   (no tap against a tap attached to both proxies; same
options as bench/run.ts, --only and --no-opaque are ignored)\n\n`;

const DROPPED = 'trellis_tap_dropped_total';

/** A tap read by this process: the events counted as they come, the stream open until close(). */
interface TapReader {
  events: number;
  close(): void;
}

/** Opens GET http://HOSTPORT/PATH and counts its exchange lines. */
function readTap(hostPort: string, path: string): TapReader {
  const colon = hostPort.lastIndexOf(':');
  const reader: TapReader = { events: 0, close: () => req.destroy() };
  const lines = new NdjsonReader(1 << 16, (o) => {
    if (o.type === 'exchange') reader.events++;
    else if (o.type === 'error') log(`tap: ${JSON.stringify(o)}`);
  });
  const req: ClientRequest = request(
    { host: hostPort.slice(0, colon), port: Number(hostPort.slice(colon + 1)), path, agent: false },
    (res) => {
      if (res.statusCode !== 200) log(`tap ${hostPort}${path}: HTTP ${res.statusCode}`);
      res.on('data', (chunk: Buffer) => lines.push(chunk));
    },
  );
  req.on('error', () => {});
  req.end();
  return reader;
}

async function dropCounts(pair: Pair) {
  let rateCapped = 0;
  let slow = 0;
  for (const admin of [clientAdminOf(pair), pair.serverAdmin!]) {
    rateCapped += await counter(admin, DROPPED, { reason: 'rate-cap' });
    slow += await counter(admin, DROPPED, { reason: 'slow-consumer' });
  }
  return { rateCapped, slow };
}

/** Attaches the two taps and waits until both have events (20 s at most). */
async function attachTaps(row: TapRow, pair: Pair): Promise<TapReader[]> {
  const control = await runningControlFile(stateDirOf(pair));
  if (control === null) throw new Error(`${pair.name}: its control plane wrote no control.json`);
  const taps = [
    readTap(control.http, `/api/tap?namespace=${SERVICE.namespace}&workload=${SERVICE.name}`),
    readTap(clientAdminOf(pair), '/tap'),
  ];
  try {
    await waitForRoute(pair, 'the taps', async () => taps.every((t) => t.events > 0), 20_000);
  } catch (err) {
    for (const t of taps) t.close();
    throw err;
  }
  row.tapCheck = `yes: both taps received events (${taps.map((t) => t.events).join(', ')}) before measuring`;
  return taps;
}

async function measurePairs(o: BenchOptions, tools: targets.Tools, pki: Pki, rows: TapRow[]): Promise<void> {
  const upstream = await targets.startUpstream(tools, o.loadCpu);
  const started: Pair[] = [];
  const taps: TapReader[] = [];
  try {
    const running: Measured<TapRow>[] = [];
    let tapped: { row: TapRow; pair: Pair } | null = null;
    for (const name of [UNTAPPED, TAPPED]) {
      const row: TapRow = { name };
      rows.push(row);
      log(`${name}: starting a control plane and two proxies`);
      try {
        const pair = await startTrellisPair(tools, o.proxyCpu, o.loadCpu, upstream.port, pki);
        started.push(pair);
        await waitForRoute(pair, 'discovery', async () => true, 20_000);
        await checkTwoHopsMtls(row.name, pair);
        if (name === TAPPED) {
          taps.push(...(await attachTaps(row, pair)));
          tapped = { row, pair };
        }
        log(`${name}: ${row.tapCheck ?? 'answering over two hops with mTLS'}`);
        running.push({ row, target: pair, pids: pair.proxies.map((p) => p.process.pid) });
      } catch (err) {
        fail(row, err);
      }
    }
    const eventsBefore = taps.reduce((n, t) => n + t.events, 0);
    const dropsBefore = tapped && !tapped.row.error ? await dropCounts(tapped.pair) : null;
    await throughputPhase(o, tools, running);
    await latencyPhase(o, tools, running);
    if (tapped && dropsBefore && !tapped.row.error) {
      await new Promise((r) => setTimeout(r, 500)); // the last lines in flight
      const after = await dropCounts(tapped.pair);
      tapped.row.tapEvents = taps.reduce((n, t) => n + t.events, 0) - eventsBefore;
      tapped.row.tapRateCapped = after.rateCapped - dropsBefore.rateCapped;
      tapped.row.tapSlowConsumer = after.slow - dropsBefore.slow;
    }
  } finally {
    for (const t of taps) t.close();
    for (const pair of started) await pair.close();
    await upstream.close();
  }
}

async function main(): Promise<number> {
  const parsed = parseOptions(process.argv.slice(2), process.env);
  if (parsed === 'help') {
    process.stdout.write(USAGE + helpText());
    return 0;
  }
  const o = parsed;
  const tools = findTools(process.env);
  const startedAt = new Date();
  const loadAverage = loadavg();
  const estimate = 2 * (o.warmupS + o.durationS + o.latencyDurationS + 2 * o.rounds) + 20;
  log(`tap: about ${Math.ceil(estimate / 60)} min (${Math.round(estimate)} s of load)`);
  if (o.loadCpu !== undefined) pinSelf(o.loadCpu);
  const busyAtStart = await waitForQuiet(o.waitQuietS);
  const pki = makePki(join(targets.tempDir('pki'), 'pki'));
  const rows: TapRow[] = [];
  await measurePairs(o, tools, pki, rows);
  const ratios = tapRatios(rows);
  const report = {
    startedAt: startedAt.toISOString(),
    versions: { ...versions(tools), openssl: firstLine('openssl', ['version']) },
    settings: { ...o, outDir: undefined, opaque: undefined, proxies: undefined },
    maxRps: TAP_DEFAULT_MAX_RPS,
    rows,
    ratios,
    targets: judgeTap(ratios),
    loadAverage,
  };
  writeResults(
    o.outDir,
    'tap-latest',
    report,
    { startedAt, busyAtStart, warnings: tapWarnings(report) },
    tapMarkdown(report),
  );
  return 0;
}

runMain(main);
