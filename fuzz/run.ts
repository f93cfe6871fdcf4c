// `npm run fuzz`: the fuzz campaign of issue 9 section 4. Starts the mesh (mesh.ts), then runs
// batches until --inputs or --seconds: each batch is one lane's generated inputs (lanes.ts) sent
// to one listener (send.ts), after which the app's records (judge.ts) and the proxies' health
// (checks.ts) are judged; findings are written as reproducers (findings.ts) and a mesh left broken
// is restarted. Ends with a summary (inputs, time, memory high-water and bounds, findings) and
// exits 1 when anything was found. `--replay FILE` sends one reproducer again.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stopAll, killAllNow } from '../bench/processes.ts';
import { captureClientHello } from '../test/helpers/tls-hello.ts';
import { before, breaksMesh, checkAfterBatch, type CheckResult } from './checks.ts';
import { FindingLog, loadPlan, type Reproducer } from './findings.ts';
import { Judge, type Finding } from './judge.ts';
import { LANES, allowedIds, concurrencyOf, laneFor, makeBatch, type BatchSetup, type Lane } from './lanes.ts';
import { watchMemory } from './memory.ts';
import { startMesh, type Mesh } from './mesh.ts';
import { netnsUnavailable, rerunInNetns } from './netns.ts';
import { socketOwner } from './socket-owner.ts';
import { parseOptions, USAGE, type FuzzOptions } from './options.ts';
import type { Batch, Family } from './plan.ts';
import { probeAll } from './probes.ts';
import { emptyStats, runPlans, type SendStats } from './send.ts';

const DETECT_TIMEOUT_MS = 3000; // the proxies run with the default detect.timeoutMs
const log = (line: string) => process.stdout.write(`[fuzz] ${line}\n`);

interface Totals {
  readonly byFamily: Map<Family, SendStats>;
  readonly byLane: Map<string, { batches: number; inputs: number; flood: number; seconds: number }>;
  batches: number;
  restarts: number;
  /** Where the time went: sending batches, checking after them, restarting the mesh. */
  readonly seconds: { send: number; check: number; restart: number };
  readonly memoryHigh: Map<string, { rssMb: number; privateMb: number; pssMb: number }>;
}

function add(into: SendStats, s: SendStats): void {
  for (const k of Object.keys(into) as (keyof SendStats)[]) into[k] += s[k];
}

function sum(totals: Totals): SendStats {
  const all = emptyStats();
  for (const s of totals.byFamily.values()) add(all, s);
  return all;
}

/** Which proxy made a connection to the bystander from `fromPort`. */
function connectedBy(mesh: Mesh, fromPort: number): string {
  const proxies = mesh.proxies();
  const pid = socketOwner(
    fromPort,
    mesh.ports.bystander,
    proxies.map((p) => p.process.pid),
  );
  const p = proxies.find((x) => x.process.pid === pid);
  return p === undefined ? 'unknown process' : `${p.role}-side proxy`;
}

async function waitHealthy(mesh: Mesh, timeoutMs: number): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const bad = (await probeAll(mesh)).filter((r) => !r.ok).map((r) => `${r.name}: ${r.problem}`);
    if (bad.length === 0 || Date.now() > deadline) return bad;
    await new Promise((r) => setTimeout(r, 300));
  }
}

async function sendBatch(
  mesh: Mesh,
  lane: Lane,
  batch: Batch,
  o: FuzzOptions,
  killed: Set<string>,
  judge: Judge,
) {
  const watchdog = watchMemory(
    () => mesh.proxies().map((p) => p.process.pid),
    o.killRssMb,
    (pid, mb) => {
      const p = mesh.proxies().find((x) => x.process.pid === pid);
      if (p === undefined) return;
      killed.add(p.role);
      p.process.child.kill('SIGKILL');
      judge.add({
        kind: 'memory-bound',
        batch: batch.index,
        lane: batch.lane,
        plan: null,
        summary: `the ${p.role}-side proxy reached ${Math.round(mb)} MB RSS during ${batch.lane} ${batch.family === 'flood' ? batch.plans[0]?.note : ''}; killed at --kill-rss-mb ${o.killRssMb}`,
        signature: `memory-bound|${p.role}|${batch.lane}|killed`,
        detail: { rssMb: mb },
      });
    },
  );
  const { stats, refusals } = await runPlans(batch.plans, {
    port: mesh.listeners[lane.listener],
    tls: mesh.clientTls,
    concurrency: concurrencyOf(lane),
    lingerMs: 60,
    planTimeoutMs:
      lane.family === 'stall' ? DETECT_TIMEOUT_MS + 6000 : lane.family === 'flood' ? 15_000 : 5000,
  });
  watchdog.stop();
  for (const r of refusals) {
    judge.add({
      kind: 'refused-valid-http1',
      batch: batch.index,
      lane: batch.lane,
      plan: r.plan,
      summary: `${batch.lane}: the proxy refused a valid request with ${r.status} (${r.reason.slice(0, 100)})`,
      signature: `refused-valid-http1|${batch.lane}`,
      variant: `${r.status} ${r.reason.replace(/\s+/g, ' ').slice(0, 60)}`,
      detail: { request: r.request, status: r.status, reason: r.reason },
    });
  }
  await new Promise((r) => setTimeout(r, 100)); // stragglers reach the app
  return { stats, peaks: watchdog.peaks() };
}

/**
 * Judges a finished batch; returns the check result (findings already recorded) and whether a
 * finding that broke the mesh was new.
 */
async function judgeBatch(
  mesh: Mesh,
  batch: Batch,
  b: ReturnType<typeof before>,
  o: FuzzOptions,
  judge: Judge,
  killed: Set<string>,
  findings: FindingLog,
  recent: readonly string[],
): Promise<CheckResult & { anyNew: boolean }> {
  const check = await checkAfterBatch(mesh, batch, b, o, recent);
  let anyNew = false;
  const all: Finding[] = [...judge.take(), ...check.findings].filter(
    (f) => !(f.kind === 'crash' && [...killed].some((role) => f.signature.startsWith(`crash|${role}|`))),
  );
  for (const f of all) {
    const { entry, isNew } = findings.record(f, batch);
    if (isNew) log(`FINDING ${entry.kind}: ${entry.summary}\n         reproducer: ${entry.file}`);
    if (isNew && breaksMesh(f.kind)) anyNew = true;
  }
  return { ...check, anyNew };
}

function trackMemory(
  totals: Totals,
  check: CheckResult,
  peaks: ReadonlyMap<number, number>,
  mesh: Mesh,
): void {
  for (const [role, m] of check.memory) {
    const pid = mesh.proxies().find((p) => p.role === role)?.process.pid ?? -1;
    const high = totals.memoryHigh.get(role) ?? { rssMb: 0, privateMb: 0, pssMb: 0 };
    high.rssMb = Math.max(high.rssMb, m.rssMb, m.hwmMb, peaks.get(pid) ?? 0);
    high.privateMb = Math.max(high.privateMb, m.privateMb);
    high.pssMb = Math.max(high.pssMb, m.pssMb);
    totals.memoryHigh.set(role, high);
  }
}

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

function report(
  o: FuzzOptions,
  mesh: Mesh,
  totals: Totals,
  findings: FindingLog,
  seconds: number,
  runDir: string,
): number {
  const all = sum(totals);
  const found = findings.all();
  const summary = {
    seed: o.seed,
    seconds: Math.round(seconds),
    inputs: all.inputs,
    floodFrames: all.flood,
    connections: all.connections,
    batches: totals.batches,
    restarts: totals.restarts,
    secondsSpent: totals.seconds,
    launcher: mesh.launcher,
    isolated: o.inNetns,
    bounds: { maxRssMb: o.maxRssMb, maxPrivateMb: o.maxPrivateMb },
    memoryHighWater: Object.fromEntries(totals.memoryHigh),
    byFamily: Object.fromEntries(totals.byFamily),
    byLane: Object.fromEntries(totals.byLane),
    findings: found,
  };
  mkdirSync(runDir, { recursive: true });
  writeFileSync(join(runDir, 'summary.json'), JSON.stringify(summary, null, 2) + '\n');
  log(
    `done in ${Math.round(seconds)} s: ${all.inputs.toLocaleString('en-US')} inputs (+${all.flood.toLocaleString('en-US')} flood frames) over ${all.connections.toLocaleString('en-US')} connections, ${totals.batches} batches, ${totals.restarts} restarts, seed ${o.seed}`,
  );
  const t = totals.seconds;
  log(
    `  time: ${Math.round(t.send)} s sending, ${Math.round(t.check)} s checking, ${Math.round(t.restart)} s restarting`,
  );
  for (const [family, s] of totals.byFamily)
    log(
      `  ${family.padEnd(7)} ${s.inputs.toLocaleString('en-US').padStart(10)} inputs ${s.flood > 0 ? `+${s.flood.toLocaleString('en-US')} flood frames` : ''}`,
    );
  for (const [name, l] of [...totals.byLane].sort()) {
    const rate = Math.round((l.inputs + l.flood) / Math.max(0.001, l.seconds));
    log(
      `    ${name.padEnd(36)} ${String(l.batches).padStart(4)} batches ${l.inputs.toLocaleString('en-US').padStart(9)} inputs ${l.flood > 0 ? `+${l.flood.toLocaleString('en-US')} flood ` : ''}${Math.round(l.seconds)} s (${rate}/s)`,
    );
  }
  for (const [role, m] of totals.memoryHigh)
    log(
      `  ${role}-side proxy memory high-water: RSS ${m.rssMb} MB (bound ${o.maxRssMb}), private ${m.privateMb} MB (bound ${o.maxPrivateMb}), PSS ${m.pssMb} MB`,
    );
  if (all.inputs < o.inputs)
    log(
      `  the time limit came first: ${all.inputs.toLocaleString('en-US')} of ${o.inputs.toLocaleString('en-US')} inputs`,
    );
  log(found.length === 0 ? 'no findings' : `${found.length} distinct finding(s):`);
  for (const f of found) {
    const variants = f.variants.length > 0 ? ` (variants: ${f.variants.join(' ')})` : '';
    log(`  [${f.kind}] x${f.count} ${f.summary}${variants}\n      ${f.file}`);
  }
  log(`summary: ${join(runDir, 'summary.json')}`);
  return found.length === 0 ? 0 : 1;
}

async function replay(
  o: FuzzOptions,
  mesh: Mesh,
  setup: BatchSetup,
  runDir: string,
  file: string,
): Promise<number> {
  const r = JSON.parse(readFileSync(file, 'utf8')) as Reproducer;
  const lane = LANES.find((l) => l.name === r.lane);
  if (lane === undefined || r.batch === null) throw new Error(`${file}: no lane or batch to replay`);
  if (JSON.stringify(r.ports) !== JSON.stringify(mesh.ports))
    log(
      `note: the ports differ from the run's (${JSON.stringify(r.ports)}); inputs that name ports may not replay exactly`,
    );
  const plans = r.plans?.map(loadPlan) ?? makeBatch({ ...setup, seed: r.seed }, r.batch, lane).plans;
  const batch: Batch = {
    index: r.batch,
    lane: lane.name,
    listener: lane.listener,
    family: lane.family,
    plans,
  };
  const judge = new Judge();
  mesh.app.onSeen = (s) => judge.seen(s);
  mesh.bystander.onHit = (first, fromPort) => judge.bystanderHit(first, connectedBy(mesh, fromPort));
  judge.begin(r.batch, {
    lane: lane.name,
    allowedIds: new Set(allowedIds(lane, mesh.ids)),
    bystanderForbidden: lane.inboundSide,
  });
  log(
    `replaying ${file}: ${r.kind} (${r.summary}); ${plans.length} connection(s) to ${lane.listener} over ${lane.channel}`,
  );
  const findings = new FindingLog(runDir, r.seed, mesh.ports);
  const b = before(mesh);
  const killed = new Set<string>();
  for (let i = 0; i < o.repeat && mesh.proxies().every((p) => p.ended() === null); i++) {
    await sendBatch(mesh, lane, batch, o, killed, judge);
  }
  await judgeBatch(mesh, batch, b, o, judge, killed, findings, []);
  const found = findings.all();
  const same = found.some((f) => f.signature === r.signature);
  log(`${same ? 'it reproduces' : 'it does not reproduce'}: ${r.signature}`);
  for (const f of found.filter((x) => x.signature !== r.signature))
    log(`  also found: [${f.kind}] ${f.summary}`);
  return found.length === 0 ? 0 : 1;
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
