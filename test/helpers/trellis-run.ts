// What the end-to-end tests of `trellis up` / `trellis run` share: a control plane over a temp
// state folder, the workload registrations in it, the pids `trellis run` reports, whether a
// process is gone (a zombie counts as gone), the members of a process group (from /proc), and a
// reaper that SIGKILLs, at the end of the test, every process the test learnt of, so that nothing
// outlives a failed test.
import { readdir, readFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, type Running, startCli, waitFor } from './cli.ts';
import { NODE, REPO } from './proxy-process.ts';

const HELLO = join(REPO, 'test/fixtures/hello-server.ts');

type After = { after(fn: () => Promise<unknown> | void): void };

/** `trellis up` over `root` on free ports; resolves once ready, with its addresses. */
export async function startUp(
  t: After,
  root: string,
  extra: string[] = [],
): Promise<Running & { grpc: string; http: string }> {
  // prettier-ignore
  const up = startCli(t, [
    'up', '--state', root, '--grpc-listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0',
    '--log-level', 'warn', ...extra,
  ]);
  const ready = await waitFor('trellis up', async () => {
    const line = up
      .stdout()
      .split('\n')
      .find((l) => l.includes('"ready"'));
    return line === undefined ? null : (JSON.parse(line) as { grpc: string; http: string });
  });
  return Object.assign(up, { grpc: ready.grpc, http: ready.http });
}

export interface Registration {
  readonly file: string;
  readonly service: string;
  readonly port: number;
  readonly ready: boolean;
  readonly admin: string;
}

/** The workload registrations of a namespace, parsed (files being replaced are skipped). */
export async function registrations(root: string, namespace = 'default'): Promise<Registration[]> {
  const dir = join(root, 'workloads', namespace);
  const out: Registration[] = [];
  for (const file of await readdir(dir).catch(() => [] as string[])) {
    if (!file.endsWith('.json')) continue;
    try {
      out.push({
        file,
        ...(JSON.parse(await readFile(join(dir, file), 'utf8')) as Omit<Registration, 'file'>),
      });
    } catch {
      // renamed away meanwhile
    }
  }
  return out;
}

/** The ready registration of service `service` (the first, when several), once there is one. */
export function readyRegistration(
  root: string,
  service: string,
  namespace = 'default',
): Promise<Registration> {
  return waitFor(`${service} ready`, async () => {
    return (await registrations(root, namespace)).find((r) => r.service === service && r.ready) ?? null;
  });
}

/** The app and proxy pids of the last "app pid N, proxy pid M" line of `trellis run`. */
export function reportedPids(stderr: string): { app: number; proxy: number } | null {
  const all = [...stderr.matchAll(/app pid (\d+), proxy pid (\d+)/g)];
  const last = all.at(-1);
  return last === undefined ? null : { app: Number(last[1]), proxy: Number(last[2]) };
}

/** Whether process `pid` has exited (gone, or a zombie not reaped yet). */
export function isGone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z';
  } catch {
    return true;
  }
}

/** [pid, state, parent pid, process group] of every process. */
async function processTable(): Promise<[number, string, number, number][]> {
  const out: [number, string, number, number][] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.push([Number(name), fields[0]!, Number(fields[1]), Number(fields[2])]);
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/** The live processes of process group `pgid`. */
export async function groupMembers(pgid: number): Promise<number[]> {
  return (await processTable())
    .filter(([, state, , group]) => group === pgid && state !== 'Z')
    .map(([pid]) => pid);
}

/** `pid` and its live descendants (what a reaper must kill whether they share a group or not). */
export async function familyOf(pid: number): Promise<number[]> {
  const table = await processTable();
  const family = new Set([pid]);
  for (let grew = true; grew;) {
    grew = false;
    for (const [child, state, parent] of table) {
      if (state !== 'Z' && family.has(parent) && !family.has(child)) {
        family.add(child);
        grew = true;
      }
    }
  }
  return [...family];
}

/** Collects pids to SIGKILL when the test ends, whatever happened. */
export function reaper(t: After): (pids: Iterable<number>) => void {
  const pids = new Set<number>();
  t.after(() => {
    for (const pid of pids) {
      try {
        if (!isGone(pid)) process.kill(pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
  });
  return (more) => {
    for (const pid of more) pids.add(pid);
  };
}

/**
 * `trellis run` of two hello servers over `root`: `server`, and `client` whose proxy reaches
 * server.default:80 at local port `toServer`; resolves once both are registered ready, with their
 * processes handed to `reap`.
 */
export async function startServerAndClient(
  t: After,
  root: string,
  reap: (pids: Iterable<number>) => void,
): Promise<{ runs: Running[]; toServer: number }> {
  const [serverPort, clientPort, toServer] = (await Promise.all([freePort(), freePort(), freePort()])) as [
    number,
    number,
    number,
  ];
  const runs = [
    // prettier-ignore
    startCli(t, ['run', '--state', root, '--name', 'server', '--port', String(serverPort), '--', NODE, HELLO, String(serverPort)]),
    // prettier-ignore
    startCli(t, [
      'run', '--state', root, '--name', 'client', '--port', String(clientPort),
      '--upstream', `server.default:80=${toServer}`, '--', NODE, HELLO, String(clientPort),
    ]),
  ];
  for (const name of ['server', 'client']) await readyRegistration(root, name);
  for (const run of runs) {
    const pids = await waitFor('pids', async () => reportedPids(run.stderr()));
    reap([pids.app, pids.proxy]);
  }
  return { runs, toServer };
}
