// Who may read the state folder of one-machine mode: its owner alone. It holds the authority's
// keys, the token key, workload and operator tokens, and the registrations and services that
// draw the mesh's shape (addresses, ports, identities, admin listeners), so every folder in it is
// 0700 and every file 0600, whatever the umask: the writers create them so (state-file-io.ts,
// ../identity/files.ts, ../../api/control-file.ts, src/cli/workload-token.ts), and `trellis up`
// narrows what an older version (or a hand) left looser when it starts (tightenStateFolder).
//
// Only the state folder's own entries are walked (STATE_ENTRIES), never a symbolic link, and at
// most MAX_DEPTH levels down: `--state` may name a folder that holds other things too.
import { chmod, lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';

export const STATE_DIR_MODE = 0o700;
export const STATE_FILE_MODE = 0o600;

/** What the state folder holds (state-layout.ts, the policy and route folders, the tokens, control.json). */
export const STATE_ENTRIES: readonly string[] = [
  'services',
  'workloads',
  'policy',
  'routes',
  'identity',
  'control.json',
  'operator-token',
  'trace-token',
  'trust-anchor.pem',
];

/** The layout is <entry>/<namespace>/<file> at its deepest (identity/tokens/<file>). */
const MAX_DEPTH = 4;

/** What tightenStateFolder did: the paths it narrowed, and those it could not (with why). */
export interface Tightened {
  readonly narrowed: string[];
  readonly failed: { readonly path: string; readonly error: string }[];
}

/**
 * Narrows the state folder `root` and its entries: folders others may use to 0700, files others
 * may read or write to 0600 (the owner's bits kept). Never throws; a missing root or entry is
 * nothing to do.
 */
export async function tightenStateFolder(root: string): Promise<Tightened> {
  const done: Tightened = { narrowed: [], failed: [] };
  await tighten(root, 0, done, false);
  for (const entry of STATE_ENTRIES) await tighten(join(root, entry), 1, done, true);
  return done;
}

async function tighten(path: string, depth: number, done: Tightened, descend: boolean): Promise<void> {
  let mode: number;
  let isDir: boolean;
  try {
    const info = await lstat(path);
    if (info.isSymbolicLink() || !(info.isDirectory() || info.isFile())) return;
    mode = info.mode & 0o777;
    isDir = info.isDirectory();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') done.failed.push(failure(path, error));
    return;
  }
  if ((mode & 0o077) !== 0) {
    try {
      await chmod(path, isDir ? STATE_DIR_MODE : mode & 0o700);
      done.narrowed.push(path);
    } catch (error) {
      done.failed.push(failure(path, error));
    }
  }
  if (!isDir || !descend || depth >= MAX_DEPTH) return;
  let names: string[];
  try {
    names = await readdir(path);
  } catch (error) {
    done.failed.push(failure(path, error));
    return;
  }
  for (const name of names.sort()) await tighten(join(path, name), depth + 1, done, true);
}

function failure(path: string, error: unknown): { path: string; error: string } {
  return { path, error: (error as NodeJS.ErrnoException).code ?? String(error) };
}
