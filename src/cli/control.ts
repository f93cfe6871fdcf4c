// `trellis control`: runs the control plane over the Kubernetes API (KubernetesWatcher): the
// Destination gRPC API and the HTTP API of src/control/server.ts. Also home of what it shares with
// `trellis up` (up.ts): the listener and log flags, and running a control plane in the foreground
// until SIGINT/SIGTERM. The Kubernetes client is loaded only when this command runs (it takes about
// a second), so `up` and `apply` start fast.
import { ConfigError } from '../core/errors.ts';
import { createLogger, type Logger, type LogLevelSetting } from '../core/log.ts';
import type { KubeConfig } from '@kubernetes/client-node';
import type { KubernetesWatcher } from '../control/discovery/kubernetes.ts';
import {
  serviceView,
  sortServices,
  startControlPlane,
  type ControlPlane,
  type ServiceCatalog,
  type ServiceView,
} from '../control/server.ts';
import { type FlagSpec, formatHelp, parseFlags, type ParsedFlags } from './flags.ts';

export const summary = 'run the control plane over the Kubernetes API (Destination gRPC + HTTP API)';

/** The flags of every control-plane command; `defaults` fills in the help text. */
export function controlPlaneFlags(defaults: { grpc: string; http: string }): FlagSpec[] {
  return [
    {
      name: 'grpc-listen',
      kind: 'string',
      help: `Destination gRPC API HOST:PORT (default ${defaults.grpc})`,
    },
    { name: 'http-listen', kind: 'string', help: `HTTP API HOST:PORT (default ${defaults.http})` },
    {
      name: 'cluster-domain',
      kind: 'string',
      help: 'DNS suffix after "svc" in service names (default cluster.local)',
    },
    { name: 'log-level', kind: 'string', help: 'trace|debug|info|warn|error|off (default info)' },
  ];
}

const LOG_LEVELS: readonly LogLevelSetting[] = ['trace', 'debug', 'info', 'warn', 'error', 'off'];
const DNS_NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$/;

export interface ControlPlaneSettings {
  readonly grpcListen: string;
  readonly httpListen: string;
  readonly clusterDomain: string;
  readonly log: Logger;
}

/** Parses `argv` (no positional arguments allowed); throws ConfigError naming the flag. */
export function parseCommandFlags(command: string, argv: string[], specs: FlagSpec[]): ParsedFlags['values'] {
  const { values, rest } = parseFlags(argv, specs);
  if (rest.length > 0) {
    throw new ConfigError('', `unexpected argument '${rest[0]}' (trellis ${command} takes only options)`);
  }
  return values;
}

/** The settings shared by the control-plane commands, from the parsed flags. */
export function controlPlaneSettings(
  values: ParsedFlags['values'],
  defaults: { grpc: string; http: string },
): ControlPlaneSettings {
  const level = (values.get('log-level') as string | undefined) ?? 'info';
  if (!LOG_LEVELS.includes(level as LogLevelSetting)) {
    throw new ConfigError('--log-level', `expected one of ${LOG_LEVELS.join(', ')}, got '${level}'`);
  }
  const clusterDomain = (values.get('cluster-domain') as string | undefined) ?? 'cluster.local';
  if (!DNS_NAME.test(clusterDomain)) throw new ConfigError('--cluster-domain', 'expected a DNS name');
  return {
    grpcListen: listenAddress('--grpc-listen', (values.get('grpc-listen') as string) ?? defaults.grpc),
    httpListen: listenAddress('--http-listen', (values.get('http-listen') as string) ?? defaults.http),
    clusterDomain,
    log: createLogger({ level: level as LogLevelSetting }),
  };
}

/** Checks a HOST:PORT listener address ("[v6]:port" for IPv6; port 0: any free port). */
export function listenAddress(flag: string, value: string): string {
  const match = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(value);
  if (match === null || Number(match[2]) > 65535) {
    throw new ConfigError(flag, `expected HOST:PORT with a port 0..65535, got '${value}'`);
  }
  return value;
}

/**
 * Prints the ready line and serves until SIGINT/SIGTERM, then closes the control plane, runs
 * `cleanup` and resolves with the exit code (0 after a clean shutdown).
 */
export function serveUntilSignal(
  plane: ControlPlane,
  ready: Record<string, string>,
  log: Logger,
  cleanup: () => Promise<void> = async () => {},
): Promise<number> {
  process.stdout.write(
    JSON.stringify({ event: 'ready', grpc: plane.grpc, http: plane.http, ...ready }) + '\n',
  );
  log.info('control plane ready', { grpc: plane.grpc, http: plane.http, ...ready });
  return new Promise<number>((resolve) => {
    const stop = (signal: NodeJS.Signals): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      log.info('shutting down', { signal });
      plane
        .close()
        .then(cleanup)
        .then(
          () => resolve(0),
          (error: unknown) => {
            log.error('shutdown failed', { error });
            resolve(1);
          },
        )
        // Whatever still holds the event loop (a client's lingering socket) must not keep us up.
        .finally(() => setTimeout(() => process.exit(), 2000).unref());
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}

const DEFAULTS = { grpc: '0.0.0.0:8086', http: '0.0.0.0:8084' };
const FLAGS: FlagSpec[] = [
  {
    name: 'kubeconfig-server',
    kind: 'string',
    help: 'URL of the Kubernetes API server, e.g. http://127.0.0.1:8001 (kubectl proxy); required',
  },
  {
    name: 'trust-domain',
    kind: 'string',
    help: 'trust domain of the SPIFFE identities of meshed pods (default cluster.local)',
  },
  ...controlPlaneFlags(DEFAULTS),
];

export async function run(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(
      formatHelp('Usage: trellis control --kubeconfig-server URL [options]', FLAGS) + '\n',
    );
    return 0;
  }
  const values = parseCommandFlags('control', argv, FLAGS);
  const server = values.get('kubeconfig-server') as string | undefined;
  if (server === undefined) throw new ConfigError('--kubeconfig-server', 'required');
  if (!/^https?:\/\/[^/\s]+\/?$/.test(server) || !URL.canParse(server)) {
    throw new ConfigError('--kubeconfig-server', `expected an http:// or https:// URL, got '${server}'`);
  }
  const trustDomain = (values.get('trust-domain') as string | undefined) ?? 'cluster.local';
  if (!DNS_NAME.test(trustDomain)) throw new ConfigError('--trust-domain', 'expected a DNS name');
  const settings = controlPlaneSettings(values, DEFAULTS);
  const log = settings.log.child({ component: 'control' });

  const { KubernetesWatcher, kubeConfigForServer } = await import('../control/discovery/kubernetes.ts');
  const kubeConfig = kubeConfigForServer(server.replace(/\/$/, ''));
  const watcher = new KubernetesWatcher({
    kubeConfig,
    trustDomain,
    onError: (error) => log.warn(error.message, { error: error.cause }),
  });
  const plane = await startControlPlane({
    watcher,
    catalog: await kubernetesCatalog(kubeConfig, watcher),
    grpcListen: settings.grpcListen,
    httpListen: settings.httpListen,
    clusterDomain: settings.clusterDomain,
    log: settings.log,
  });
  return serveUntilSignal(plane, { kubernetes: server }, log);
}

/** The Services of a cluster (listed on each call) with the endpoints the watcher's caches hold. */
async function kubernetesCatalog(
  kubeConfig: KubeConfig,
  watcher: KubernetesWatcher,
): Promise<ServiceCatalog> {
  const { CoreV1Api } = await import('@kubernetes/client-node');
  const core = kubeConfig.makeApiClient(CoreV1Api);
  return {
    async listServices() {
      const list = await core.listServiceForAllNamespaces();
      const views: ServiceView[] = [];
      for (const item of list.items) {
        const name = item.metadata?.name;
        const namespace = item.metadata?.namespace;
        if (name === undefined || namespace === undefined) continue;
        const ports = (item.spec?.ports ?? []).map((p) => ({ port: p.port, name: p.name }));
        views.push(serviceView({ namespace, name, ports }, (k) => watcher.currentEndpoints(k)));
      }
      return sortServices(views);
    },
  };
}
