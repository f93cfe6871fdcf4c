// `node bench/routes.ts`: the routes benchmark of issue 10, as ratios in one run.
//  1. Two trellis two-hop pairs with mTLS (bench/two-hop/contenders.ts), one without routes and one
//     with an HTTPRoute of ten rules, each retrying 503 (attempts 2), on its Service; the load hits
//     the catch-all rule, last in precedence (bench/routes/route-files.ts). The route is checked in
//     force (trellis_route_requests_total grows on the client-side proxy) before anything is
//     measured. Throughput (wrk) and fixed-rate latency in the interleaved rounds of the two-hop
//     table (bench/harness.ts); the ratio routed / unrouted is held to "lose at most 10%".
//  2. A retry storm (bench/routes/storm.ts): a third pair in front of an upstream that answers 503
//     to everything, its route retrying 503 with attempts 3; what the upstream received over what
//     the client sent is held to 1.3x.
// Writes bench/results/routes-latest.{json,md}. How to read it: docs/benchmark.md.
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
import { checkTwoHopsMtls, clientAdminOf, counter, stateDirOf, waitForRoute } from './routes/pair-access.ts';
import {
  judgeRoutes,
  ROUTED,
  routedRatios,
  routesMarkdown,
  routesWarnings,
  UNROUTED,
} from './routes/report.ts';
import type { RoutesRow } from './routes/report.ts';
import { applyRoute, stormYaml, tenRulesYaml } from './routes/route-files.ts';
import { MIN_REQUESTS, runStorm, startFailingUpstream, type StormResult } from './routes/storm.ts';
import * as targets from './targets.ts';
import { SERVICE, startTrellisPair, type Pair } from './two-hop/contenders.ts';
import { makePki, type Pki } from './two-hop/pki.ts';

const USAGE = `Usage: node bench/routes.ts [options]   (the routes and retry-storm table; same options as
bench/run.ts, --only and --no-opaque are ignored)\n\n`;

const ROUTE_REQUESTS = 'trellis_route_requests_total';

/** Starts a trellis pair in front of `upstreamPort`; with `routeYaml`, that route in its state folder. */
async function startPair(
  o: BenchOptions,
  tools: targets.Tools,
  pki: Pki,
  upstreamPort: number,
  routeYaml?: string,
) {
  const pair = await startTrellisPair(tools, o.proxyCpu, o.loadCpu, upstreamPort, pki);
  try {
    if (routeYaml !== undefined) await applyRoute(stateDirOf(pair), routeYaml);
    return { pair, admin: clientAdminOf(pair) };
  } catch (err) {
    await pair.close();
    throw err;
  }
}

/** The pair answers over two hops with mTLS; for the routed pair, the route is in force. */
async function checkPair(row: RoutesRow, pair: Pair, admin: string, routed: boolean): Promise<void> {
  const routedNow = () => counter(admin, ROUTE_REQUESTS);
  await waitForRoute(
    pair,
    routed ? 'the 10-rule route' : 'discovery',
    async () => !routed || (await routedNow()) > 0,
    20_000,
  );
  const before = routed ? await routedNow() : 0;
  await checkTwoHopsMtls(row.name, pair);
  if (routed) {
    const grew = (await routedNow()) - before;
    if (grew < 20)
      throw new Error(`${row.name}: only ${grew} of 20 requests were routed: the route is not in force`);
    row.routeCheck = `yes: ${ROUTE_REQUESTS} grew by ${grew} for 20 requests before measuring`;
  }
}

async function measurePairs(
  o: BenchOptions,
  tools: targets.Tools,
  pki: Pki,
  rows: RoutesRow[],
): Promise<void> {
  const upstream = await targets.startUpstream(tools, o.loadCpu);
  const started: { pair: Pair; admin: string }[] = [];
  try {
    const running: Measured<RoutesRow>[] = [];
    for (const [name, yaml] of [
      [UNROUTED, undefined],
      [ROUTED, tenRulesYaml(SERVICE)],
    ] as const) {
      const row: RoutesRow = { name };
      rows.push(row);
      log(`${name}: starting a control plane and two proxies`);
      try {
        const s = await startPair(o, tools, pki, upstream.port, yaml);
        started.push(s);
        await checkPair(row, s.pair, s.admin, yaml !== undefined);
        log(`${name}: ${row.routeCheck ?? 'answering over two hops with mTLS'}`);
        running.push({ row, target: s.pair, pids: s.pair.proxies.map((p) => p.process.pid) });
      } catch (err) {
        fail(row, err);
      }
    }
    const routed = started[1];
    const counts = async () =>
      routed && {
        routed: await counter(routed.admin, ROUTE_REQUESTS),
        retried: await counter(routed.admin, 'trellis_retries_total', { outcome: 'retried' }),
      };
    const before = await counts();
    await throughputPhase(o, tools, running);
    await latencyPhase(o, tools, running);
    const after = await counts();
    const routedRow = rows.find((r) => r.name === ROUTED);
    if (before && after && routedRow && !routedRow.error) {
      routedRow.routedRequests = after.routed - before.routed;
      routedRow.retried = after.retried - before.retried;
    }
  } finally {
    for (const s of started) await s.pair.close();
    await upstream.close();
  }
}

async function measureStorm(
  o: BenchOptions,
  tools: targets.Tools,
  pki: Pki,
  chunkS: number,
  quick: boolean,
): Promise<StormResult> {
  const failing = await startFailingUpstream();
  try {
    log('retry storm: starting a pair in front of an upstream that answers 503 to everything');
    const { pair, admin } = await startPair(o, tools, pki, failing.port, stormYaml(SERVICE));
    try {
      log(`retry storm: wrk -c${o.connections} in ${chunkS} s runs until ${MIN_REQUESTS} requests`);
      return await runStorm(o, tools, pair, admin, failing, chunkS, quick);
    } finally {
      await pair.close();
    }
  } finally {
    await failing.close();
  }
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const parsed = parseOptions(argv, process.env);
  if (parsed === 'help') {
    process.stdout.write(USAGE + helpText());
    return 0;
  }
  const o = parsed;
  const quick = argv.includes('--quick');
  const stormS = quick ? 3 : 10;
  const tools = findTools(process.env);
  const startedAt = new Date();
  const loadAverage = loadavg();
  const estimate = 2 * (o.warmupS + o.durationS + o.latencyDurationS + 2 * o.rounds) + stormS + 20;
  log(`routes: about ${Math.ceil(estimate / 60)} min (${Math.round(estimate)} s of load)`);
  if (o.loadCpu !== undefined) pinSelf(o.loadCpu);
  const busyAtStart = await waitForQuiet(o.waitQuietS);
  const pki = makePki(join(targets.tempDir('pki'), 'pki'));
  const rows: RoutesRow[] = [];
  await measurePairs(o, tools, pki, rows);
  let storm: StormResult | undefined;
  let stormError: string | undefined;
  try {
    storm = await measureStorm(o, tools, pki, stormS, quick);
  } catch (err) {
    stormError = (err as Error).message;
    log(`retry storm: ERROR ${stormError}`);
  }
  const ratios = routedRatios(rows);
  const report = {
    startedAt: startedAt.toISOString(),
    versions: { ...versions(tools), openssl: firstLine('openssl', ['version']) },
    settings: { ...o, outDir: undefined, opaque: undefined, proxies: undefined, stormS },
    rows,
    ratios,
    storm,
    stormError,
    targets: judgeRoutes(ratios, storm),
    loadAverage,
  };
  writeResults(
    o.outDir,
    'routes-latest',
    report,
    { startedAt, busyAtStart, warnings: routesWarnings(report) },
    routesMarkdown(report),
  );
  return 0;
}

runMain(main);
