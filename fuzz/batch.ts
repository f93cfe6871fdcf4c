// One batch's pipeline, shared by the campaign (run.ts) and replays (replay.ts): send the plans to
// their listener while a watchdog watches the proxies' memory, turn refusals of valid requests
// into findings, then judge (the app's and bystander's records, checks.ts) and record what was
// found. Also the mesh's health wait and the bystander's culprit lookup.
import { before, breaksMesh, checkAfterBatch, type Bounds, type CheckResult } from './checks.ts';
import type { FindingLog } from './findings.ts';
import type { Finding, Judge } from './judge.ts';
import { concurrencyOf, type Lane } from './lanes.ts';
import { watchMemory } from './memory.ts';
import type { Mesh } from './mesh.ts';
import type { Batch } from './plan.ts';
import { probeAll } from './probes.ts';
import { runPlans } from './send.ts';
import { socketOwner } from './socket-owner.ts';

/** The proxies run with the default detect.timeoutMs. */
export const DETECT_TIMEOUT_MS = 3000;
export const log = (line: string): void => {
  process.stdout.write(`[fuzz] ${line}\n`);
};

/** Which proxy made a connection to the bystander from `fromPort`. */
export function connectedBy(mesh: Mesh, fromPort: number): string {
  const proxies = mesh.proxies();
  const pid = socketOwner(
    fromPort,
    mesh.ports.bystander,
    proxies.map((p) => p.process.pid),
  );
  const p = proxies.find((x) => x.process.pid === pid);
  return p === undefined ? 'unknown process' : `${p.role}-side proxy`;
}

/** Until every probe passes (or the time is up); returns the ones still failing. */
export async function waitHealthy(mesh: Mesh, timeoutMs: number): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const bad = (await probeAll(mesh)).filter((r) => !r.ok).map((r) => `${r.name}: ${r.problem}`);
    if (bad.length === 0 || Date.now() > deadline) return bad;
    await new Promise((r) => setTimeout(r, 300));
  }
}

/** Sends a batch; `killed` gets the roles the watchdog killed. */
export async function sendBatch(
  mesh: Mesh,
  lane: Lane,
  batch: Batch,
  o: { readonly killRssMb: number },
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
export async function judgeBatch(
  mesh: Mesh,
  batch: Batch,
  b: ReturnType<typeof before>,
  o: Bounds,
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
