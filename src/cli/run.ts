// `trellis run`: one workload beside its sidecar proxy on one machine. It finds the control plane
// of `trellis up` (control.json in the state folder), starts `trellis proxy` (every listener on a
// free loopback port, service names resolved through the Destination API), then the app with
// HTTP_PROXY pointing at the proxy's outbound listener, and registers the workload in the state
// folder: its address is the proxy's inbound listener, so traffic to it goes through the sidecar,
// and it becomes ready once the app accepts connections on its port. SIGINT/SIGTERM go to the
// app; when the app exits the registration is withdrawn, the proxy stopped, and `trellis run`
// exits with the app's exit code.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFile, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { constants } from 'node:os';
import { fileURLToPath } from 'node:url';
import { ConfigError, TrellisError } from '../core/errors.ts';
import {
  type ServiceFile,
  servicePath,
  workloadPath,
  writeServiceFile,
  writeWorkloadFile,
} from '../control/discovery/local-state.ts';
import { readControlFile } from '../control/server.ts';
import { spiffeId } from '../proxy/identity/provider.ts';
import { parse as parseYaml } from 'yaml';
import { type FlagSpec, formatHelp, parseFlags } from './flags.ts';
import { STATE_FLAG, stateFolder } from './targeting.ts';
import { readyLine } from './ready-line.ts';
import { WorkloadToken } from './workload-token.ts';

export const summary = 'run a workload beside its proxy and register it with `trellis up`';

const FLAGS: FlagSpec[] = [
  { name: 'name', kind: 'string', help: 'the workload and the service it serves (required)' },
  { name: 'port', kind: 'number', help: 'the port the app listens on at 127.0.0.1 (required)' },
  { name: 'namespace', kind: 'string', help: 'its namespace (default: default)' },
  STATE_FLAG,
  {
    name: 'upstream',
    kind: 'string',
    repeatable: true,
    help: 'SVC.NS:PORT=LOCALPORT: the proxy listens on 127.0.0.1:LOCALPORT for that service; repeatable',
  },
  {
    name: 'service-account',
    kind: 'string',
    help: 'the service account of its identity (default: NAME)',
  },
  {
    name: 'no-mesh',
    kind: 'boolean',
    help: 'no identity and no mTLS for this workload (it registers as unmeshed)',
  },
  { name: 'proxy-log-level', kind: 'string', help: "the proxy's log level (default warn)" },
];

const USAGE = `Usage: trellis run --name NAME --port APP_PORT [options] -- COMMAND [ARGS...]

Runs COMMAND beside a \`trellis proxy\` and registers it with \`trellis up\` as a workload of the
service NAME. When that service does not exist in the state folder (see \`trellis apply\`), it is
created with one port, APP_PORT, whose target port is named "http". The workload registers its
proxy's inbound port under each named target port of the service: a service port whose targetPort
is a number does not reach it. The app gets HTTP_PROXY (its proxy's outbound listener) and
TRELLIS_PROXY_{INBOUND,OUTBOUND,ADMIN}; \`trellis run\` exits with the app's exit code.

The workload is meshed: its proxy gets the identity
spiffe://TRUST-DOMAIN/ns/NAMESPACE/sa/SERVICE-ACCOUNT from the control plane (with a token that
\`trellis run\` mints and renews, valid while the workload is registered), talks mTLS to the other
meshed workloads and applies their inbound authorization policy. --no-mesh opts out.`;

/** The CLI this process runs from (src/cli/main.ts or dist/cli/main.js). */
const CLI = fileURLToPath(
  new URL(`./main${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url),
);
/** What bin/trellis sets for a proxy (see there): one malloc arena, eager trimming. */
const PROXY_MALLOC_ENV = { MALLOC_ARENA_MAX: '1', MALLOC_TRIM_THRESHOLD_: '65536' };
/** Node flags the proxy inherits (memory settings, say), without debugger or test flags. */
const NODE_FLAGS = process.execArgv.filter((a) => !/^--(inspect|debug|test|watch)/.test(a));
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

interface RunOptions {
  readonly name: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly mesh: boolean;
  readonly appPort: number;
  readonly root: string;
  readonly upstreams: readonly { target: string; localPort: number }[];
  readonly proxyLogLevel: string;
  readonly command: readonly string[];
}

function parseOptions(argv: string[]): RunOptions {
  const { values, rest } = parseFlags(argv, FLAGS);
  const name = values.get('name') as string | undefined;
  if (name === undefined || !DNS_LABEL.test(name)) throw new ConfigError('--name', 'required: a DNS label');
  const namespace = (values.get('namespace') as string | undefined) ?? 'default';
  if (!DNS_LABEL.test(namespace)) throw new ConfigError('--namespace', 'expected a DNS label');
  const appPort = values.get('port') as number | undefined;
  if (appPort === undefined || appPort < 1 || appPort > 65535) {
    throw new ConfigError('--port', 'required: the app port 1..65535');
  }
  const root = stateFolder(values.get('state') as string | undefined);
  const upstreams = ((values.get('upstream') as string[] | undefined) ?? []).map((spec) => {
    const match = /^([a-z0-9.-]+:\d{1,5})=(\d{1,5})$/.exec(spec);
    if (match === null || Number(match[2]) < 1 || Number(match[2]) > 65535) {
      throw new ConfigError('--upstream', `expected SVC.NS:PORT=LOCALPORT, got '${spec}'`);
    }
    return { target: match[1]!, localPort: Number(match[2]) };
  });
  if (rest.length === 0) throw new ConfigError('', 'trellis run: the command to run goes after --');
  const serviceAccount = (values.get('service-account') as string | undefined) ?? name;
  if (!DNS_LABEL.test(serviceAccount)) throw new ConfigError('--service-account', 'expected a DNS label');
  return {
    name,
    namespace,
    serviceAccount,
    mesh: values.get('no-mesh') !== true,
    appPort,
    root,
    upstreams,
    proxyLogLevel: (values.get('proxy-log-level') as string | undefined) ?? 'warn',
    command: rest,
  };
}

export async function run(argv: string[]): Promise<number> {
  const dashDash = argv.indexOf('--');
  const own = dashDash === -1 ? argv : argv.slice(0, dashDash);
  if (own.includes('--help') || own.includes('-h')) {
    process.stdout.write(formatHelp(USAGE, FLAGS) + '\n');
    return 0;
  }
  const options = parseOptions(argv);
  const control = await readControlFile(options.root);
  if (control === null) {
    throw new TrellisError(
      'TRELLIS_ERR_NO_CONTROL_PLANE',
      `no control plane runs over ${options.root} (start \`trellis up --state ${options.root}\` first)`,
    );
  }
  const targetNames = await ensureService(options);
  return runWorkload(options, control.grpc, control.trustDomain ?? 'cluster.local', targetNames);
}

/** The named target ports of the service NAME, created first when it does not exist. */
async function ensureService(options: RunOptions): Promise<string[]> {
  const path = servicePath(options.root, options.namespace, options.name);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    const service: ServiceFile = { ports: [{ port: options.appPort, name: 'http', targetPort: 'http' }] };
    await writeServiceFile(options.root, options.namespace, options.name, service);
    note(`created service ${options.name}.${options.namespace} with port ${options.appPort}`);
    return ['http'];
  }
  const ports = ((parseYaml(text) as ServiceFile | null)?.ports ?? []) as ServiceFile['ports'];
  const named = ports.flatMap((p) => (typeof p.targetPort === 'string' ? [p.targetPort] : []));
  const numbered = ports.filter((p) => typeof p.targetPort !== 'string').map((p) => p.port);
  if (numbered.length > 0) {
    note(
      `service ${options.name}.${options.namespace} port(s) ${numbered.join(', ')} target a port number; ` +
        'name the target port (targetPort: NAME) to reach this workload through its proxy',
    );
  }
  return [...new Set(named)];
}

async function runWorkload(
  options: RunOptions,
  grpc: string,
  trustDomain: string,
  targetNames: string[],
): Promise<number> {
  const instance = `${options.name}-${process.pid}`;
  const identity = options.mesh ? spiffeId(trustDomain, options.namespace, options.serviceAccount) : null;
  const token = options.mesh ? await WorkloadToken.start(options, instance, note) : null;
  const args = proxyArgs(options, grpc);
  if (token !== null) {
    // prettier-ignore
    args.push(
      '--identity-address', grpc, '--identity-token-file', token.path, '--trust-domain', trustDomain,
      '--service-account', options.serviceAccount, '--policy-address', grpc,
    );
  }
  const proxy = spawn(process.execPath, [...NODE_FLAGS, CLI, ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, ...PROXY_MALLOC_ENV },
    // Its own process group: Ctrl-C on a terminal reaches the app, and the proxy outlives it.
    detached: true,
  });
  const proxyExit = once(proxy, 'exit').then(([code]) => code as number | null);
  let app: ChildProcess | null = null;
  let registered = false;
  const register = (ready: boolean, addresses: Record<string, string>) =>
    writeWorkloadFile(options.root, options.namespace, instance, {
      service: options.name,
      address: '127.0.0.1',
      port: portOf(addresses.inbound!),
      ports: targetNames.map((name) => ({ name, port: portOf(addresses.inbound!) })),
      appPort: options.appPort,
      meshed: options.mesh,
      ...(identity === null ? {} : { identity }),
      ready,
      admin: addresses.admin!,
    }).then(() => void (registered = true));

  let signals = 0;
  const forward = (signal: NodeJS.Signals): void => {
    signals++;
    if (app === null) proxy.kill('SIGTERM');
    else app.kill(signals > 1 ? 'SIGKILL' : signal); // a second signal: no more waiting
  };
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);
  process.on('SIGHUP', forward); // a closed terminal must not orphan the app or the proxy
  try {
    let addresses: Record<string, string>;
    try {
      addresses = await Promise.race([
        readyLine(proxy, { what: 'the proxy', onExit: () => 'the proxy exited before it was ready' }),
        proxyExit.then((code) => {
          throw new TrellisError(
            'TRELLIS_ERR_PROXY_EXITED',
            `the proxy exited with ${code} before it was ready`,
          );
        }),
      ]);
    } catch (error) {
      if (signals > 0) return 130; // stopped while starting
      throw error;
    }
    if (signals > 0) return 130;
    await register(false, addresses);
    app = spawn(options.command[0]!, options.command.slice(1), {
      stdio: 'inherit',
      env: appEnvironment(options, addresses),
    });
    const appExit = new Promise<number>((resolve) => {
      app!.once('exit', (code, signal) =>
        resolve(code ?? 128 + (signal === null ? 0 : (constants.signals[signal] ?? 0))),
      );
      app!.once('error', (error) => {
        note(`cannot start ${options.command[0]}: ${error.message}`);
        resolve(127);
      });
    });
    note(
      `${options.name}.${options.namespace}: app pid ${app.pid}, proxy pid ${proxy.pid} ` +
        `(inbound ${addresses.inbound}, outbound ${addresses.outbound}, admin ${addresses.admin})`,
    );
    let exited = false;
    void appExit.then(() => (exited = true));
    void proxyExit.then(() => {
      if (exited) return;
      note('the proxy exited; stopping the app');
      app?.kill('SIGTERM');
    });
    if (await waitForPort(options.appPort, () => exited)) {
      await register(true, addresses).catch((error: unknown) =>
        note(`cannot mark the workload ready: ${(error as Error).message}`),
      );
    }
    return await appExit;
  } finally {
    process.off('SIGINT', forward);
    process.off('SIGTERM', forward);
    process.off('SIGHUP', forward);
    if (app !== null) await stopProcess(app);
    if (registered) await rm(workloadPath(options.root, options.namespace, instance), { force: true });
    await stopProcess(proxy);
    await token?.stop();
  }
}

function proxyArgs(options: RunOptions, grpc: string): string[] {
  const any = '127.0.0.1:0';
  // prettier-ignore
  return [
    'proxy', '--inbound-listen', any, '--outbound-listen', any, '--admin-listen', any,
    '--app-port', String(options.appPort), '--destination-address', grpc,
    '--workload', options.name, '--namespace', options.namespace,
    '--log-level', options.proxyLogLevel, '--drain-grace-ms', '2000',
    ...options.upstreams.flatMap((u) => ['--destination', `127.0.0.1:${u.localPort}=${u.target}`]),
  ];
}

/** The app's environment: ours, with its HTTP proxy and the TRELLIS_* addresses of its sidecar. */
function appEnvironment(options: RunOptions, addresses: Record<string, string>): NodeJS.ProcessEnv {
  const proxyUrl = `http://${addresses.outbound}`;
  return {
    ...process.env,
    HTTP_PROXY: proxyUrl,
    http_proxy: proxyUrl,
    grpc_proxy: proxyUrl,
    // Loopback stays direct (the proxy itself, the app's own port); service names go through it.
    NO_PROXY: 'localhost,127.0.0.1',
    no_proxy: 'localhost,127.0.0.1',
    TRELLIS_WORKLOAD: options.name,
    TRELLIS_NAMESPACE: options.namespace,
    TRELLIS_PROXY_OUTBOUND: addresses.outbound,
    TRELLIS_PROXY_INBOUND: addresses.inbound,
    TRELLIS_PROXY_ADMIN: addresses.admin,
  };
}

/** TCP connects to 127.0.0.1:port every 100 ms until one is accepted (true) or `gone()` (false). */
async function waitForPort(port: number, gone: () => boolean): Promise<boolean> {
  while (!gone()) {
    const accepted = await new Promise<boolean>((resolve) => {
      const socket = connect({ host: '127.0.0.1', port });
      socket.setTimeout(1000, () => socket.destroy());
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => {}); // refused: not listening yet ('close' follows)
      socket.once('close', () => resolve(false));
    });
    if (accepted) return !gone();
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return false;
}

/** SIGTERM, then SIGKILL after 5 s; resolves once the process has exited. */
async function stopProcess(proc: ChildProcess): Promise<void> {
  if (proc.pid === undefined || proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = once(proc, 'exit');
  proc.kill('SIGTERM');
  const killer = setTimeout(() => proc.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(killer);
}

function portOf(address: string): number {
  return Number(address.slice(address.lastIndexOf(':') + 1));
}

function note(text: string): void {
  process.stderr.write(`trellis run: ${text}\n`);
}
