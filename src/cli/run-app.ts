// Starting and stopping the app of `trellis run`. The app runs in its own process group (and
// session), so that a signal for the workload reaches everything it started (`npm start` -> sh ->
// node), and whatever is left of the group when the app itself exits is killed too. Through
// util-linux's `setpriv --pdeathsig SIGKILL` (when installed; it execs the app, costing nothing)
// the kernel kills the app should `trellis run` die while its proxy, which otherwise stops the
// app's group (supervisor-pipe.ts), is down. The command is looked up on PATH first, so that a
// command that does not exist is said so, not reported as an app that exited with 127.
import { type ChildProcess, spawn } from 'node:child_process';
import { accessSync, constants as fsConstants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { signalGroup } from './supervisor-pipe.ts';

/** The file `command` runs (a path, or the first match on `path`); null when there is none. */
export function resolveCommand(command: string, path: string | undefined): string | null {
  const candidates = command.includes('/')
    ? [command]
    : (path ?? '').split(delimiter).map((dir) => join(dir === '' ? '.' : dir, command));
  for (const file of candidates) {
    try {
      accessSync(file, fsConstants.X_OK);
      return file;
    } catch {
      // not there, or not executable: try the next
    }
  }
  return null;
}

let setpriv: string | null | undefined;

/** setpriv, when it is installed (looked up once). */
function setprivPath(path: string | undefined): string | null {
  setpriv ??= resolveCommand('setpriv', path);
  return setpriv;
}

/** Starts the app (`file`: the resolved command) in its own process group, with `env`. */
export function spawnApp(file: string, args: readonly string[], env: NodeJS.ProcessEnv): ChildProcess {
  const wrapper = setprivPath(env.PATH);
  const [command, argv] =
    wrapper === null ? [file, args] : [wrapper, ['--pdeathsig', 'SIGKILL', '--', file, ...args]];
  return spawn(command, argv, { stdio: 'inherit', env, detached: true });
}

/** Sends `signal` to the app's whole process group (its id is the app's pid). */
export function signalApp(app: ChildProcess, signal: NodeJS.Signals): void {
  if (app.pid !== undefined) signalGroup(app.pid, signal);
}
