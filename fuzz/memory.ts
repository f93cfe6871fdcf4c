// A proxy's memory from /proc: RSS and its high-water mark (status), PSS and the private part
// (smaps_rollup: Private_Clean + Private_Dirty, what the process alone holds, without the node
// binary's pages it shares with every other Node process). Also a watchdog that samples RSS while
// a batch runs and kills a proxy that grows past a hard limit, so that a flood that would take the
// shared machine down ends as a finding instead.
import { readFileSync } from 'node:fs';

export interface MemorySample {
  readonly rssMb: number;
  readonly hwmMb: number;
  readonly pssMb: number;
  readonly privateMb: number;
}

function kbFields(path: string, keys: readonly string[]): Map<string, number> | null {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return null;
  }
  const out = new Map<string, number>();
  for (const key of keys) {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text);
    out.set(key, m === null ? 0 : Number(m[1]));
  }
  return out;
}

/** The process's memory now, or null when it is gone. */
export function readMemory(pid: number): MemorySample | null {
  const status = kbFields(`/proc/${pid}/status`, ['VmRSS', 'VmHWM']);
  if (status === null) return null;
  const rollup = kbFields(`/proc/${pid}/smaps_rollup`, ['Pss', 'Private_Clean', 'Private_Dirty']);
  const mb = (kb: number | undefined) => Math.round(((kb ?? 0) / 1024) * 10) / 10;
  return {
    rssMb: mb(status.get('VmRSS')),
    hwmMb: mb(status.get('VmHWM')),
    pssMb: mb(rollup?.get('Pss')),
    privateMb: mb((rollup?.get('Private_Clean') ?? 0) + (rollup?.get('Private_Dirty') ?? 0)),
  };
}

/** RSS in MB only (cheap: the status file alone), 0 when the process is gone. */
export function rssMb(pid: number): number {
  return (kbFields(`/proc/${pid}/status`, ['VmRSS'])?.get('VmRSS') ?? 0) / 1024;
}

export interface Watchdog {
  /** The largest RSS sampled per pid since start. */
  peaks(): ReadonlyMap<number, number>;
  stop(): void;
}

/** Samples each pid's RSS every `everyMs`; calls `onOver` (once per pid) above `limitMb`. */
export function watchMemory(
  pids: () => readonly number[],
  limitMb: number,
  onOver: (pid: number, mb: number) => void,
  everyMs = 200,
): Watchdog {
  const peaks = new Map<number, number>();
  const reported = new Set<number>();
  const timer = setInterval(() => {
    for (const pid of pids()) {
      const mb = rssMb(pid);
      peaks.set(pid, Math.max(peaks.get(pid) ?? 0, mb));
      if (mb > limitMb && !reported.has(pid)) {
        reported.add(pid);
        onOver(pid, mb);
      }
    }
  }, everyMs);
  return { peaks: () => peaks, stop: () => clearInterval(timer) };
}
