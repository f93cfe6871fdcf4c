// `trellis demo --mesh`: the emojivoto example (examples/emojivoto) on the mesh, the way a user
// would run it by hand on one machine:
//   trellis up --state DIR                       (the control plane, on its default ports if free)
//   trellis apply --state DIR -f examples/emojivoto/services.yaml
//   trellis run --state DIR --namespace emojivoto --name emoji --port P -- node emoji.ts ...
//   ... the same for voting, then web, then vote-bot (which sends web --rate requests a second)
// DIR is the default state folder when it is free (demo-state.ts), so that `trellis stat`, `check`,
// `authz` and `identity` typed in another terminal find the demo; the caption says the command.
// The services reach each other by name (emoji.emojivoto:8080) through their sidecars. The view
// shows what `trellis stat -n emojivoto -o json` shows: the control plane's GET /api/stat, polled
// every refresh. On stop the workloads go first, then the control plane; then DIR is removed.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import http from 'node:http';
import { freeLoopbackPorts } from '../core/free-ports.ts';
import { fileURLToPath } from 'node:url';
import type { WorkloadStat } from '../control/metrics/collector.ts';
import type { WorkloadRow } from './live-view.ts';
import { statRow } from './stat.ts';
import { chooseDemoState, pasteable, preferredListen, type DemoState } from './demo-state.ts';
import {
  CLI,
  clock,
  EXAMPLES_DIR,
  fetchText,
  NODE_FLAGS,
  note,
  type DemoChild,
  type DemoScenario,
  type StartChild,
} from './demo-processes.ts';

const NAMESPACE = 'emojivoto';

/**
 * The CLI of the control plane, the runs and their sidecars. Compiled (dist/), the control plane
 * and the proxies need the .proto files of src/api beside them, which tsc does not copy; when the
 * build left them out, the sources run instead (from the checkout, with Node's type stripping).
 */
const MESH_CLI = ((): string => {
  if (
    CLI.endsWith('.ts') ||
    existsSync(fileURLToPath(new URL('../api/destination.proto', import.meta.url)))
  ) {
    return CLI;
  }
  const sources = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));
  return existsSync(sources) ? sources : CLI;
})();
const APP_DIR = EXAMPLES_DIR + 'emojivoto/';
/** The rows of the view, in this order: the entry point first, the traffic source last. */
const WORKLOADS = ['web', 'emoji', 'voting', 'vote-bot'] as const;

export class MeshDemo implements DemoScenario {
  private readonly rate: number;
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 2 });
  private state: string | null = null;
  private stateChoice: DemoState | null = null;
  private controlHttp: string | null = null;
  private webInbound: string | null = null;
  /** The apps and sidecars under `trellis run`, from its notes. */
  private readonly grandchildren: number[] = [];
  private lastRows: WorkloadRow[] = WORKLOADS.map((name) => emptyRow(name));

  constructor(rate: number) {
    this.rate = rate;
  }

  async start(start: StartChild): Promise<void> {
    this.stateChoice = await chooseDemoState();
    const state = (this.state = this.stateChoice.root);
    if (this.stateChoice.why !== null) note(`${this.stateChoice.why}: the demo runs over ${state}`);
    const [grpc, http] = [await preferredListen('127.0.0.1:8086'), await preferredListen('127.0.0.1:8084')];
    // prettier-ignore
    const control = start('control plane', MESH_CLI, [
      'up', '--state', state, '--grpc-listen', grpc, '--http-listen', http, '--log-level', 'warn',
    ], { wave: 0 });
    const ready = await control.ready;
    note(
      `control plane is up (pid ${control.proc.pid}, grpc ${ready.grpc}, http ${ready.http}, state ${state})`,
    );
    this.controlHttp = ready.http!;
    await applyFile(state, 'services.yaml');
    // emoji and voting accept only web's identity (mTLS); web is public.
    await applyFile(state, 'policy.yaml');

    const [emojiPort, votingPort, webPort, botPort] = await freeLoopbackPorts(4);
    await Promise.all([
      this.startService(start, 'emoji', emojiPort!),
      this.startService(start, 'voting', votingPort!),
    ]);
    await this.untilReady(['emoji', 'voting']);
    this.webInbound = (await this.startService(start, 'web', webPort!)).inbound ?? null;
    await this.untilReady(['web']);
    await this.startService(start, 'vote-bot', botPort!, ['--rate', String(this.rate)]);
    await this.untilScraped();
  }

  async rows(): Promise<WorkloadRow[]> {
    if (this.controlHttp === null) return this.lastRows;
    const text = await fetchText(this.agent, this.controlHttp, `/api/stat?namespace=${NAMESPACE}`);
    if (text === null) return this.lastRows;
    let stats: WorkloadStat[];
    try {
      stats = JSON.parse(text) as WorkloadStat[];
    } catch {
      return this.lastRows;
    }
    const byName = new Map(stats.map((s) => [s.name, s]));
    this.lastRows = WORKLOADS.map((name) => {
      const s = byName.get(name);
      return s === undefined ? emptyRow(name) : statRow(s);
    });
    return this.lastRows;
  }

  title(redraw: boolean): string[] {
    const stat = this.stateChoice === null ? '' : pasteable(this.stateChoice, ['stat', '-n', NAMESPACE]);
    if (!redraw) return [`${clock()}  inbound, last 10 s (${stat})`];
    const more =
      this.stateChoice === null
        ? []
        : ['check', `edges -n ${NAMESPACE}`, `authz -n ${NAMESPACE} voting`, `identity -n ${NAMESPACE} web`];
    return [
      `Trellis demo: emojivoto on the mesh. vote-bot sends ${this.rate} req/s to web, which calls emoji`,
      `and voting over gRPC; every call crosses two sidecars. Votes for :doughnut: fail on purpose.`,
      ...(this.webInbound === null ? [] : [`Vote yourself: http://${this.webInbound}/   Ctrl-C to stop.`]),
      ...(this.controlHttp === null ? [] : [`Dashboard: http://${this.controlHttp}/dashboard`]),
      ...(stat === '' ? [] : [`In another terminal: ${stat}   (also ${more.join(', ')})`]),
      `Inbound traffic of each workload over the last 10 s, at ${clock()}:`,
      '',
    ];
  }

  stopTraffic(): void {
    this.agent.destroy();
  }

  strays(): number[] {
    return this.grandchildren;
  }

  async cleanup(): Promise<void> {
    if (this.state !== null) await rm(this.state, { recursive: true, force: true });
    this.state = null;
  }

  /**
   * `trellis run` with one emojivoto service listening on 127.0.0.1:port; resolves with the
   * sidecar's addresses (from run's note) once the app printed its ready line.
   */
  private async startService(
    start: StartChild,
    name: string,
    port: number,
    extra: string[] = [],
  ): Promise<Record<string, string>> {
    const sidecar: Record<string, string> = {};
    // prettier-ignore
    const args = [
      'run', '--state', this.state!, '--namespace', NAMESPACE, '--name', name, '--port', String(port),
      '--', process.execPath, ...NODE_FLAGS, `${APP_DIR}${name}.ts`, '--listen', `127.0.0.1:${port}`,
      '--exit-on-stdin-close', ...extra,
    ];
    const child: DemoChild = start(name, MESH_CLI, args, {
      onStderrLine: (line) => {
        // trellis run: NAME.NS: app pid N, proxy pid M (inbound A, outbound B, admin C)
        const m = /app pid (\d+), proxy pid (\d+) \(inbound (\S+), outbound (\S+), admin (\S+)\)/.exec(line);
        if (m === null) return;
        Object.assign(sidecar, { app: m[1], proxy: m[2], inbound: m[3], outbound: m[4], admin: m[5] });
        this.grandchildren.push(Number(m[1]), Number(m[2]));
      },
    });
    const ready = await child.ready;
    const pids = sidecar.app === undefined ? '' : `, app pid ${sidecar.app}, proxy pid ${sidecar.proxy}`;
    const via = sidecar.inbound === undefined ? '' : `, inbound ${sidecar.inbound}, admin ${sidecar.admin}`;
    note(`${name} is up (pid ${child.proc.pid}${pids}, listen ${ready.listen}${via})`);
    return sidecar;
  }

  /** Waits (at most 6 s: the control plane scrapes every 2 s) until every workload shows as meshed. */
  private async untilScraped(): Promise<void> {
    const deadline = Date.now() + 6000;
    while (Date.now() < deadline) {
      if ((await this.rows()).every((r) => r.meshed === '1/1')) return;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  /** Waits (at most 10 s) until the control plane lists a ready endpoint of each service. */
  private async untilReady(names: readonly string[]): Promise<void> {
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      const text = await fetchText(this.agent, this.controlHttp!, '/api/services');
      if (text !== null && names.every((n) => hasReadyEndpoint(text, n))) return;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    note(`${names.join(', ')}: no ready endpoint after 10 s; going on`);
  }
}

/** Whether GET /api/services lists the service NAME.emojivoto with an endpoint (only ready ones show). */
function hasReadyEndpoint(servicesJson: string, name: string): boolean {
  try {
    const services = JSON.parse(servicesJson) as {
      name?: string;
      namespace?: string;
      ports?: { endpoints?: unknown[] }[];
    }[];
    const service = services.find((s) => s.name === name && s.namespace === NAMESPACE);
    return (service?.ports ?? []).some((p) => (p.endpoints ?? []).length > 0);
  } catch {
    return false;
  }
}

/** `trellis apply --state STATE -f examples/emojivoto/NAME`; throws when it fails. */
async function applyFile(state: string, name: string): Promise<void> {
  const file = `${APP_DIR}${name}`;
  const proc = spawn(process.execPath, [...NODE_FLAGS, MESH_CLI, 'apply', '--state', state, '-f', file], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  proc.stderr!.setEncoding('utf8');
  proc.stderr!.on('data', (d: string) => (stderr = (stderr + d).slice(-2000)));
  const [code] = (await once(proc, 'exit')) as [number | null];
  if (code !== 0) throw new Error(`trellis apply -f ${file} exited with ${code}: ${stderr.trim()}`);
  note(`applied ${file}`);
}

function emptyRow(name: string): WorkloadRow {
  return {
    name,
    direction: 'inbound',
    meshed: '0/1',
    success: null,
    rps: null,
    latencyMsP50: null,
    latencyMsP95: null,
    latencyMsP99: null,
    tcpConnections: null,
  };
}
