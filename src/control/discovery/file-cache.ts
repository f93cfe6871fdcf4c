// Reading the state folder's small files once per change: a file whose modification time and size
// are what the cache last saw is not read nor parsed again (and a bad one is not reported again on
// every scan). Shared by the discovery state (local-state.ts) and the policy files
// (../policy/state-files.ts).
import { readFile, stat } from 'node:fs/promises';
import type { Logger } from '../../core/log.ts';

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
