// The pipe between `trellis run` and its proxy, which makes the workload die with its supervisor.
// `trellis run` starts the proxy with the pipe's read end as an extra descriptor
// (`--supervisor-fd 3`) and writes on it, one line each time, which process group the app runs in
// ("app 1234", or "app none" while it is down). The pipe closes when `trellis run` exits, however
// it exits: SIGKILL included, which it cannot catch. The proxy then stops that process group
// (SIGTERM, SIGKILL after a grace period), so the app and whatever it started go too, and exits
// itself; the registration, no longer renewed, expires (src/control/discovery/state-layout.ts).
//
// Why a pipe and not only PR_SET_PDEATHSIG: the kernel's parent-death signal reaches one process,
// the direct child, so an app's own children (`npm start` -> sh -> node) would be left behind; a
// closed pipe is seen whenever it happens (no race with a parent that died before the child set it
// up), costs the proxy nothing to watch, and needs no native call. The app itself also gets
// SIGKILL as its parent-death signal (setpriv, when present) for the case where the proxy died first.
import type { ChildProcess } from 'node:child_process';
import { fstatSync } from 'node:fs';
import { Socket } from 'node:net';
import type { Writable } from 'node:stream';
import type { Logger } from '../core/log.ts';

/** The descriptor the proxy gets the pipe on (stdio index). */
export const SUPERVISOR_FD = 3;

/** `trellis run`'s side: tells the proxy which process group the app runs in (null: none now). */
export function tellAppGroup(proxy: ChildProcess, pgid: number | null): void {
  const pipe = proxy.stdio[SUPERVISOR_FD] as Writable | null | undefined;
  if (pipe === null || pipe === undefined || pipe.destroyed) return;
  pipe.write(`app ${pgid ?? 'none'}\n`);
}

/** `trellis run`'s side: a pipe whose proxy is gone must not throw (EPIPE). */
export function quietPipe(proxy: ChildProcess): void {
  (proxy.stdio[SUPERVISOR_FD] as Writable | null | undefined)?.on('error', () => {});
}

export interface SupervisorWatchOptions {
  readonly log: Logger;
  /** Called once the app's process group is gone (or after the grace period): stop the proxy. */
  readonly onGone: () => void;
  /** How long the app's process group gets between SIGTERM and SIGKILL. Default 2000 ms. */
  readonly graceMs?: number;
}

/** The proxy's side, before it starts: `fd` must be an open pipe (or socket); what is wrong if not. */
export function supervisorFdProblem(fd: number): string | null {
  let ok = false;
  try {
    const stat = fstatSync(fd);
    ok = stat.isFIFO() || stat.isSocket();
  } catch {
    // not open
  }
  return ok ? null : `descriptor ${fd} is not an open pipe`;
}

/** The proxy's side: watches the pipe on `fd`; see the file comment. */
export function watchSupervisor(fd: number, options: SupervisorWatchOptions): void {
  const pipe = new Socket({ fd, readable: true, writable: false });
  pipe.unref();
  pipe.setEncoding('utf8');
  let group: number | null = null;
  let pending = '';
  let gone = false;
  pipe.on('data', (chunk: string) => {
    pending += chunk;
    const lines = pending.split('\n');
    pending = lines.pop()!.slice(-100);
    for (const line of lines) {
      const match = /^app (\d+|none)$/.exec(line.trim());
      if (match !== null) group = match[1] === 'none' ? null : Number(match[1]);
    }
  });
  const onGone = (): void => {
    if (gone) return;
    gone = true;
    options.log.warn('the supervisor (trellis run) is gone; stopping the app and exiting', {
      appProcessGroup: group,
    });
    void stopProcessGroup(group, options.graceMs ?? 2000).then(options.onGone);
  };
  pipe.on('end', onGone);
  pipe.on('close', onGone);
  pipe.on('error', onGone);
}

/** SIGTERM to a process group, SIGKILL to what is left of it after `graceMs`. */
export async function stopProcessGroup(pgid: number | null, graceMs: number): Promise<void> {
  if (pgid !== null) await stopProcesses([-pgid], graceMs);
}

/**
 * SIGTERM to each of `ids` that is there (a pid, or a process group's id negated: the whole
 * group), SIGKILL to those still there after `graceMs`. Resolves with how many were there.
 */
export async function stopProcesses(ids: readonly number[], graceMs: number): Promise<number> {
  const there = ids.filter((id) => sendSignal(id, 'SIGTERM'));
  let left = there;
  const deadline = Date.now() + graceMs;
  while (left.length > 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    left = left.filter((id) => sendSignal(id, 0));
  }
  for (const id of left) sendSignal(id, 'SIGKILL');
  return there.length;
}

/** Sends `signal` to every process of group `pgid`; false when there is none left. */
export function signalGroup(pgid: number, signal: NodeJS.Signals | 0): boolean {
  return sendSignal(-pgid, signal);
}

/** process.kill(id, signal); false when there is no such process (or group) left. */
function sendSignal(id: number, signal: NodeJS.Signals | 0): boolean {
  try {
    process.kill(id, signal);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
