// The processes of `trellis demo`: starting a child (`node SCRIPT ...`) and reading its ready
// line, noticing when it exits without being asked to, and stopping them all (SIGTERM, then
// SIGKILL after 5 s) in waves, so that the control plane outlives the workloads that use it.
// Shared by both demos (demo-simple.ts, demo-mesh.ts); small HTTP and clock helpers live here too.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import type { WorkloadRow } from './live-view.ts';
import { readyLine } from './ready-line.ts';

/** The CLI this process runs from (src/cli/main.ts or dist/cli/main.js). */
export const CLI = fileURLToPath(
  new URL(`./main${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url),
);

/** Where the example apps are: examples/ beside src/ (or dist/), for both layouts. */
export const EXAMPLES_DIR = fileURLToPath(new URL('../../examples/', import.meta.url));

/** Node flags the children inherit (memory settings, say), without debugger or test flags. */
export const NODE_FLAGS = process.execArgv.filter((a) => !/^--(inspect|debug|test|watch)/.test(a));

export interface DemoChild {
  readonly name: string;
  readonly proc: ChildProcess;
  /** The child's ready line (a JSON object of addresses); rejects if it exits or is slow. */
  readonly ready: Promise<Record<string, string>>;
  /** Stopped after every child of a higher wave has exited (the control plane: 0, the rest: 1). */
  readonly wave: number;
  /** Set once the demo stops it on purpose. */
  expected: boolean;
}

export interface SpawnOptions {
  /** Stop order: higher waves first (default 1). */
  readonly wave?: number;
  /** Hears each line the child writes to stderr. */
  readonly onStderrLine?: (line: string) => void;
}

/** Starts `node script ...args`; `onUnexpectedExit` hears of an exit the demo did not ask for. */
export function spawnDemoChild(
  name: string,
  script: string,
  args: readonly string[],
  onUnexpectedExit: (why: string) => void,
  options: SpawnOptions = {},
): DemoChild {
  const proc = spawn(process.execPath, [...NODE_FLAGS, script, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderrTail = '';
  let partial = '';
  proc.stderr!.setEncoding('utf8');
  proc.stderr!.on('data', (d: string) => {
    stderrTail = (stderrTail + d).slice(-2000);
    if (options.onStderrLine === undefined) return;
    const lines = (partial + d).split('\n');
    partial = lines.pop()!.slice(-10_000);
    for (const line of lines) options.onStderrLine(line);
  });
  proc.stdin!.on('error', () => {}); // a child that is gone: its exit is reported below
  const describeExit = (code: number | null, signal: string | null) =>
    `${name} (pid ${proc.pid}) exited ${signal !== null ? `on ${signal}` : `with code ${code}`}` +
    (stderrTail.trim() === '' ? '' : `:\n${stderrTail.trimEnd()}`);
  const child: DemoChild = {
    name,
    proc,
    wave: options.wave ?? 1,
    expected: false,
    ready: readyLine(proc, { what: name, onExit: describeExit }),
  };
  child.ready.catch(() => {}); // reported through the startup or onUnexpectedExit
  proc.once('exit', (code, signal) => {
    if (!child.expected) onUnexpectedExit(describeExit(code, signal));
  });
  proc.once('error', (err) => {
    if (!child.expected) onUnexpectedExit(`${name} could not start: ${err.message}`);
  });
  return child;
}

/**
 * Stops every child still running, wave by wave (highest first): SIGTERM, then SIGKILL to any
 * still there after 5 s. Resolves once all have exited.
 */
export async function stopChildren(children: readonly DemoChild[]): Promise<void> {
  for (const c of children) c.expected = true;
  const waves = [...new Set(children.map((c) => c.wave))].sort((a, b) => b - a);
  for (const wave of waves) await stopWave(children.filter((c) => c.wave === wave));
}

async function stopWave(children: readonly DemoChild[]): Promise<void> {
  const running = children.filter((c) => c.proc.exitCode === null && c.proc.signalCode === null);
  const exits = running.map((c) => once(c.proc, 'exit').catch(() => {}));
  for (const c of running) c.proc.kill('SIGTERM');
  const killer = setTimeout(() => {
    for (const c of running)
      if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill('SIGKILL');
  }, 5000);
  await Promise.all(exits);
  clearTimeout(killer);
}

export function note(text: string): void {
  process.stderr.write(`trellis demo: ${text}\n`);
}

/** "name is up (pid N, listen A, ...)" from a child's ready line. */
export function noteUp(child: DemoChild, ready: Record<string, string>): void {
  const where = Object.entries(ready).filter(([k]) => k !== 'event' && k !== 'service' && k !== 'pid');
  note(`${child.name} is up (pid ${child.proc.pid}, ${where.map(([k, v]) => `${k} ${v}`).join(', ')})`);
}

export function clock(): string {
  return new Date().toTimeString().slice(0, 8);
}

/** GET http://ADDRESS/path; the body, or null when it fails or takes over 2 s. */
export function fetchText(agent: http.Agent, address: string, path: string): Promise<string | null> {
  const colon = address.lastIndexOf(':');
  return new Promise((resolve) => {
    const req = http.get(
      { agent, host: address.slice(0, colon), port: Number(address.slice(colon + 1)), path, timeout: 2000 },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve(res.statusCode === 200 ? body : null));
        res.on('error', () => resolve(null));
      },
    );
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(null));
  });
}

/** Starts a child: `node script ...args`, or the trellis CLI when `script` is null. */
export type StartChild = (
  name: string,
  script: string | null,
  args: readonly string[],
  options?: SpawnOptions,
) => DemoChild;

/** What one demo runs and shows; `trellis demo` (demo.ts) drives it and owns the children. */
export interface DemoScenario {
  /** Starts the processes through `start` and the traffic; resolves once all are ready. */
  start(start: StartChild): Promise<void>;
  /** The rows of the view now. */
  rows(): Promise<WorkloadRow[]>;
  /** The lines above the table: a header on a redrawn screen, one short line otherwise. */
  title(redraw: boolean): string[];
  /** Stops the traffic the demo itself sends; called before the children are stopped. */
  stopTraffic(): void;
  /** Pids of processes the children started, to be sure they are gone once the children are. */
  strays(): number[];
  /** Releases what is left once every child has exited (temporary folders, say). */
  cleanup(): Promise<void>;
}
