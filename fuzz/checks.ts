// What is checked after every batch, besides the app's and the bystander's records (judge.ts):
// both proxy processes are alive; every listener still serves its known-good request (probes.ts);
// each proxy's memory (RSS and its high-water mark, the private part) is within the bounds; the
// proxies did not flood their logs; the batch did not make the proxy open an app connection per
// cancelled stream. A finding that leaves the mesh broken asks for a restart.
import type { Finding, FindingKind } from './judge.ts';
import { readMemory, type MemorySample } from './memory.ts';
import type { Mesh } from './mesh.ts';
import type { Batch } from './plan.ts';
import { probeAll, type ProbeResult } from './probes.ts';

export interface Bounds {
  readonly maxRssMb: number;
  readonly maxPrivateMb: number;
}

/** Log lines one batch may make a proxy write (issue 9, 2.7: repeated lines are rate-limited). */
export const LOG_LINES_PER_BATCH = 1000;
/** App connections one batch may cause (issue 9, 2.3: a cancelled stream must not cost one). */
export const APP_CONNECTIONS_PER_BATCH = 2000;

export interface Before {
  readonly appConnections: number;
  readonly logLines: ReadonlyMap<string, number>;
}

export interface CheckResult {
  readonly findings: Finding[];
  readonly restart: boolean;
  readonly probes: readonly ProbeResult[];
  readonly memory: ReadonlyMap<string, MemorySample>;
}

export function before(mesh: Mesh): Before {
  return {
    appConnections: mesh.app.connections(),
    logLines: new Map(mesh.proxies().map((p) => [p.role, p.logLines()])),
  };
}

const RESTART: ReadonlySet<FindingKind> = new Set([
  'crash',
  'hang',
  'listener-down',
  'probe-wrong-answer',
  'memory-bound',
]);

/** Findings of this kind leave the mesh broken: the campaign restarts both proxies. */
export function breaksMesh(kind: FindingKind): boolean {
  return RESTART.has(kind);
}

const SEVERITY: readonly FindingKind[] = ['hang', 'listener-down', 'probe-wrong-answer'];

function probeKind(problem: string): FindingKind {
  if (problem === 'timeout') return 'hang';
  if (problem === 'no HTTP answer' || /ECONNREFUSED|ECONNRESET|socket hang up/.test(problem))
    return 'listener-down';
  return 'probe-wrong-answer';
}

/**
 * `recent`: the batches before this one (a detection timeout, for one, takes effect seconds after
 * the input that caused it, so a broken probe may be an earlier batch's doing).
 */
export async function checkAfterBatch(
  mesh: Mesh,
  batch: Batch,
  b: Before,
  bounds: Bounds,
  recent: readonly string[],
): Promise<CheckResult> {
  const findings: Finding[] = [];
  const where = { batch: batch.index, lane: batch.lane, plan: null };
  const variant = batch.family === 'flood' ? ` ${batch.plans[0]?.note ?? ''}` : '';
  for (const p of mesh.proxies()) {
    const ended = p.ended();
    if (ended !== null) {
      findings.push({
        kind: 'crash',
        ...where,
        summary: `the ${p.role}-side proxy died during ${batch.lane}${variant}: ${ended.split(';')[0]}`,
        signature: `crash|${p.role}|${batch.lane}${variant}`,
        detail: { ended },
      });
    }
  }
  const probes = await probeAll(mesh);
  const failed = probes.filter((x) => !x.ok);
  if (failed.length > 0) {
    // One finding for all the probes that failed together (one cause, usually).
    const kind = SEVERITY.find((k) => failed.some((r) => probeKind(r.problem!) === k))!;
    const what = failed.map((r) => `${r.name}: ${r.problem}`).join('; ');
    findings.push({
      kind,
      ...where,
      summary: `after ${batch.lane}${variant}: ${failed.length} known-good request(s) failed: ${what}`,
      signature: `${kind}|${failed.map((r) => `${r.name} ${probeKind(r.problem!)}`).join(', ')}`,
      variant: `after ${batch.lane}`,
      detail: { failed, recentBatches: recent },
    });
  }
  const memory = new Map<string, MemorySample>();
  for (const p of mesh.proxies()) {
    const m = readMemory(p.process.pid);
    if (m === null) continue;
    memory.set(p.role, m);
    const over =
      Math.max(m.rssMb, m.hwmMb) > bounds.maxRssMb
        ? `RSS ${m.rssMb} MB (high-water ${m.hwmMb} MB) > ${bounds.maxRssMb} MB`
        : m.privateMb > bounds.maxPrivateMb
          ? `private ${m.privateMb} MB > ${bounds.maxPrivateMb} MB`
          : null;
    if (over !== null) {
      findings.push({
        kind: 'memory-bound',
        ...where,
        summary: `the ${p.role}-side proxy's memory is over the bound after ${batch.lane}${variant}: ${over}`,
        signature: `memory-bound|${p.role}|${batch.lane}${variant}`,
        detail: { memory: m, bounds },
      });
    }
    const lines = p.logLines() - (b.logLines.get(p.role) ?? p.logLines());
    if (lines > LOG_LINES_PER_BATCH) {
      findings.push({
        kind: 'log-flood',
        ...where,
        summary: `the ${p.role}-side proxy wrote ${lines} log lines during ${batch.lane}${variant}`,
        signature: `log-flood|${p.role}|${batch.lane}`,
        detail: { lines, lastOutput: p.process.output().slice(-2000) },
      });
    }
  }
  const appConnections = mesh.app.connections() - b.appConnections;
  if (appConnections > APP_CONNECTIONS_PER_BATCH) {
    findings.push({
      kind: 'app-connection-amplification',
      ...where,
      summary: `${batch.lane}${variant}: ${batch.plans.length} connections made the proxies open ${appConnections} connections to the app`,
      signature: `app-connection-amplification|${batch.lane}${variant}`,
      detail: { appConnections, plans: batch.plans.length },
    });
  }
  return { findings, restart: findings.some((f) => breaksMesh(f.kind)), probes, memory };
}
