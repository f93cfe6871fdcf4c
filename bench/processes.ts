// Child processes of the benchmark: every process is started pinned to one CPU (taskset), kept in
// one registry, and killed when the run ends, also on Ctrl-C or an error. Also reads a process
// tree's CPU time and memory from /proc, which is how the proxies' cost is measured.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { createServer, connect } from 'node:net';

export interface Started {
  readonly name: string;
  readonly child: ChildProcess;
  readonly pid: number;
  /** Everything the process wrote, bounded, for error messages. */
  output(): string;
  /** Resolves when the process has exited. */
  readonly exited: Promise<number | null>;
}

const registry = new Set<Started>();
let shuttingDown = false;
const OUTPUT_LIMIT = 64 * 1024;

/** Starts `argv` pinned to `cpu` (or unpinned when cpu is undefined). */
export function startPinned(name: string, cpu: number | undefined, argv: readonly string[]): Started {
  if (shuttingDown) throw new Error(`${name}: not started, the benchmark is stopping`);
  const [cmd, ...args] = cpu === undefined ? argv : ['taskset', '-c', String(cpu), ...argv];
  const child = spawn(cmd!, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const keep = (chunk: Buffer): void => {
    out = (out + chunk.toString('utf8')).slice(-OUTPUT_LIMIT);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code, signal) => resolve(code ?? (signal ? -1 : null)));
    child.once('error', (err) => {
      out += `\nspawn error: ${err.message}`;
      resolve(-1);
    });
  });
  const started: Started = { name, child, pid: child.pid ?? -1, output: () => out, exited };
  registry.add(started);
  void exited.then(() => registry.delete(started));
  return started;
}

/** Stops one process: SIGTERM, then SIGKILL after `graceMs`. */
export async function stop(p: Started, graceMs = 2000): Promise<void> {
  if (!registry.has(p)) return;
  const pids = [...descendants(p.pid), p.pid];
  p.child.kill('SIGTERM');
  const timer = new Promise<void>((r) => setTimeout(r, graceMs).unref());
  await Promise.race([p.exited, timer]);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  registry.delete(p);
}

/** Stops every process still running and refuses to start new ones; safe to call again. */
export async function stopAll(): Promise<void> {
  shuttingDown = true;
  await Promise.all([...registry].map((p) => stop(p, 1000)));
}

/** Synchronous last resort for process exit: SIGKILL to everything still registered. */
export function killAllNow(): void {
  for (const p of registry) {
    for (const pid of [...descendants(p.pid), p.pid]) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  registry.clear();
}

/** Waits for a line on stdout that `match` accepts (returns its result), bounded in time. */
export function waitForLine<T>(
  p: Started,
  match: (line: string) => T | undefined,
  timeoutMs: number,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let buf = '';
    const onData = (chunk: Buffer): void => {
      buf += chunk.toString('utf8');
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        const found = line ? match(line) : undefined;
        if (found !== undefined) {
          done();
          resolve(found);
          return;
        }
      }
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`${p.name}: not ready after ${timeoutMs} ms; output: ${tail(p.output())}`));
    }, timeoutMs);
    const onExit = (): void => {
      done();
      reject(new Error(`${p.name}: exited before it was ready; output: ${tail(p.output())}`));
    };
    const done = (): void => {
      clearTimeout(timer);
      p.child.stdout!.off('data', onData);
      p.child.off('exit', onExit);
    };
    p.child.stdout!.on('data', onData);
    p.child.once('exit', onExit);
  });
}

/** Waits until a TCP connect to host:port succeeds, bounded in time; fails early if `p` exits. */
export async function waitForPort(
  p: Started,
  port: number,
  timeoutMs: number,
  host = '127.0.0.1',
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  void p.exited.then(() => (exited = true));
  while (Date.now() < deadline) {
    if (exited) throw new Error(`${p.name}: exited at start; output: ${tail(p.output())}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ host, port }, () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${p.name}: port ${port} not open after ${timeoutMs} ms; output: ${tail(p.output())}`);
}

/** A loopback port that was free a moment ago (for tools that need a port in their config). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

export function tail(s: string, n = 1500): string {
  const t = s.trim();
  return t.length > n ? '...' + t.slice(-n) : t;
}

/** The pid and all its descendants' pids (from /proc, so it also finds grandchildren). */
export function processTree(pid: number): number[] {
  return [pid, ...descendants(pid)];
}

function descendants(root: number): number[] {
  const parentOf = new Map<number, number>();
  for (const entry of safeReaddir('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid)) continue;
    const stat = readStat(pid);
    if (stat) parentOf.set(pid, stat.ppid);
  }
  const out: number[] = [];
  const frontier = [root];
  while (frontier.length > 0) {
    const parent = frontier.pop()!;
    for (const [pid, ppid] of parentOf) {
      if (ppid === parent && !out.includes(pid)) {
        out.push(pid);
        frontier.push(pid);
      }
    }
  }
  return out;
}

interface ProcStat {
  readonly ppid: number;
  /** utime + stime in clock ticks. */
  readonly cpuTicks: number;
}

function readStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) may hold spaces: the fields after it start after the last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
  return { ppid: Number(fields[1]), cpuTicks: Number(fields[11]) + Number(fields[12]) };
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

const CLOCK_TICKS_PER_SECOND = 100; // USER_HZ on Linux (getconf CLK_TCK)

/** CPU seconds (user + system) used so far by the process tree rooted at `pid`. */
export function treeCpuSeconds(pid: number): number {
  let ticks = 0;
  for (const p of processTree(pid)) ticks += readStat(p)?.cpuTicks ?? 0;
  return ticks / CLOCK_TICKS_PER_SECOND;
}

/** CPU seconds used so far by the process trees of `pids` (both proxies of a two-hop pair). */
export function treesCpuSeconds(pids: readonly number[]): number {
  return pids.reduce((sum, pid) => sum + treeCpuSeconds(pid), 0);
}

/** A /proc/PID/status memory field in kB (0 when the process or field is not there). */
export function statusKb(pid: number, key: 'VmRSS' | 'VmHWM' | 'RssAnon' | 'RssFile'): number {
  try {
    const text = readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text);
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** Memory of the process tree in MB: current RSS and the sum of each process's peak (VmHWM). */
export function treeMemoryMb(pid: number): { rssMb: number; hwmMb: number } {
  let rss = 0;
  let hwm = 0;
  for (const p of processTree(pid)) {
    rss += statusKb(p, 'VmRSS');
    hwm += statusKb(p, 'VmHWM');
  }
  return { rssMb: rss / 1024, hwmMb: hwm / 1024 };
}

/**
 * Samples the tree's RSS every `everyMs` until stopped; returns the largest sum seen. The tree is
 * looked up again only every 10th sample: scanning /proc is the costly part, and the harness must
 * stay light while it measures.
 */
export function sampleRss(pid: number, everyMs = 250): { stop(): number; peakPrivateMb(): number } {
  let pids = processTree(pid);
  let n = 0;
  const sumMb = (key: 'VmRSS' | 'RssAnon'): number =>
    pids.reduce((sum, p) => sum + statusKb(p, key), 0) / 1024;
  let peak = sumMb('VmRSS');
  // Private memory (RssAnon): RSS also counts the program's own code pages, which the kernel
  // shares between every process running the same binary (for Node, ~35-45 MB of the binary).
  let peakAnon = sumMb('RssAnon');
  const timer = setInterval(() => {
    if (++n % 10 === 0) pids = processTree(pid);
    peak = Math.max(peak, sumMb('VmRSS'));
    peakAnon = Math.max(peakAnon, sumMb('RssAnon'));
  }, everyMs);
  return {
    stop(): number {
      clearInterval(timer);
      return Math.max(peak, treeMemoryMb(pid).rssMb);
    },
    peakPrivateMb: () => peakAnon,
  };
}

/**
 * Pins this process (all its threads) to `cpu`, so that the harness's own work lands on the load
 * generators' CPU and never on the proxy's.
 */
export function pinSelf(cpu: number): void {
  spawnSync('taskset', ['-a', '-p', '-c', String(cpu), String(process.pid)], {
    stdio: 'ignore',
    timeout: 5000,
  });
}

/** Busy and stolen seconds of one CPU so far, from /proc/stat (steal: taken by the hypervisor). */
export function cpuCounters(cpu: number): { busyS: number; stealS: number } {
  try {
    const line = readFileSync('/proc/stat', 'utf8')
      .split('\n')
      .find((l) => l.startsWith(`cpu${cpu} `));
    if (!line) return { busyS: 0, stealS: 0 };
    // user nice system idle iowait irq softirq steal ...
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    const busy = f[0]! + f[1]! + f[2]! + f[5]! + f[6]!;
    return { busyS: busy / CLOCK_TICKS_PER_SECOND, stealS: (f[7] ?? 0) / CLOCK_TICKS_PER_SECOND };
  } catch {
    return { busyS: 0, stealS: 0 };
  }
}

/** The fraction of all CPUs' time that was busy (or stolen) over the next `windowMs`. */
export async function machineBusyFraction(windowMs: number): Promise<number> {
  const read = (): { busy: number; total: number } => {
    try {
      const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
      const f = line.trim().split(/\s+/).slice(1).map(Number);
      const idle = f[3]! + f[4]!;
      const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
      return { busy: total - idle, total };
    } catch {
      return { busy: 0, total: 0 };
    }
  };
  const before = read();
  await new Promise((r) => setTimeout(r, windowMs));
  const after = read();
  const total = after.total - before.total;
  return total > 0 ? (after.busy - before.busy) / total : 0;
}
