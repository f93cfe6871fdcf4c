// Starting `trellis demo` in a test, as a user runs it: in a fresh working directory of its own
// (so the mesh demo's state folder is .trellis there), with TRELLIS_STATE unset; the pids of what
// it started come from its "X is up (pid N, app pid A, proxy pid P" notes. At the end of the test
// a demo still running gets SIGTERM (SIGKILL after 15 s), then every process it named is killed
// and its state folder and working directory are removed. Shared by test/long/demo.test.ts and
// test/long/dashboard.test.ts.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI, NODE } from './proxy-process.ts';

export type After = { after(fn: () => unknown): void };

export interface DemoRun {
  proc: ChildProcess;
  /** Its working directory (a fresh temporary one). */
  cwd: string;
  stdout(): string;
  stderr(): string;
  /** Pids of the processes the demo started (and of the apps and proxies under `trellis run`). */
  children(): Map<string, number>;
  exited: Promise<number | null>;
}

export function startDemo(t: After, args: string[]): DemoRun {
  const cwd = mkdtempSync(join(tmpdir(), 'trellis-demo-cwd-'));
  const env = { ...process.env, TRELLIS_STATE: '' };
  const proc = spawn(NODE, [CLI, 'demo', ...args], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = once(proc, 'exit').then(([code]) => code as number | null);
  const children = () => {
    const pids = new Map<string, number>();
    for (const m of err.matchAll(
      /trellis demo: (.+?) is up \(pid (\d+)(?:, app pid (\d+), proxy pid (\d+))?/g,
    )) {
      pids.set(m[1]!, Number(m[2]));
      if (m[3] !== undefined) pids.set(`${m[1]} app`, Number(m[3]));
      if (m[4] !== undefined) pids.set(`${m[1]} proxy`, Number(m[4]));
    }
    return pids;
  };
  t.after(async () => {
    // A failed test: let the demo clean up after itself first, then make sure.
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGTERM');
      const killer = setTimeout(() => proc.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(killer);
    }
    for (const pid of children().values()) if (alive(pid)) process.kill(pid, 'SIGKILL');
    const state = stateFolder(err);
    if (state !== undefined) rmSync(state, { recursive: true, force: true });
    rmSync(cwd, { recursive: true, force: true });
  });
  return { proc, cwd, stdout: () => out, stderr: () => err, children, exited };
}

/** The mesh demo's temporary state folder, from its "control plane is up (..., state DIR)" note. */
export function stateFolder(stderr: string): string | undefined {
  return /control plane is up \(.*, state (\/\S+)\)/.exec(stderr)?.[1];
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Waits until `check` holds, polling; fails after `ms`. */
export async function until(
  check: () => boolean,
  ms: number,
  what: string,
  output?: () => string,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) {
      throw new Error(
        `timed out waiting for ${what}${output ? `; the demo said:\n${output().slice(-3000)}` : ''}`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
