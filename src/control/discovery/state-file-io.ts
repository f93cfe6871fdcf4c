// File I/O of the state folder's small files, shared by the discovery state (local-state.ts) and
// the policy files (../policy/state-files.ts): listing `<dir>/<namespace>/<file>`, reading a file
// once per change (a file whose modification time and size are what the cache last saw is not read
// nor parsed again, and a bad one is not reported again on every scan), writing atomically
// (readers skip the temporary file; files 0600, folders 0700: state-permissions.ts), and removing.
import { chmod, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../../core/log.ts';
import { STATE_DIR_MODE, STATE_FILE_MODE } from './state-permissions.ts';

interface Entry<T> {
  readonly mtimeMs: number;
  readonly size: number;
  readonly value: T;
}

/** Parsed values by file path. */
export type FileCache<T> = Map<string, Entry<T>>;

/**
 * The value of `file`: from the cache when the file is unchanged, else `parse(text)` (and cached).
 * Null when the file cannot be read (gone between listing and reading is normal and not logged).
 */
export async function readCachedFile<T>(
  file: string,
  cache: FileCache<T>,
  log: Logger,
  what: string,
  parse: (text: string) => T,
): Promise<T | null> {
  let info;
  let text;
  try {
    info = await stat(file);
    const cached = cache.get(file);
    if (cached !== undefined && cached.mtimeMs === info.mtimeMs && cached.size === info.size)
      return cached.value;
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') log.warn(`cannot read ${what}`, { file, error });
    return null;
  }
  const value = parse(text);
  cache.set(file, { mtimeMs: info.mtimeMs, size: info.size, value });
  return value;
}

/** What writing a resource's file did (`trellis apply` says it, as kubectl does). */
export type WriteOutcome = 'created' | 'configured' | 'unchanged';

/**
 * Writes `path` atomically unless it holds `text` already: then it is left alone (its time too,
 * so the control plane reads nothing new). Says whether the file was new, changed or the same.
 */
export async function writeIfChanged(path: string, text: string): Promise<WriteOutcome> {
  let before: string | null = null;
  try {
    before = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  if (before === text) return 'unchanged';
  await writeAtomically(path, text);
  return before === null ? 'created' : 'configured';
}

/**
 * Writes `path` whole or not at all: a temporary file (".tmp", which listings skip), then a
 * rename; a failed write leaves no temporary file behind. The file is 0600 and the folders made
 * for it 0700 (the owner's alone). Every writer of the state folder's files uses it (the identity
 * folder's too: ../identity/files.ts).
 */
export async function writeAtomically(path: string, text: string): Promise<void> {
  await makeStateDir(join(path, '..'));
  const tmp = `${path}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  try {
    await writeFile(tmp, text, { mode: STATE_FILE_MODE });
    await chmod(tmp, STATE_FILE_MODE); // the umask may have narrowed (never widened) it; be exact
    await rename(tmp, path);
  } catch (error) {
    await rm(tmp, { force: true });
    throw error;
  }
}

/** Makes a folder of the state folder (and its parents) 0700. */
export async function makeStateDir(path: string): Promise<void> {
  await mkdir(path, { recursive: true, mode: STATE_DIR_MODE });
}

/** Removes a file; false when there was none. */
export async function removeFile(path: string): Promise<boolean> {
  try {
    await stat(path);
  } catch {
    return false;
  }
  await rm(path, { force: true });
  return true;
}

/**
 * The values of every YAML file under `dir/<namespace>/`, each parsed by `parse(text, file,
 * namespace)` once per change (through `cache`, whose entries of files gone are dropped); files
 * that cannot be read or parse to null are left out. The policy and route folders use it.
 */
export async function readYamlFolder<T>(
  dir: string,
  cache: FileCache<T | null>,
  log: Logger,
  what: string,
  parse: (text: string, file: string, namespace: string) => T | null,
): Promise<T[]> {
  const values: T[] = [];
  const seen = new Set<string>();
  for (const [namespace, file] of await listStateFiles(dir, ['.yaml', '.yml'])) {
    seen.add(file);
    const value = await readCachedFile(file, cache, log, what, (text) => parse(text, file, namespace));
    if (value !== null && value !== undefined) values.push(value);
  }
  for (const file of cache.keys()) if (!seen.has(file)) cache.delete(file);
  return values;
}

/**
 * [namespace, path] of every file under `dir/<namespace>/` whose name ends in one of `extensions`
 * (dot files and temporary ".tmp" files left out), sorted by path.
 */
export async function listStateFiles(
  dir: string,
  extensions: readonly string[],
): Promise<[string, string][]> {
  const out: [string, string][] = [];
  for (const namespace of await readdirOrEmpty(dir)) {
    if (namespace.startsWith('.')) continue;
    for (const name of await readdirOrEmpty(join(dir, namespace))) {
      if (name.startsWith('.') || name.endsWith('.tmp')) continue;
      if (extensions.some((ext) => name.endsWith(ext))) out.push([namespace, join(dir, namespace, name)]);
    }
  }
  return out.sort((a, b) => (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
}

async function readdirOrEmpty(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir)).sort();
  } catch {
    return [];
  }
}
