// `npm run fuzz`: the fuzz campaign of issue 9 section 4. Starts the mesh (mesh.ts), then runs
// batches until --inputs or --seconds: each batch is one lane's generated inputs (lanes.ts) sent
// to one listener (send.ts), after which the app's records (judge.ts) and the proxies' health
// (checks.ts) are judged; findings are written as reproducers (findings.ts) and a mesh left broken
// is restarted. Ends with a summary (inputs, time, memory high-water and bounds, findings) and
// exits 1 when anything was found. `--replay FILE` sends one reproducer again (replay.ts).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { stopAll, killAllNow } from '../bench/processes.ts';
import { captureClientHello } from '../test/helpers/tls-hello.ts';
import { connectedBy, DETECT_TIMEOUT_MS, judgeBatch, log, sendBatch, waitHealthy } from './batch.ts';
import { before } from './checks.ts';
import { FindingLog, type Reproducer } from './findings.ts';
import { Judge } from './judge.ts';
import { allowedIds, laneFor, makeBatch, type BatchSetup, type Lane } from './lanes.ts';
import { startMesh, type Mesh } from './mesh.ts';
import { netnsUnavailable, rerunInNetns } from './netns.ts';
import { parseOptions, USAGE, type FuzzOptions } from './options.ts';
import { replay } from './replay.ts';
import { add, report, sum, trackMemory, type Totals } from './report.ts';
import { emptyStats } from './send.ts';

async function capturedHellos(): Promise<Buffer[]> {
  const variants = [
    { ALPNProtocols: ['trellis-h2h1/1'], servername: 'server.default' },
    { ALPNProtocols: ['trellis-tcp/1', 'trellis-h2/1'] },
    { ALPNProtocols: ['h2', 'http/1.1'], servername: 'localhost' },
    {},
  ];
  return Promise.all(variants.map((v) => captureClientHello({ ...v, rejectUnauthorized: false })));
}

async function campaign(o: FuzzOptions, mesh: Mesh, setup: BatchSetup, runDir: string): Promise<number> {
  const judge = new Judge();
  mesh.app.onSeen = (s) => judge.seen(s);
  mesh.bystander.onHit = (first, fromPort) => judge.bystanderHit(first, connectedBy(mesh, fromPort));
  const findings = new FindingLog(runDir, o.seed, mesh.ports);
  const totals: Totals = {
    byFamily: new Map(),
    byLane: new Map(),
    batches: 0,
    restarts: 0,
    seconds: { send: 0, check: 0, restart: 0 },
    memoryHigh: new Map(),
  };
  const only = (l: Lane) => o.lanes === null || o.lanes.test(l.name);
  const started = Date.now();
  let lastReport = started;
  let stopping = false;
  const recent: string[] = [];
  // A lane whose batch broke the mesh again in a way already recorded runs half as often (down to
  // a tenth): the finding is on disk, and each restart costs seconds the other lanes can use.
  const damping = new Map<string, number>();
  process.once('SIGINT', () => (stopping = true));
  for (let index = 0; !stopping; index++) {
    const all = sum(totals);
    if (all.inputs >= o.inputs || Date.now() - started >= o.seconds * 1000) break;
    const lane = laneFor(o.seed, index, only, damping);
    const batch = makeBatch(setup, index, lane);
    judge.begin(index, {
      lane: lane.name,
      allowedIds: new Set(allowedIds(lane, mesh.ids)),
      bystanderForbidden: lane.inboundSide,
    });
    const b = before(mesh);
    const killed = new Set<string>();
    const batchStart = Date.now();
    const { stats, peaks } = await sendBatch(mesh, lane, batch, o, killed, judge);
    const family = totals.byFamily.get(lane.family) ?? emptyStats();
    add(family, stats);
    totals.byFamily.set(lane.family, family);
    totals.batches++;
    const checkStart = Date.now();
    totals.seconds.send += (checkStart - batchStart) / 1000;
    const check = await judgeBatch(mesh, batch, b, o, judge, killed, findings, recent);
    totals.seconds.check += (Date.now() - checkStart) / 1000;
    recent.unshift(`batch ${index} ${lane.name}${lane.family === 'flood' ? ` ${batch.plans[0]?.note}` : ''}`);
    recent.length = Math.min(recent.length, 4);
    const perLane = totals.byLane.get(lane.name) ?? { batches: 0, inputs: 0, flood: 0, seconds: 0 };
    perLane.batches++;
    perLane.inputs += stats.inputs;
    perLane.flood += stats.flood;
    perLane.seconds += (Date.now() - batchStart) / 1000;
    totals.byLane.set(lane.name, perLane);
    trackMemory(totals, check, peaks, mesh);
    if (check.restart || killed.size > 0) {
      if (!check.anyNew) damping.set(lane.name, Math.max(0.1, (damping.get(lane.name) ?? 1) / 2));
      totals.restarts++;
      log(`restarting both proxies after batch ${index} (${lane.name})`);
      const restartStart = Date.now();
      await mesh.restart();
      const bad = await waitHealthy(mesh, 20_000);
      if (bad.length > 0) log(`after the restart, still failing: ${bad.join('; ')}`);
      totals.seconds.restart += (Date.now() - restartStart) / 1000;
    }
    if (Date.now() - lastReport > 15_000) {
      lastReport = Date.now();
      const s = sum(totals);
      const secs = (Date.now() - started) / 1000;
      const mem = [...totals.memoryHigh].map(([r, m]) => `${r} ${m.rssMb} MB`).join(', ');
      log(
        `${Math.round(secs)} s: ${s.inputs.toLocaleString('en-US')} inputs (${Math.round(s.inputs / secs)}/s), ${s.flood.toLocaleString('en-US')} flood frames, ${totals.batches} batches, ${findings.all().length} findings; RSS high-water ${mem}`,
      );
    }
  }
  const seconds = (Date.now() - started) / 1000;
  return report(o, mesh, totals, findings, seconds, runDir);
}

async function main(): Promise<number> {
  let o: FuzzOptions;
  try {
    o = parseOptions(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (o.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (!o.inNetns && o.netns) {
    const why = netnsUnavailable();
    if (why === null) return rerunInNetns(['--in-netns', '--seed', String(o.seed)]);
    log(`not isolated (${why}): the guard keeps every request to the campaign's own ports`);
  }
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
  const runDir = join(o.results, o.replay !== null ? `${stamp}-replay` : `${stamp}-seed${o.seed}`);
  log(`seed ${o.seed}; results in ${runDir}`);
  const mesh = await startMesh({
    basePort:
      o.replay !== null ? (JSON.parse(readFileSync(o.replay, 'utf8')) as Reproducer).ports.app : o.basePort,
  });
  try {
    log(
      `mesh up: proxies run from ${mesh.launcher}; ports ${JSON.stringify(mesh.listeners)}${mesh.fixedPorts ? '' : ' (not the fixed ones)'}`,
    );
    const bad = await waitHealthy(mesh, 30_000);
    if (bad.length > 0) {
      log(`the mesh does not serve its known-good requests before any fuzzing: ${bad.join('; ')}`);
      return 2;
    }
    const setup: BatchSetup = {
      seed: o.seed,
      ports: mesh.ports,
      ids: mesh.ids,
      detectTimeoutMs: DETECT_TIMEOUT_MS,
      capturedHellos: await capturedHellos(),
      floodScale: 1,
      guard: !o.inNetns,
    };
    if (o.replay !== null) return await replay(o, mesh, setup, runDir, o.replay);
    return await campaign(o, mesh, setup, runDir);
  } finally {
    await mesh.close();
    await stopAll();
  }
}

process.on('exit', killAllNow);
process.once('SIGTERM', () => {
  killAllNow();
  process.exit(143);
});
main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`fuzz: ${(err as Error).stack ?? String(err)}\n`);
    killAllNow();
    process.exit(2);
  },
);
