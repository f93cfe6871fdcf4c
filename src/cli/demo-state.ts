// Where `trellis demo --mesh` keeps its mesh, so that the CLI typed in another terminal of the same
// folder finds it: the default state folder (`.trellis`, or $TRELLIS_STATE) and the default ports
// when they are free. The demo takes the default folder only when it is its own: absent (it
// creates it, marked with DEMO_MARK) or left behind by an earlier demo (the mark, and no control
// plane running over it); a folder of the user's own stays untouched and the demo runs over a
// temporary one instead. Either way the demo removes its folder when it stops, and its caption
// names a command that works when pasted (`bin/trellis stat -n emojivoto`, with `--state DIR`
// when the folder is not the one the CLI finds by itself).
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runningControlFile } from '../api/control-file.ts';
import { DEFAULT_STATE, stateFolder } from './targeting.ts';
import { STATE_FILE_MODE } from '../control/discovery/state-permissions.ts';
import { makeStateDir } from '../control/discovery/state-file-io.ts';

/** Marks a state folder the demo made (and may remove). */
export const DEMO_MARK = 'demo-owned';

export interface DemoState {
  /** Absolute path of the state folder. */
  readonly root: string;
  /** Whether `trellis ...` in the working directory finds it without --state. */
  readonly foundByDefault: boolean;
  /** Why the default folder was not taken, when it was not. */
  readonly why: string | null;
}

/** Takes the default state folder when it is free, else a temporary one. */
export async function chooseDemoState(env: NodeJS.ProcessEnv = process.env): Promise<DemoState> {
  const wanted = resolve(stateFolder(undefined, env));
  const foundByDefault = resolve(DEFAULT_STATE) === wanted;
  let why: string;
  const running = await runningControlFile(wanted);
  if (running !== null) why = `a control plane (pid ${running.pid}) already runs over ${wanted}`;
  else if (existsSync(wanted) && !existsSync(join(wanted, DEMO_MARK)))
    why = `${wanted} holds a mesh of your own`;
  else {
    await rm(wanted, { recursive: true, force: true }); // an earlier demo's leftovers
    await makeStateDir(wanted);
    await writeFile(join(wanted, DEMO_MARK), 'made by `trellis demo`, removed when it stops\n', {
      mode: STATE_FILE_MODE,
    });
    return { root: wanted, foundByDefault, why: null };
  }
  return { root: await mkdtemp(join(tmpdir(), 'trellis-demo-')), foundByDefault: false, why };
}

/** "HOST:PORT" of `preferred` when it can be bound now, else of port 0 (any free port). */
export async function preferredListen(preferred: string): Promise<string> {
  const colon = preferred.lastIndexOf(':');
  const host = preferred.slice(0, colon);
  const server = net.createServer();
  try {
    server.listen(Number(preferred.slice(colon + 1)), host);
    await once(server, 'listening');
    return preferred;
  } catch {
    return `${host}:0`;
  } finally {
    server.close();
  }
}

/** The trellis command as a user types it here: `bin/trellis` from the checkout, else its full path. */
export function cliCommand(cwd: string = process.cwd()): string {
  const checkout = fileURLToPath(new URL('../../', import.meta.url));
  const bin = join(checkout, 'bin', 'trellis');
  const inside = relative(checkout, cwd);
  if (inside.startsWith('..') || isAbsolute(inside)) return shellWord(bin);
  const rel = relative(cwd, bin);
  return shellWord(rel.includes('/') ? rel : `./${rel}`);
}

/** `trellis ARGS` as a command that works when pasted into a shell in the working directory. */
export function pasteable(state: DemoState, args: readonly string[]): string {
  const where = state.foundByDefault ? [] : ['--state', shellWord(state.root)];
  return [cliCommand(), ...args, ...where].join(' ');
}

function shellWord(text: string): string {
  return /^[\w@%+=:,./-]+$/.test(text) ? text : `'${text.replaceAll("'", `'\\''`)}'`;
}
