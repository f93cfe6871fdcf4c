// `node bench/two-hop.ts`: the two-hop mTLS benchmark of issue 4. The path a meshed request takes,
// load -> proxy -> mutual TLS -> proxy -> app, measured for trellis (the product path: control
// plane, discovery, fixed identities) against haproxy and nginx doing the same two hops with mTLS,
// and direct (load -> app) as the latency floor; same measurements and interleaved rounds as the
// one-hop table (bench/run.ts, shared loop in bench/harness.ts). Certificates are made with openssl
// at the start (bench/two-hop/pki.ts); each contender's mTLS is checked before it is measured.
// Writes bench/results/two-hop-latest.{json,md}. How to read it: docs/benchmark.md.
import { spawn } from 'node:child_process';
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
import { checkAnswers } from './measure.ts';
import { findTools, helpText, parseOptions, type BenchOptions } from './options.ts';
import { pinSelf, sampleRss, statusKb, treeMemoryMb } from './processes.ts';
import { compareHttp } from './report.ts';
import * as targets from './targets.ts';
import { startHaproxyPair, startNginxPair, startTrellisPair, type Pair } from './two-hop/contenders.ts';
import { checkSecondHop, fetchMetrics, trellisMtls } from './two-hop/mtls-check.ts';
import { makePki, type Pki } from './two-hop/pki.ts';
import {
  judgeTwoHop,
  SECOND_HOP,
  twoHopMarkdown,
  twoHopWarnings,
  type NodeFloor,
  type TwoHopRow,
} from './two-hop/report.ts';

type Sampler = { stop(): number; peakPrivateMb(): number };

interface Running extends Measured<TwoHopRow> {
  readonly samplers: { readonly pid: number; readonly sampler: Sampler }[];
}

const USAGE = `Usage: node bench/two-hop.ts [options]   (the two-hop mTLS table; same options as bench/run.ts,
--no-opaque is ignored)\n\n`;

/** Until trellis answers GET / with 200 (discovery learns the service a moment after it is written). */
async function waitForAnswers(t: targets.Target, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await checkAnswers(t);
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

/** trellis: the server-side proxy's metrics after a few requests through the pair. */
async function checkTrellis(row: TwoHopRow, pair: Pair): Promise<void> {
  await waitForAnswers(pair, 15_000);
  for (let i = 0; i < 20; i++) await checkAnswers(pair);
  const m = trellisMtls(await fetchMetrics(pair.serverAdmin!));
  if (m.inboundRequests === 0) {
    throw new Error('trellis: the server-side proxy received no request: the load does not take two hops');
  }
  row.mtls = m.summary;
  row.mtlsVerified = m.verified;
}

async function startContender(
  o: BenchOptions,
  tools: targets.Tools,
  name: string,
  pki: Pki,
  upstream: number,
) {
  if (name === 'haproxy') return startHaproxyPair(tools, o.proxyCpu, upstream, pki);
  if (name === 'nginx') return startNginxPair(tools, o.proxyCpu, upstream, pki);
  return startTrellisPair(tools, o.proxyCpu, o.loadCpu, upstream, pki);
}

/** Starts every contender and checks its second hop; one that fails keeps its row with the error. */
async function startAll(o: BenchOptions, tools: targets.Tools, pki: Pki, upstream: targets.Target) {
  const rows: TwoHopRow[] = [];
  const running: Running[] = [];
  const pairs: Pair[] = [];
  for (const name of o.proxies) {
    const row: TwoHopRow = { name, secondHop: SECOND_HOP[name] ?? '-' };
    rows.push(row);
    if (name === 'direct') {
      running.push({ row, target: upstream, pids: [], samplers: [] });
      continue;
    }
    log(`${name}: starting two proxies`);
    let pair: Pair | undefined;
    try {
      pair = await startContender(o, tools, name, pki, upstream.port);
      pairs.push(pair);
      row.proxies = pair.proxies.map((p) => ({ role: p.role, pid: p.process.pid }));
      if (name === 'trellis') await checkTrellis(row, pair);
      else row.mtls = await checkSecondHop(name, pair.secondHop.host, pair.secondHop.port, pki);
      log(`${name}: mtls ${row.mtls}`);
      // Sampling starts after the checks; the kernel's VmHWM still covers the start (finishMemory).
      const samplers = pair.proxies.map((p) => ({ pid: p.process.pid, sampler: sampleRss(p.process.pid) }));
      running.push({ row, target: pair, pids: samplers.map((s) => s.pid), samplers });
    } catch (err) {
      fail(row, err);
    }
  }
  return { rows, running, pairs };
}

function finishMemory(r: Running): void {
  for (const { pid, sampler } of r.samplers) {
    const m = r.row.proxies?.find((p) => p.pid === pid);
    if (!m) continue;
    m.peakRssMb = Math.max(sampler.stop(), treeMemoryMb(pid).hwmMb);
    m.peakPrivateMb = sampler.peakPrivateMb();
  }
  // The pair's total, for the ratio to haproxy's pair.
  if (r.row.proxies) r.row.peakRssMb = r.row.proxies.reduce((n, p) => n + (p.peakRssMb ?? 0), 0);
}

/** What the server-side trellis proxy received, as its request counters by protocol say. */
function secondHopProtocol(h2: number, all: number, meshConnections: number): string {
  // Over the mesh, HTTP/1 requests cross as HTTP/2 streams (trellis-h2h1/1) and are counted as the
  // HTTP/1 the app gets; mTLS connections on the server side mean that path was taken.
  if (meshConnections > 0) return 'HTTP/1 as HTTP/2 streams (trellis-h2h1/1)';
  if (h2 === all) return 'HTTP/2';
  if (h2 === 0) return 'HTTP/1.1 (no HTTP/2 between the proxies yet)';
  return `HTTP/2 for ${h2.toLocaleString('en-US')} of ${all.toLocaleString('en-US')} requests`;
}

/** trellis at the end: mTLS and inbound requests again, after every round. */
async function finalTrellisCheck(r: Running, pair: Pair | undefined): Promise<void> {
  if (!pair?.serverAdmin || r.row.error) return;
  try {
    const m = trellisMtls(await fetchMetrics(pair.serverAdmin));
    const { inboundRequests, inboundH2Requests, meshConnections } = m;
    r.row.serverMetrics = { inboundRequests, inboundH2Requests, meshConnections };
    const security =
      m.verified === true ? 'over mTLS' : m.verified === false ? 'plaintext' : 'mTLS not verified';
    r.row.secondHop = `${secondHopProtocol(inboundH2Requests, inboundRequests, meshConnections ?? 0)}, ${security} (server-side metrics)`;
    r.row.mtls = m.summary;
    r.row.mtlsVerified = m.verified;
  } catch (err) {
    log(`trellis: cannot read the server-side proxy's metrics at the end: ${(err as Error).message}`);
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
  const estimate = o.proxies.length * (o.warmupS + o.durationS + o.latencyDurationS + 2 * o.rounds);
  log(`two-hop mTLS: about ${Math.ceil(estimate / 60)} min (${Math.round(estimate)} s of load)`);
  if (o.proxyCpu === undefined) log('fewer than 2 CPUs: processes are not pinned, numbers are rough');
  if (o.loadCpu !== undefined) pinSelf(o.loadCpu);
  const busyAtStart = await waitForQuiet(o.waitQuietS);
  const pki = makePki(join(targets.tempDir('pki'), 'pki'));
  log(`certificates made (root, issuer, ${pki.client.spiffeId}, ${pki.server.spiffeId})`);
  const upstream = await targets.startUpstream(tools, o.loadCpu);
  let rows: TwoHopRow[] = [];
  try {
    const started = await startAll(o, tools, pki, upstream);
    rows = started.rows;
    try {
      await throughputPhase(o, tools, started.running);
      await latencyPhase(o, tools, started.running);
      for (const r of started.running) {
        if (r.row.name === 'trellis')
          await finalTrellisCheck(
            r,
            started.pairs.find((p) => p.name === 'trellis'),
          );
        if (!r.row.error) finishMemory(r);
      }
      const control = started.pairs.find((p) => p.controlPlane)?.controlPlane;
      const trellisRow = rows.find((r) => r.name === 'trellis');
      if (control && trellisRow) trellisRow.controlPlanePeakRssMb = treeMemoryMb(control.pid).hwmMb;
    } finally {
      for (const r of started.running) for (const s of r.samplers) s.sampler.stop();
      for (const p of started.pairs) await p.close();
    }
  } finally {
    await upstream.close();
  }
  compareHttp(rows);
  const nodeFloor = await measureNodeFloor(tools.node);
  const report = {
    startedAt: startedAt.toISOString(),
    versions: { ...versions(tools), openssl: firstLine('openssl', ['version']) },
    settings: { ...o, outDir: undefined, opaque: undefined },
    rows,
    targets: judgeTwoHop(rows),
    nodeFloor,
  };
  writeResults(
    o.outDir,
    'two-hop-latest',
    report,
    { startedAt, busyAtStart, warnings: twoHopWarnings(rows) },
    twoHopMarkdown(report),
  );
  return 0;
}

/**
 * What Node itself occupies on this machine, as the context of the proxies' RSS: a process of the
 * same node binary with the proxy's flags that runs nothing, its RSS and the part of it that is
 * the binary's own (file-backed) pages, after a second.
 */
async function measureNodeFloor(node: string): Promise<NodeFloor | undefined> {
  const child = spawn(node, [...targets.TRELLIS_NODE_FLAGS, '-e', 'setInterval(() => {}, 1000)'], {
    stdio: 'ignore',
  });
  try {
    await new Promise((r) => setTimeout(r, 1000));
    const rssKb = child.pid === undefined ? 0 : statusKb(child.pid, 'VmRSS');
    if (rssKb === 0) return undefined; // no /proc: not reported
    return { rssMb: rssKb / 1024, fileMb: statusKb(child.pid!, 'RssFile') / 1024 };
  } finally {
    child.kill();
  }
}

runMain(main);
