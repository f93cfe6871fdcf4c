// The mesh under attack: a control plane (in this process, from the tests' mesh helper) that
// registers the server as a meshed workload with its identity; two real `trellis proxy`
// processes started with bin/trellis (compiled dist/ when built) and fixed identities from a test
// CA: the server-side proxy in front of the oracle app, and a client-side proxy whose destination
// listener goes to the server over mTLS; the bystander canary; and the fuzzer's own client
// certificate. Ports are fixed (a base port and up) when free, so a reproducer's bytes, which name
// ports, replay as they were; otherwise any free ports.
import { existsSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { freePort, startPinned, stop, tail, waitForLine, type Started } from '../bench/processes.ts';
import { REPO } from '../test/helpers/proxy-process.ts';
import {
  idOf,
  issueLeaf,
  startMeshWorld,
  writeIdentityDir,
  type MeshWorld,
} from '../test/helpers/mesh-pki.ts';
import { startBystander, type Bystander } from './bystander.ts';
import { DIE_WITH_PARENT } from './die-with-parent.ts';
import { MESH_SERVICE, type Ports } from './context.ts';
import { startOracleApp, type OracleApp } from './oracle-app.ts';
import type { ListenerName } from './plan.ts';
import type { ClientTls } from './send.ts';

export interface RunningProxy {
  readonly role: 'server' | 'client';
  readonly process: Started;
  /** Lines the process wrote (stdout and stderr) so far. */
  logLines(): number;
  /** How it ended ("exit code 1", "signal SIGKILL") and its last output, or null while it runs. */
  ended(): string | null;
}

export interface Mesh {
  readonly ports: Ports;
  readonly listeners: Readonly<Record<ListenerName, number>>;
  readonly ids: { readonly server: string; readonly client: string; readonly fuzzer: string };
  readonly clientTls: ClientTls;
  readonly app: OracleApp;
  readonly bystander: Bystander;
  /** Whether the fixed ports were free (reproducers then replay byte for byte). */
  readonly fixedPorts: boolean;
  /** What runs the proxies: the compiled dist/ or the TypeScript sources. */
  readonly launcher: string;
  proxies(): readonly RunningProxy[];
  /** Stops both proxies and starts them again on the same ports. */
  restart(): Promise<void>;
  close(): Promise<void>;
}

const PORT_NAMES = [
  'app',
  'bystander',
  'server-inbound',
  'server-outbound',
  'server-admin',
  'client-inbound',
  'client-outbound',
  'client-admin',
  'client-mesh',
] as const;
type PortName = (typeof PORT_NAMES)[number];

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

async function choosePorts(base: number): Promise<{ ports: Record<PortName, number>; fixed: boolean }> {
  const fixed = Object.fromEntries(PORT_NAMES.map((n, i) => [n, base + i])) as Record<PortName, number>;
  if (base > 0 && (await Promise.all(Object.values(fixed).map(isFree))).every(Boolean))
    return { ports: fixed, fixed: true };
  const ports = {} as Record<PortName, number>;
  for (const n of PORT_NAMES) ports[n] = await freePort();
  return { ports, fixed: false };
}

function spawnProxy(role: 'server' | 'client', argv: string[]): Promise<RunningProxy> {
  const p = startPinned(`trellis-${role}`, undefined, [
    ...DIE_WITH_PARENT,
    join(REPO, 'bin/trellis'),
    'proxy',
    ...argv,
  ]);
  let lines = 0;
  const count = (d: Buffer) => {
    for (let i = d.indexOf(0x0a); i !== -1; i = d.indexOf(0x0a, i + 1)) lines++;
  };
  p.child.stdout!.on('data', count);
  p.child.stderr!.on('data', count);
  let end: string | null = null;
  p.child.once('exit', (code, signal) => {
    end = `${signal !== null ? `signal ${signal}` : `exit code ${code}`}; last output: ${tail(p.output(), 3000)}`;
  });
  const proxy: RunningProxy = { role, process: p, logLines: () => lines, ended: () => end };
  return waitForLine(p, (line) => (line.includes('"ready"') ? proxy : undefined), 30_000);
}

export async function startMesh(opts: { basePort: number }): Promise<Mesh> {
  const { ports: port, fixed } = await choosePorts(opts.basePort);
  const world: MeshWorld = await startMeshWorld();
  const app = await startOracleApp(port.app);
  const bystander = await startBystander(port.bystander);
  const ids = { server: idOf('server'), client: idOf('client'), fuzzer: idOf('fuzzer') };
  const dirs: Record<'server' | 'client', string> = { server: '', client: '' };
  for (const role of ['server', 'client'] as const) {
    const leaf = await issueLeaf(world.ca, ids[role]);
    dirs[role] = await writeIdentityDir(join(world.root, 'identities', role), leaf, world.ca.certPem);
  }
  const fuzzerLeaf = await issueLeaf(world.ca, ids.fuzzer);
  const at = (name: PortName) => `127.0.0.1:${port[name]}`;
  const common = [
    '--app-port',
    String(port.app),
    '--destination-address',
    world.destination,
    '--log-level',
    'warn',
  ];
  // prettier-ignore
  const serverArgv = ['--inbound-listen', at('server-inbound'), '--outbound-listen', at('server-outbound'),
    '--admin-listen', at('server-admin'), '--workload', 'server', '--identity-dir', dirs.server, ...common];
  // prettier-ignore
  const clientArgv = ['--inbound-listen', at('client-inbound'), '--outbound-listen', at('client-outbound'),
    '--admin-listen', at('client-admin'), '--destination', `${at('client-mesh')}=${MESH_SERVICE}`,
    '--workload', 'client', '--identity-dir', dirs.client, ...common];
  let running: RunningProxy[] = [];
  const startBoth = async () => {
    const started = await Promise.allSettled([
      spawnProxy('server', serverArgv),
      spawnProxy('client', clientArgv),
    ]);
    running = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
    const failed = started.find((s) => s.status === 'rejected');
    if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
  };
  await startBoth();
  await world.register('server', 'server-1', port['server-inbound'], ids.server);
  const stopBoth = async () => {
    await Promise.all(
      running.map(async (p) => {
        await stop(p.process, 0); // no drain: the mesh is thrown away
        // stop() sends SIGKILL without waiting: the ports are free once the process is gone.
        await Promise.race([p.process.exited, new Promise((r) => setTimeout(r, 5000))]);
      }),
    );
    running = [];
  };
  return {
    ports: { app: port.app, bystander: port.bystander, serverInbound: port['server-inbound'] },
    listeners: {
      'server-inbound': port['server-inbound'],
      'server-outbound': port['server-outbound'],
      'server-admin': port['server-admin'],
      'client-mesh': port['client-mesh'],
      'client-outbound': port['client-outbound'],
      'client-inbound': port['client-inbound'],
      'client-admin': port['client-admin'],
    },
    ids,
    clientTls: { key: fuzzerLeaf.keyPem, cert: fuzzerLeaf.certPem, ca: world.ca.certPem },
    app,
    bystander,
    fixedPorts: fixed,
    launcher: existsSync(join(REPO, 'dist/cli/main.js'))
      ? 'dist/ (compiled)'
      : 'src/ (TypeScript sources: run npm run build)',
    proxies: () => running,
    async restart() {
      await stopBoth();
      await startBoth();
    },
    async close() {
      await stopBoth();
      await Promise.all([app.close(), bystander.close()]);
      await world.close();
    },
  };
}
