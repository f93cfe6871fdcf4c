// `node bench/tracing.ts [--grpc]`: the tracing benchmark of issue 11, as ratios in one run. Two
// trellis two-hop pairs with mTLS (bench/two-hop/contenders.ts): one with tracing off, one whose
// proxies trace every request (`--trace-sample-ratio 1`) and export over OTLP/HTTP (or OTLP/gRPC
// with --grpc) to a collector in this process (bench/tracing/receiver.ts). Tracing is checked in
// force (trellis_trace_spans_exported_total grows on both proxies) before anything is measured.
// The collector: a sink that reads each export, counts its spans without decoding them and
// answers at once, in this process, pinned with the load generators to the CPU the proxies do
// not run on. Chosen so that the pair is charged for producing and exporting every span and for
// nothing a collector does with them (a real one runs elsewhere); the embedded control plane,
// which decodes and keeps spans, would put that work on the machine being measured. The report
// holds the spans the collector counted against those the proxies exported, and warns on any
// difference or drop.
// Throughput (wrk) and fixed-rate latency in the interleaved rounds of the two-hop table
// (bench/harness.ts); the ratio traced / untraced is held to "lose at most 15%", with the CPU per
// request beside it and the spans exported and dropped over the run.
// Writes bench/results/tracing-latest.{json,md}. How to read it: docs/benchmark.md.
import { loadavg } from 'node:os';
import { join } from 'node:path';
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
import { checkTwoHopsMtls, clientAdminOf, counter, waitForRoute } from './routes/pair-access.ts';
import { startBenchReceiver, type BenchReceiver } from './tracing/receiver.ts';
import {
  judgeTracing,
  TRACED,
  tracingMarkdown,
  tracingRatios,
  tracingWarnings,
  UNTRACED,
  type TracingRow,
} from './tracing/report.ts';
import * as targets from './targets.ts';
import { startTrellisPair, type Pair } from './two-hop/contenders.ts';
import { makePki, type Pki } from './two-hop/pki.ts';

const USAGE = `Usage: node bench/tracing.ts [--grpc] [options]   (tracing off against tracing on at ratio 1,
exporting over OTLP/HTTP, or OTLP/gRPC with --grpc; same options as bench/run.ts, --only and
--no-opaque are ignored)\n\n`;

const EXPORTED = 'trellis_trace_spans_exported_total';
const DROPPED = 'trellis_trace_spans_dropped_total';

/** Both proxies' admin listeners. */
function adminsOf(pair: Pair): string[] {
  return [clientAdminOf(pair), pair.serverAdmin!];
}

/** The export counters of both proxies, summed. */
async function exportCounts(pair: Pair) {
  let exported = 0;
  let queueFull = 0;
  let exportFailed = 0;
  for (const admin of adminsOf(pair)) {
    exported += await counter(admin, EXPORTED);
    queueFull += await counter(admin, DROPPED, { reason: 'queue_full' });
    exportFailed += await counter(admin, DROPPED, { reason: 'export_failed' });
  }
  return { exported, queueFull, exportFailed };
}

/** The pair answers over two hops with mTLS; for the traced pair, both proxies export spans. */
async function checkPair(row: TracingRow, pair: Pair, traced: boolean): Promise<void> {
  const exportedNow = async () => (await exportCounts(pair)).exported;
  // Spans leave in batches at most batchDelayMs (1 s) after they end: wait for a first export.
  await waitForRoute(
    pair,
    traced ? 'span export' : 'discovery',
    async () => !traced || (await exportedNow()) > 0,
    20_000,
  );
  const before = traced ? await exportedNow() : 0;
  await checkTwoHopsMtls(row.name, pair);
  if (traced) {
    const deadline = Date.now() + 10_000;
    let grew = 0;
    while ((grew = (await exportedNow()) - before) < 40 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 200));
    if (grew < 40)
      throw new Error(`${row.name}: only ${grew} spans exported for 20 requests over two proxies`);
    row.tracingCheck = `yes: ${EXPORTED} grew by ${grew} for 20 requests before measuring`;
  }
}

async function measurePairs(
  o: BenchOptions,
  tools: targets.Tools,
  pki: Pki,
  receiver: BenchReceiver,
  rows: TracingRow[],
): Promise<void> {
  const upstream = await targets.startUpstream(tools, o.loadCpu);
  const started: Pair[] = [];
  try {
    const running: Measured<TracingRow>[] = [];
    const tracing = ['--trace-collector', receiver.url, '--trace-sample-ratio', '1'];
    for (const [name, args] of [
      [UNTRACED, []],
      [TRACED, tracing],
    ] as const) {
      const row: TracingRow = { name };
      rows.push(row);
      log(`${name}: starting a control plane and two proxies`);
      try {
        const pair = await startTrellisPair(tools, o.proxyCpu, o.loadCpu, upstream.port, pki, args);
        started.push(pair);
        await checkPair(row, pair, args.length > 0);
        log(`${name}: ${row.tracingCheck ?? 'answering over two hops with mTLS'}`);
        running.push({ row, target: pair, pids: pair.proxies.map((p) => p.process.pid) });
      } catch (err) {
        fail(row, err);
      }
    }
    const traced = running.find((r) => r.row.name === TRACED);
    const before = traced && {
      ...(await exportCounts(traced.target as Pair)),
      requests: receiver.requests,
      bytes: receiver.bytes,
      spans: receiver.spans,
    };
    await throughputPhase(o, tools, running);
    await latencyPhase(o, tools, running);
    if (traced && before && !traced.row.error) {
      await new Promise((r) => setTimeout(r, 1500)); // the last batches
      const after = await exportCounts(traced.target as Pair);
      traced.row.spansExported = after.exported - before.exported;
      traced.row.spansDroppedQueueFull = after.queueFull - before.queueFull;
      traced.row.spansDroppedExportFailed = after.exportFailed - before.exportFailed;
      traced.row.exportRequests = receiver.requests - before.requests;
      traced.row.exportBytes = receiver.bytes - before.bytes;
      traced.row.spansReceived = receiver.spans - before.spans;
    }
  } finally {
    for (const pair of started) await pair.close();
    await upstream.close();
  }
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const grpc = argv.includes('--grpc');
  const parsed = parseOptions(
    argv.filter((a) => a !== '--grpc'),
    process.env,
  );
  if (parsed === 'help') {
    process.stdout.write(USAGE + helpText());
    return 0;
  }
  const o = parsed;
  const protocol = grpc ? 'grpc' : 'http/protobuf';
  const tools = findTools(process.env);
  const startedAt = new Date();
  const loadAverage = loadavg();
  const estimate = 2 * (o.warmupS + o.durationS + o.latencyDurationS + 2 * o.rounds) + 20;
  log(`tracing: about ${Math.ceil(estimate / 60)} min (${Math.round(estimate)} s of load)`);
  if (o.loadCpu !== undefined) pinSelf(o.loadCpu);
  const busyAtStart = await waitForQuiet(o.waitQuietS);
  const pki = makePki(join(targets.tempDir('pki'), 'pki'));
  const receiver = await startBenchReceiver(protocol);
  const rows: TracingRow[] = [];
  try {
    await measurePairs(o, tools, pki, receiver, rows);
  } finally {
    await receiver.close();
  }
  const ratios = tracingRatios(rows);
  const report = {
    startedAt: startedAt.toISOString(),
    versions: { ...versions(tools), openssl: firstLine('openssl', ['version']) },
    settings: { ...o, outDir: undefined, opaque: undefined, proxies: undefined },
    protocol: protocol === 'grpc' ? 'OTLP/gRPC' : 'OTLP/HTTP',
    rows,
    ratios,
    targets: judgeTracing(ratios),
    loadAverage,
  };
  const name = grpc ? 'tracing-grpc-latest' : 'tracing-latest';
  writeResults(
    o.outDir,
    name,
    report,
    { startedAt, busyAtStart, warnings: tracingWarnings(report) },
    tracingMarkdown(report),
  );
  return 0;
}

runMain(main);
