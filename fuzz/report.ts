// The campaign's totals and its closing report: inputs and flood frames by generator family and
// lane, where the time went, each proxy's memory high-water against the bounds, the findings;
// printed, and written to summary.json in the run's folder.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { log } from './batch.ts';
import type { CheckResult } from './checks.ts';
import type { FindingLog } from './findings.ts';
import type { Mesh } from './mesh.ts';
import type { FuzzOptions } from './options.ts';
import type { Family } from './plan.ts';
import { emptyStats, type SendStats } from './send.ts';

export interface Totals {
  readonly byFamily: Map<Family, SendStats>;
  readonly byLane: Map<string, { batches: number; inputs: number; flood: number; seconds: number }>;
  batches: number;
  restarts: number;
  /** Where the time went: sending batches, checking after them, restarting the mesh. */
  readonly seconds: { send: number; check: number; restart: number };
  readonly memoryHigh: Map<string, { rssMb: number; privateMb: number; pssMb: number }>;
}

export function add(into: SendStats, s: SendStats): void {
  for (const k of Object.keys(into) as (keyof SendStats)[]) into[k] += s[k];
}

export function sum(totals: Totals): SendStats {
  const all = emptyStats();
  for (const s of totals.byFamily.values()) add(all, s);
  return all;
}

/** Raises the memory high-water marks with what a batch's checks and watchdog saw. */
export function trackMemory(
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

/** Prints and writes the summary; returns the exit code (1 when anything was found). */
export function report(
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
