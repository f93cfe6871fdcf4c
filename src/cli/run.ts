// `trellis run`: one workload beside its sidecar proxy on one machine. It finds the control plane
// of `trellis up` (control.json in the state folder), joins the service NAME (or creates it:
// run-service.ts), and runs the proxy and the app under its supervision (run-workload.ts): the
// app gets HTTP_PROXY pointing at the proxy's outbound listener, the workload is registered in the
// state folder under a lease (its address is the proxy's inbound listener, so traffic to it goes
// through the sidecar) and is ready while the app accepts connections; a proxy or app that exits
// is started again as --restart says; both die with `trellis run`, however it dies.
//
// This command stays up beside every workload, so it loads little: no gRPC, no YAML (unless a
// hand-written service file needs it), no validation library.
import { connect } from 'node:net';
import { ConfigError, TrellisError } from '../core/errors.ts';
import { isPort } from '../core/port.ts';
import { readControlFile } from '../api/control-file.ts';
import { type FlagSpec, formatHelp, parseFlags } from './flags.ts';
import { STATE_FLAG, stateFolder } from './targeting.ts';
import { RESTART_POLICIES, type RestartPolicy } from './run-restart.ts';
import { DEFAULT_SERVICE_PORT, joinService } from './run-service.ts';
import { note, type WorkloadOptions, WorkloadSupervisor } from './run-workload.ts';
import { SUMMARIES } from './summaries.ts';
import { MAX_LEASE_MS } from '../control/discovery/state-layout.ts';

export const summary = SUMMARIES.run;

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
  {
    name: 'service-port',
    kind: 'number',
    help: `the service's port when this creates it (default ${DEFAULT_SERVICE_PORT})`,
  },
  {
    name: 'restart',
    kind: 'string',
    help: 'on-failure (default), always or never: when to start the app again (the proxy: unless never)',
  },
  { name: 'proxy-log-level', kind: 'string', help: "the proxy's log level (default warn)" },
  {
    name: 'lease-ms',
    kind: 'number',
    help: 'how long the registration outlives a trellis run that dies without withdrawing it (default 10000, 1000..3600000; renewed every third of it)',
  },
];

const USAGE = `Usage: trellis run --name NAME --port APP_PORT [options] -- COMMAND [ARGS...]

Runs COMMAND beside a \`trellis proxy\` and registers it with \`trellis up\` as a workload of the
service NAME. When that service does not exist in the state folder (see \`trellis apply\`), it is
created with one port, ${DEFAULT_SERVICE_PORT} (--service-port), whose target port is named "http": clients call
http://NAME.NAMESPACE/ (or http://NAME/ from the same namespace), whichever instance started
first. The workload registers its proxy's inbound port under each named target port of the
service (a service port whose targetPort is a number does not reach it), and says which service
port(s) it joined. It is ready (an endpoint) while the app accepts connections on APP_PORT, so
it refuses to start when another process already listens there.

The app gets HTTP_PROXY (its proxy's outbound listener), NODE_USE_ENV_PROXY=1 (so that Node's
fetch and http use it) and TRELLIS_PROXY_{INBOUND,OUTBOUND,ADMIN}. It runs in its own process
group: signals to \`trellis run\` reach the whole group. An app that exits is started again after
a backoff (1 s doubling to 30 s, reset after 60 s of running) when --restart says so: on-failure
(the default: a non-zero exit or a signal), always, or never; a proxy that exits is started again
on the same ports unless --restart=never, with the control plane's address and tracing as its
control.json says then. The proxy and the app die with \`trellis run\`, even
when it is killed with SIGKILL, and its registration is a lease that expires without it.
\`trellis run\` exits with the app's exit code and says why on its last line.

The workload is meshed: its proxy gets the identity
spiffe://TRUST-DOMAIN/ns/NAMESPACE/sa/SERVICE-ACCOUNT from the control plane (with a token that
\`trellis run\` mints and renews, valid while the workload is registered), talks mTLS to the other
meshed workloads and applies their inbound authorization policy. --no-mesh opts out. The proxy
follows the control plane when it restarts, on the same ports or others.`;

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

interface RunOptions extends WorkloadOptions {
  /** --service-port, when given. */
  readonly servicePort?: number;
}

function parseOptions(argv: string[]): RunOptions {
  const { values, rest } = parseFlags(argv, FLAGS);
  const name = values.get('name') as string | undefined;
  if (name === undefined || !DNS_LABEL.test(name)) throw new ConfigError('--name', 'required: a DNS label');
  const namespace = (values.get('namespace') as string | undefined) ?? 'default';
  if (!DNS_LABEL.test(namespace)) throw new ConfigError('--namespace', 'expected a DNS label');
  const appPort = values.get('port') as number | undefined;
  if (appPort === undefined || !isPort(appPort)) {
    throw new ConfigError('--port', 'required: the app port 1..65535');
  }
  const servicePort = values.get('service-port') as number | undefined;
  if (servicePort !== undefined && !isPort(servicePort)) {
    throw new ConfigError('--service-port', 'expected a port 1..65535');
  }
  const restart = (values.get('restart') as string | undefined) ?? 'on-failure';
  if (!RESTART_POLICIES.includes(restart as RestartPolicy)) {
    throw new ConfigError('--restart', `expected ${RESTART_POLICIES.join(', ')}, got '${restart}'`);
  }
  const root = stateFolder(values.get('state') as string | undefined);
  const upstreams = ((values.get('upstream') as string[] | undefined) ?? []).map((spec) => {
    const match = /^([a-z0-9.-]+:\d{1,5})=(\d{1,5})$/.exec(spec);
    if (match === null || !isPort(Number(match[2]))) {
      throw new ConfigError('--upstream', `expected SVC.NS:PORT=LOCALPORT, got '${spec}'`);
    }
    return { target: match[1]!, localPort: Number(match[2]) };
  });
  if (rest.length === 0) throw new ConfigError('', 'trellis run: the command to run goes after --');
  const leaseMs = values.get('lease-ms') as number | undefined;
  if (leaseMs !== undefined && !(Number.isInteger(leaseMs) && leaseMs >= 1000 && leaseMs <= MAX_LEASE_MS)) {
    throw new ConfigError('--lease-ms', `expected a whole number of ms from 1000 to ${MAX_LEASE_MS}`);
  }
  const serviceAccount = (values.get('service-account') as string | undefined) ?? name;
  if (!DNS_LABEL.test(serviceAccount)) throw new ConfigError('--service-account', 'expected a DNS label');
  return {
    name,
    namespace,
    serviceAccount,
    mesh: values.get('no-mesh') !== true,
    appPort,
    ...(servicePort === undefined ? {} : { servicePort }),
    restart: restart as RestartPolicy,
    root,
    upstreams,
    proxyLogLevel: (values.get('proxy-log-level') as string | undefined) ?? 'warn',
    ...(leaseMs === undefined ? {} : { leaseMs }),
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
  // Readiness is the app accepting on its port: another process already there would make a
  // workload that never started look ready, and take the mesh's traffic in its place.
  if (await acceptsConnections(options.appPort)) {
    throw new TrellisError(
      'TRELLIS_ERR_APP_PORT_IN_USE',
      `port ${options.appPort} (--port) is already in use on 127.0.0.1 by another process: ` +
        'stop it or give the app another port',
    );
  }
  const service = await joinService(options, note);
  return new WorkloadSupervisor(options, control, service).run();
}

/** Whether something accepts TCP connections on 127.0.0.1:port (one attempt, at most 1 s). */
function acceptsConnections(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    const done = (accepted: boolean): void => {
      socket.destroy();
      resolve(accepted);
    };
    socket.setTimeout(1000, () => done(true)); // a listener too busy to accept still holds the port
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}
