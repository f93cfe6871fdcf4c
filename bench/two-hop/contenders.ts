// The contenders of the two-hop benchmark, each a pair of proxies in front of the upstream app:
// load -> client-side proxy -> mutual TLS -> server-side proxy -> app. haproxy and nginx speak
// HTTP/1.1 keep-alive over TLS 1.3 between their two processes (configs beside this file);
// trellis is the product path: `trellis up` over a temporary state folder, the server registered
// as a meshed workload the way `trellis run` registers one, and two `trellis proxy` processes with
// fixed identities from the benchmark's PKI. Both proxies of a pair are pinned to the same CPU.
import { writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeServiceFile, writeWorkloadFile } from '../../src/control/discovery/local-state.ts';
import { freePort, startPinned, stop, waitForLine, waitForPort, tail, type Started } from '../processes.ts';
import * as targets from '../targets.ts';
import type { Pki } from './pki.ts';

export interface PairProxy {
  readonly role: 'client' | 'server';
  readonly process: Started;
}

/** A contender: where load goes (the client-side proxy) and both of its proxies. */
export interface Pair extends targets.Target {
  readonly proxies: readonly PairProxy[];
  /** The second hop's listener (the server-side proxy), for the mTLS checks. */
  readonly secondHop: { readonly host: string; readonly port: number };
  /** trellis only: the server-side proxy's admin listener (HOST:PORT) and the control plane. */
  readonly serverAdmin?: string;
  readonly controlPlane?: Started;
}

/** Where the client-side proxy sends its traffic: the service name trellis resolves. */
export const SERVICE = { name: 'server', namespace: 'default', port: 80 } as const;

function pair(
  name: string,
  port: number,
  proxies: PairProxy[],
  secondHopPort: number,
  extra: Partial<Pick<Pair, 'serverAdmin' | 'controlPlane'>> = {},
): Pair {
  const all = [...proxies.map((p) => p.process), ...(extra.controlPlane ? [extra.controlPlane] : [])];
  return {
    name,
    host: '127.0.0.1',
    port,
    process: proxies[0]?.process,
    proxies,
    secondHop: { host: '127.0.0.1', port: secondHopPort },
    ...extra,
    async close(): Promise<void> {
      for (const p of all) await stop(p);
    },
  };
}

/** Starts a config-file proxy and waits for its port; on failure stops what `started` holds. */
async function startListening(name: string, cpu: number | undefined, argv: string[], port: number) {
  const p = startPinned(name, cpu, argv);
  try {
    await waitForPort(p, port, targets.READY_TIMEOUT_MS);
  } catch (err) {
    await stop(p);
    throw err;
  }
  return p;
}

/** Runs `start` for each step; when one fails, stops the processes already started. */
async function allOrNothing(steps: ((started: Started[]) => Promise<void>)[]): Promise<Started[]> {
  const started: Started[] = [];
  try {
    for (const step of steps) await step(started);
    return started;
  } catch (err) {
    for (const p of started.reverse()) await stop(p);
    throw err;
  }
}

export async function startHaproxyPair(
  tools: targets.Tools,
  cpu: number | undefined,
  upstreamPort: number,
  pki: Pki,
): Promise<Pair> {
  const dir = targets.tempDir('haproxy-two-hop');
  const [serverPort, clientPort] = [await freePort(), await freePort()];
  const common = { CA_FILE: pki.rootFile };
  const start =
    (role: 'client' | 'server', values: Record<string, string | number>, port: number) =>
    async (started: Started[]): Promise<void> => {
      const cfg = join(dir, `haproxy-${role}.cfg`);
      writeFileSync(
        cfg,
        targets.fillTemplate(`two-hop/haproxy-${role}.cfg`, { ...common, ...values, PORT: port }),
      );
      started.push(await startListening(`haproxy-${role}`, cpu, [tools.haproxy, '-db', '-f', cfg], port));
    };
  const [server, client] = await allOrNothing([
    start('server', { CRT_FILE: pki.server.combinedFile, UPSTREAM_PORT: upstreamPort }, serverPort),
    start(
      'client',
      { CRT_FILE: pki.client.combinedFile, PEER_PORT: serverPort, PEER_NAME: pki.server.dnsName },
      clientPort,
    ),
  ]);
  const proxies: PairProxy[] = [
    { role: 'client', process: client! },
    { role: 'server', process: server! },
  ];
  return pair('haproxy', clientPort, proxies, serverPort);
}

export async function startNginxPair(
  tools: targets.Tools,
  cpu: number | undefined,
  upstreamPort: number,
  pki: Pki,
): Promise<Pair> {
  const [serverPort, clientPort] = [await freePort(), await freePort()];
  const start =
    (role: 'client' | 'server', values: Record<string, string | number>, port: number) =>
    async (started: Started[]): Promise<void> => {
      const dir = targets.tempDir(`nginx-two-hop-${role}`);
      const conf = join(dir, 'nginx.conf');
      const all = { ...values, CA_FILE: pki.rootFile, DIR: dir, PORT: port };
      writeFileSync(conf, targets.fillTemplate(`two-hop/nginx-${role}.conf`, all));
      const argv = [tools.nginx, '-e', 'stderr', '-p', dir, '-c', conf];
      started.push(await startListening(`nginx-${role}`, cpu, argv, port));
    };
  const leafFiles = (leaf: Pki['client']) => ({ CHAIN_FILE: leaf.chainFile, KEY_FILE: leaf.keyFile });
  const [server, client] = await allOrNothing([
    start('server', { ...leafFiles(pki.server), UPSTREAM_PORT: upstreamPort }, serverPort),
    start(
      'client',
      { ...leafFiles(pki.client), PEER_PORT: serverPort, PEER_NAME: pki.server.dnsName },
      clientPort,
    ),
  ]);
  const proxies: PairProxy[] = [
    { role: 'client', process: client! },
    { role: 'server', process: server! },
  ];
  return pair('nginx', clientPort, proxies, serverPort);
}

/** Waits (bounded) for `trellis up` to write control.json; returns its gRPC address. */
async function controlGrpcAddress(p: Started, stateDir: string): Promise<string> {
  const deadline = Date.now() + targets.READY_TIMEOUT_MS;
  let exited = false;
  void p.exited.then(() => (exited = true));
  while (Date.now() < deadline && !exited) {
    try {
      const info = JSON.parse(await readFile(join(stateDir, 'control.json'), 'utf8')) as { grpc?: unknown };
      if (typeof info.grpc === 'string') return info.grpc;
    } catch {
      // not written yet (it is renamed into place, so a partial file is never read)
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`trellis up: no control.json in ${stateDir}; output: ${tail(p.output())}`);
}

/** The {"event":"ready",...} addresses of a trellis proxy. */
function readyAddresses(p: Started): Promise<Record<string, string>> {
  return waitForLine(
    p,
    (line) =>
      targets.readyField(line, 'inbound') === undefined
        ? undefined
        : (JSON.parse(line) as Record<string, string>),
    targets.READY_TIMEOUT_MS,
  );
}

/**
 * The trellis pair. The control plane runs on `controlCpu` (the load generators' CPU): it is not
 * on the request path, and its CPU is not charged to the pair; the two proxies run on `cpu`.
 * `proxyArgs` go to both proxies (bench/tracing.ts: the tracing flags).
 */
export async function startTrellisPair(
  tools: targets.Tools,
  cpu: number | undefined,
  controlCpu: number | undefined,
  upstreamPort: number,
  pki: Pki,
  proxyArgs: readonly string[] = [],
): Promise<Pair> {
  const state = targets.tempDir('trellis-state');
  const cmd = targets.trellisCommand(tools);
  const any = '127.0.0.1:0';
  const listeners = ['--inbound-listen', any, '--outbound-listen', any, '--admin-listen', any];
  let grpc = '';
  let server: Record<string, string> = {};
  const clientPort = await freePort();
  const started = await allOrNothing([
    async (s) => {
      const argv = [...cmd, 'up', '--state', state, '--grpc-listen', any, '--http-listen', any];
      s.push(startPinned('trellis-control', controlCpu, [...argv, '--log-level', 'warn']));
      grpc = await controlGrpcAddress(s[0]!, state);
    },
    async (s) => {
      // prettier-ignore
      const argv = [...cmd, 'proxy', ...listeners, '--app-port', String(upstreamPort),
        '--destination-address', grpc, '--workload', SERVICE.name, '--namespace', SERVICE.namespace,
        '--identity-dir', pki.server.dir, '--log-level', 'warn', ...proxyArgs];
      s.push(startPinned('trellis-server', cpu, argv));
      server = await readyAddresses(s[1]!);
      const inbound = targets.portOf(server['inbound']!);
      // What `trellis run` writes: a service with a named target port, and the workload behind it
      // at its proxy's inbound listener, meshed, with the identity its certificate carries.
      const { name, namespace, port } = SERVICE;
      await writeServiceFile(state, namespace, name, { ports: [{ port, name: 'http', targetPort: 'http' }] });
      await writeWorkloadFile(state, namespace, `${name}-bench`, {
        service: name,
        address: '127.0.0.1',
        ports: [{ name: 'http', port: inbound }],
        meshed: true,
        identity: pki.server.spiffeId,
        ready: true,
        admin: server['admin']!,
      });
    },
    async (s) => {
      const destination = `127.0.0.1:${clientPort}=${SERVICE.name}.${SERVICE.namespace}:${SERVICE.port}`;
      // prettier-ignore
      const argv = [...cmd, 'proxy', ...listeners, '--destination', destination,
        '--destination-address', grpc, '--workload', 'client', '--namespace', SERVICE.namespace,
        '--identity-dir', pki.client.dir, '--log-level', 'warn', ...proxyArgs];
      s.push(startPinned('trellis-client', cpu, argv));
      // The ready line comes once every listener is bound. (No port probe: a connection that
      // closes without a byte would be forwarded as opaque TCP and open an mTLS connection.)
      await readyAddresses(s[2]!);
    },
  ]);
  const [control, serverProxy, clientProxy] = started;
  const proxies: PairProxy[] = [
    { role: 'client', process: clientProxy! },
    { role: 'server', process: serverProxy! },
  ];
  return pair('trellis', clientPort, proxies, targets.portOf(server['inbound']!), {
    serverAdmin: server['admin']!,
    controlPlane: control!,
  });
}
