// `--replay FILE`: sends one reproducer's input again (its stored plans, or its batch made again
// from the seed when it was too big to store) to the listener of its lane, `--repeat` times, then
// judges as the campaign would; says whether the finding reproduces, exits 1 when anything was found.
import { readFileSync } from 'node:fs';
import { judgeBatch, log, sendBatch, connectedBy } from './batch.ts';
import { before } from './checks.ts';
import { FindingLog, loadPlan, type Reproducer } from './findings.ts';
import { Judge } from './judge.ts';
import { LANES, allowedIds, makeBatch, type BatchSetup } from './lanes.ts';
import type { Mesh } from './mesh.ts';
import type { FuzzOptions } from './options.ts';
import type { Batch } from './plan.ts';

export async function replay(
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
