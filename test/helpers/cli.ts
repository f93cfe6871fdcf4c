// Running `trellis` commands as real processes in end-to-end tests: long-running ones (up, run)
// stopped at the end of the test, one-shot ones with their output, and the polling and port
// helpers those tests share.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { freeLoopbackPorts } from '../../src/core/free-ports.ts';
import { CLI, NODE, REPO } from './proxy-process.ts';

export const CLI_TIMEOUT_MS = 20_000;

export interface Running {
  readonly proc: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** SIGTERM (SIGKILL after a while); resolves with the exit code. */
  stop(): Promise<number | null>;
}

/** Starts `trellis ARGS...`; it is stopped when the test ends. */
export function startCli(t: { after(fn: () => Promise<unknown>): void }, args: string[]): Running {
  const proc = spawn(NODE, [CLI, ...args], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = once(proc, 'exit');
  const stop = async (): Promise<number | null> => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), CLI_TIMEOUT_MS);
    const [code] = (await exited) as [number | null];
    clearTimeout(timer);
    return code;
  };
  t.after(stop);
  return { proc, stdout: () => out, stderr: () => err, stop };
}

/** Starts `trellis up` over state folder `root` on free loopback ports and waits until it is ready. */
export async function startUp(
  t: { after(fn: () => Promise<unknown>): void },
  root: string,
): Promise<Running> {
  const up = startCli(t, [
    'up',
    '--state',
    root,
    '--grpc-listen',
    '127.0.0.1:0',
    '--http-listen',
    '127.0.0.1:0',
  ]);
  await waitFor('trellis up', async () => (up.stdout().includes('"ready"') ? true : null));
  return up;
}

/** Where and with what environment a command runs (default: the checkout, this process's environment). */
export interface CliOptions {
  readonly cwd?: string;
  readonly env?: NodeJS.ProcessEnv;
}

/** Runs `trellis ARGS...` to its end (killed after CLI_TIMEOUT_MS). */
export async function runCli(
  args: string[],
  options: CliOptions = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const proc = spawn(NODE, [CLI, ...args], {
    cwd: options.cwd ?? REPO,
    env: options.env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => proc.kill('SIGKILL'), CLI_TIMEOUT_MS);
  const [code] = (await once(proc, 'exit')) as [number | null];
  clearTimeout(timer);
  return { code, stdout, stderr };
}

/** Polls `probe` every 200 ms until it returns non-null, for at most `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | null>,
  timeoutMs = CLI_TIMEOUT_MS,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== null) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** A TCP port on 127.0.0.1 that was free a moment ago, outside the ephemeral range (src/core/free-ports.ts). */
export async function freePort(): Promise<number> {
  const [port] = await freeLoopbackPorts(1);
  return port!;
}
