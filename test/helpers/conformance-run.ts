// The mesh conformance setup (conformance-mesh.ts) with `trellis run` workloads instead of
// in-process proxies: one `trellis up` over a fresh state folder, the Services by `trellis apply`,
// each pod a `trellis run` of the echo app (test/fixtures/conformance-pod.ts), each client a
// `trellis run` of an app that only listens, with `--upstream` for the listeners bound for a Service
// port, and the routes by `trellis apply -f` / `--delete`, each waited for until the control plane
// serves it (GET /api/routes). On one machine a workload serves the one Service it is run for, so
// the Service `echo` gets two workloads of its own whose apps answer as the pods echo-v1 and
// echo-v2. Chosen by TRELLIS_CONFORMANCE_WORKLOADS=run (test/long/conformance-run.test.ts).
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runningControlFile } from '../../src/api/control-file.ts';
import { freePort, runCli, startCli, startUp, waitFor, type Running } from './cli.ts';
import { REPO } from './proxy-process.ts';
import { removeTempDir } from './temp-dir.ts';
import {
  conformanceMesh,
  servicesYaml,
  untilRoutesServed,
  type BoundListener,
  type ConformanceClient,
  type ConformanceMesh,
} from './conformance-mesh.ts';

const POD_APP = join(REPO, 'test/fixtures/conformance-pod.ts');
/** Clients kept running: the newest few (a test uses at most two at once). */
const LIVE_CLIENTS = 3;

/** The ports `conformance-pod.ts` printed for its proxy. */
async function proxyPorts(run: Running): Promise<{ inbound: number; outbound: number }> {
  return waitFor('a trellis run workload', async () => {
    if (run.proc.exitCode !== null) throw new Error(`trellis run exited: ${run.stderr()}`);
    const m = /proxy inbound=(\d+) outbound=(\d+)/.exec(run.stdout());
    return m === null ? null : { inbound: Number(m[1]), outbound: Number(m[2]) };
  });
}

export async function startConformanceRunMesh(meshNs: string): Promise<ConformanceMesh> {
  const root = await mkdtemp(join(tmpdir(), 'trellis-conformance-run-'));
  const stops: (() => Promise<unknown>)[] = [];
  const owner = { after: (fn: () => Promise<unknown>) => void stops.push(fn) };
  const close = async (): Promise<void> => {
    for (const stop of stops.reverse()) await stop().catch(() => {});
    await removeTempDir(root);
  };
  try {
    // What test/long/conformance-run.test.ts looks for: this setup, not the in-process one, ran.
    process.stderr.write(`conformance: trellis run workloads over ${root}\n`);
    await startUp(owner, root);
    const control = await runningControlFile(root);
    if (control === null) throw new Error('trellis up wrote no control file');
    const apply = async (yaml: string, remove: boolean): Promise<void> => {
      const file = join(root, `apply-${Date.now()}-${Math.random().toString(36).slice(2)}.yaml`);
      await writeFile(file, yaml);
      const r = await runCli(['apply', '--state', root, '-f', file, ...(remove ? ['--delete'] : [])]);
      if (r.code !== 0) throw new Error(`trellis apply${remove ? ' --delete' : ''}: ${r.stderr}`);
    };
    await apply(servicesYaml(meshNs), false);

    const run = async (name: string, namespace: string, pod: string, extra: string[] = []) => {
      const port = await freePort();
      // prettier-ignore
      const running = startCli(owner, ['run', '--state', root, '--name', name, '--namespace', namespace,
        '--port', String(port), '--restart', 'never', ...extra, '--', process.execPath, POD_APP, pod, namespace,
        String(port)]);
      return { running, ...(await proxyPorts(running)) };
    };
    const pods: Record<string, string> = {};
    for (const pod of ['echo-v1', 'echo-v2'])
      pods[pod] = `127.0.0.1:${(await run(pod, meshNs, pod)).inbound}`;
    for (const pod of ['echo-v1', 'echo-v2']) await run('echo', meshNs, pod);

    const live: Running[] = [];
    let clients = 0;
    const mesh = conformanceMesh({
      world: null,
      pods: pods as ConformanceMesh['pods'],
      async client(
        opts: { namespace?: string; bound?: readonly BoundListener[] } = {},
      ): Promise<ConformanceClient> {
        const bound = await Promise.all((opts.bound ?? []).map(() => freePort()));
        const upstreams = (opts.bound ?? []).flatMap((b, i) => [
          '--upstream',
          `${b.target.replace(':', `.${meshNs}:`)}=${bound[i]}`,
        ]);
        const client = await run(`client-${++clients}`, opts.namespace ?? meshNs, '-', upstreams);
        live.push(client.running);
        if (live.length > LIVE_CLIENTS) void live.shift()!.stop();
        return { outbound: client.outbound, bound };
      },
      async applyRoutes(yaml) {
        await apply(yaml, false);
        await untilRoutesServed(control.http, yaml, true);
        return async () => {
          await apply(yaml, true);
          await untilRoutesServed(control.http, yaml, false);
        };
      },
      close,
    });
    return mesh;
  } catch (error) {
    await close();
    throw error;
  }
}
