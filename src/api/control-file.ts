// `<state>/control.json`: where the control plane of `trellis up` listens, so that the other
// commands and the proxies of `trellis run` find it (and find it again after it restarts on other
// ports). `trellis up` writes it once its APIs are bound and removes it when it stops. Nothing
// here loads more than node:fs: `trellis run` and every proxy read it. It is a contract between
// the control plane and its clients, like the .proto files beside it.
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** Where a running `trellis up` listens. */
export interface ControlFile {
  /** Its gRPC APIs (Destination, Policy, Identity), "host:port". */
  readonly grpc: string;
  /** Its HTTP API, "host:port". */
  readonly http: string;
  readonly pid: number;
  /** The trust domain of the identities the control plane issues (absent: cluster.local). */
  readonly trustDomain?: string;
  /**
   * Where the proxies of `trellis run` export trace spans, and their sample ratio (docs/tracing.md);
   * `tokenFile`: the bearer token file of the control plane's own collector (absent for another).
   */
  readonly tracing?: {
    readonly collector: string;
    readonly sampleRatio: number;
    readonly tokenFile?: string;
  };
}

export function controlFilePath(root: string): string {
  return join(root, 'control.json');
}

export async function writeControlFile(root: string, info: ControlFile): Promise<void> {
  const tmp = `${controlFilePath(root)}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify(info, null, 2) + '\n', { mode: 0o600 }); // the state folder's rule
  await rename(tmp, controlFilePath(root));
}

/** The control file of `root`, or null when there is none (or it is not one). */
export async function readControlFile(root: string): Promise<ControlFile | null> {
  try {
    return parseControlFile(await readFile(controlFilePath(root), 'utf8'));
  } catch {
    return null;
  }
}

/** The control file at `path`, read synchronously (at startup); null when there is none. */
export function readControlFileSync(path: string): ControlFile | null {
  try {
    return parseControlFile(readFileSync(path, 'utf8'));
  } catch {
    return null;
  }
}

/** A control file's text as a ControlFile; null when it is not one. */
export function parseControlFile(text: string): ControlFile | null {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return null;
  }
  const info = raw as Partial<ControlFile> | null;
  const pid = info?.pid;
  if (typeof info?.grpc !== 'string' || typeof info.http !== 'string') return null;
  if (typeof pid !== 'number' || !Number.isInteger(pid) || pid <= 0) return null;
  const trustDomain = typeof info.trustDomain === 'string' ? { trustDomain: info.trustDomain } : {};
  const t = info.tracing;
  const tracing =
    typeof t === 'object' &&
    t !== null &&
    typeof t.collector === 'string' &&
    typeof t.sampleRatio === 'number'
      ? {
          tracing: {
            collector: t.collector,
            sampleRatio: t.sampleRatio,
            ...(typeof t.tokenFile === 'string' ? { tokenFile: t.tokenFile } : {}),
          },
        }
      : {};
  return { grpc: info.grpc, http: info.http, pid, ...trustDomain, ...tracing };
}

/** The control file of `root` while its process lives (a crashed `trellis up` leaves one behind), or null. */
export async function runningControlFile(root: string): Promise<ControlFile | null> {
  const info = await readControlFile(root);
  return info !== null && isAlive(info.pid) ? info : null;
}

/** Whether a process with this id exists (EPERM: it does, but is not ours to signal). */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export async function removeControlFile(root: string): Promise<void> {
  await rm(controlFilePath(root), { force: true });
}
