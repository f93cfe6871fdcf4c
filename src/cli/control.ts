// `trellis control`: runs the control plane over the Kubernetes API (KubernetesWatcher): the
// Destination gRPC API and the HTTP API of src/control/server.ts, and the Identity API
// (src/control/identity/) checking workload tokens with TokenReviews. Also home of what it shares
// with `trellis up` (up.ts): the listener, log and identity flags, starting a control plane (and
// closing what was started for it when it cannot start), and running it in the foreground until
// SIGINT/SIGTERM. `--operator-token-file` names the operator token (a mounted
// Secret) that state-changing HTTP API requests must carry; without it they are all refused.
// `--injector-listen` also serves the proxy injector (src/control/injector/webhook-server.ts).
// The Routes API serves the Gateway API routes of the cluster (src/control/routes/kubernetes.ts),
// whose status it writes back while it holds the Lease `trellis-control-status-writer`
// (src/control/leader-lease.ts; in --status-lease-namespace, by default the pod's namespace from
// POD_NAMESPACE, else trellis): of several replicas (`trellis install --ha`, or two versions during
// a rolling upgrade) one writes. Its holderIdentity is the pod's name (POD_NAME, else the host
// name) and a random suffix; on SIGTERM it is released so that another replica takes over at once.
// `trellis tap` reaches the proxies' mTLS tap listeners at their pod IPs with a client certificate
// the control plane issues itself (src/control/tap/); its HTTP API listens on the pod's address,
// so GET /api/tap and /api/traces need the operator token like a change does.
// The Kubernetes client is loaded only when this command runs (it takes about a second), so `up`
// and `apply` start fast.
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { ConfigError } from '../core/errors.ts';
import { controlPlaneId } from '../core/spiffe.ts';
import { parseDuration } from '../core/duration.ts';
import { createLogger, LOG_LEVEL_SETTINGS, type Logger, type LogLevelSetting } from '../core/log.ts';
import type { IdentityComponent } from '../control/identity/component.ts';
import { readOperatorToken } from '../control/operator-token.ts';
import type { TokenVerifier } from '../control/identity/tokens.ts';
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
import { SUMMARIES } from './summaries.ts';

export const summary = SUMMARIES.control;

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

/** The flags of the certificate authority, shared by `trellis up` and `trellis control`. */
export function identityFlags(): FlagSpec[] {
  return [
    {
      name: 'trust-domain',
      kind: 'string',
      help: 'trust domain of the SPIFFE identities the control plane issues (default cluster.local)',
    },
    {
      name: 'leaf-lifetime',
      kind: 'string',
      help: 'lifetime of workload certificates, e.g. 24h, 90s, 500ms (default 24h)',
    },
    {
      name: 'issuer-lifetime',
      kind: 'string',
      help: 'lifetime of the issuer certificate (default 720h); renewed at 2/3',
    },
  ];
}

export interface IdentitySettings {
  readonly trustDomain: string;
  readonly leafLifetimeMs: number;
  readonly issuerLifetimeMs: number;
}

const DAY_MS = 24 * 3600_000;

/** The identity settings from the parsed flags; throws ConfigError naming the flag. */
export function identitySettings(values: ParsedFlags['values']): IdentitySettings {
  const trustDomain = (values.get('trust-domain') as string | undefined) ?? 'cluster.local';
  if (!DNS_NAME.test(trustDomain)) throw new ConfigError('--trust-domain', 'expected a DNS name');
  const duration = (flag: string, fallback: number): number => {
    const raw = values.get(flag) as string | undefined;
    return raw === undefined ? fallback : parseDuration(`--${flag}`, raw);
  };
  const leafLifetimeMs = duration('leaf-lifetime', DAY_MS);
  const issuerLifetimeMs = duration('issuer-lifetime', 30 * DAY_MS);
  if (leafLifetimeMs < 100) throw new ConfigError('--leaf-lifetime', 'must be at least 100ms');
  if (issuerLifetimeMs < leafLifetimeMs) {
    throw new ConfigError('--issuer-lifetime', 'must not be shorter than --leaf-lifetime');
  }
  return { trustDomain, leafLifetimeMs, issuerLifetimeMs };
}

// Here for the commands that import it from control.ts (install).
export { parseDuration };

/**
 * The certificate authority over `dir` (null: in memory, with a warning) and its control-plane
 * component, whose tokens `verifier` checks.
 */
export async function startIdentity(
  settings: IdentitySettings,
  options: {
    dir: string | null;
    bundlePath?: string;
    verifier: TokenVerifier;
    /** The flag that names the folder, for error messages. */
    dirFlag: string;
    log: Logger;
  },
): Promise<IdentityComponent> {
  // Loaded here, not at the top: `trellis apply` imports this module and need not load X.509.
  const { CertificateAuthority } = await import('../control/identity/ca.ts');
  const { IdentityComponent } = await import('../control/identity/component.ts');
  let ca;
  try {
    ca = await CertificateAuthority.open({
      dir: options.dir,
      trustDomain: settings.trustDomain,
      leafLifetimeMs: settings.leafLifetimeMs,
      issuerLifetimeMs: settings.issuerLifetimeMs,
      ...(options.bundlePath === undefined ? {} : { bundlePath: options.bundlePath }),
      log: options.log,
    });
  } catch (error) {
    throw new ConfigError(options.dirFlag, (error as Error).message);
  }
  return new IdentityComponent({ ca, verifier: options.verifier, log: options.log });
}

export const DNS_NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$/;

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
  if (!LOG_LEVEL_SETTINGS.includes(level as LogLevelSetting)) {
    throw new ConfigError('--log-level', `expected one of ${LOG_LEVEL_SETTINGS.join(', ')}, got '${level}'`);
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
/** The Lease whose holder writes route and policy status. */
export const STATUS_LEASE = 'trellis-control-status-writer';
const FLAGS: FlagSpec[] = [
  {
    name: 'kubeconfig-server',
    kind: 'string',
    help: 'URL of the Kubernetes API server, e.g. http://127.0.0.1:8001 (kubectl proxy); this or --in-cluster',
  },
  {
    name: 'in-cluster',
    kind: 'boolean',
    help: "reach the API server as the pod's ServiceAccount (what `trellis install` runs); this or --kubeconfig-server",
  },
  {
    name: 'operator-token-file',
    kind: 'string',
    help: 'file of the operator token state-changing HTTP API requests, taps and trace reads must carry (e.g. a mounted Secret); without it they are refused',
  },
  {
    name: 'identity-dir',
    kind: 'string',
    help: 'folder of the trust anchor and issuer (created if empty; default: in memory only)',
  },
  {
    name: 'status-lease-namespace',
    kind: 'string',
    help: `namespace of the Lease ${STATUS_LEASE} whose holder alone writes route status (default $POD_NAMESPACE, else trellis)`,
  },
  {
    name: 'status-lease-duration',
    kind: 'string',
    help: 'how long the status Lease outlives its holder, whole seconds (default 15s; it renews every 2/15 of it and gives up after 2/3 without a renewal)',
  },
  {
    name: 'injector-listen',
    kind: 'string',
    help: 'serve the proxy injector (an admission webhook, HTTPS POST /inject) on HOST:PORT',
  },
  {
    name: 'injector-tls-dir',
    kind: 'string',
    help: "with --injector-listen: folder of the injector's tls.crt and tls.key (a mounted Secret)",
  },
  {
    name: 'injector-config',
    kind: 'string',
    help: "with --injector-listen: the injector's config.yaml (the ConfigMap trellis-config)",
  },
  ...identityFlags(),
  ...controlPlaneFlags(DEFAULTS),
];

export async function run(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(
      formatHelp('Usage: trellis control (--kubeconfig-server URL | --in-cluster) [options]', FLAGS) + '\n',
    );
    return 0;
  }
  const values = parseCommandFlags('control', argv, FLAGS);
  const server = values.get('kubeconfig-server') as string | undefined;
  const inCluster = values.get('in-cluster') === true;
  if (server === undefined && !inCluster)
    throw new ConfigError('--kubeconfig-server', 'required (or --in-cluster)');
  if (server !== undefined && inCluster)
    throw new ConfigError('--in-cluster', 'not with --kubeconfig-server');
  if (server !== undefined && (!/^https?:\/\/[^/\s]+\/?$/.test(server) || !URL.canParse(server))) {
    throw new ConfigError('--kubeconfig-server', `expected an http:// or https:// URL, got '${server}'`);
  }
  const identity = identitySettings(values);
  const identityDir = values.get('identity-dir') as string | undefined;
  if (identityDir === '') throw new ConfigError('--identity-dir', 'must not be empty');
  const settings = controlPlaneSettings(values, DEFAULTS);
  const log = settings.log.child({ component: 'control' });
  const tokenFile = values.get('operator-token-file') as string | undefined;
  const operatorToken =
    tokenFile === undefined
      ? null
      : await readOperatorToken(tokenFile).catch((error: unknown) => {
          throw new ConfigError('--operator-token-file', (error as Error).message);
        });
  if (operatorToken === null)
    log.warn(
      'no --operator-token-file: every state-changing HTTP API request, tap and trace read will be refused',
    );

  const injector = await injectorSettings(values);
  const lease = statusLeaseSettings(values);
  const { KubernetesWatcher, kubeConfigForServer } = await import('../control/discovery/kubernetes.ts');
  const { TokenReviewVerifier } = await import('../control/identity/token-review.ts');
  const { kubernetesPolicyComponent } = await import('../control/policy/component.ts');
  const { createRouteComponent } = await import('../control/routes/component.ts');
  const { KubernetesRouteSource } = await import('../control/routes/kubernetes.ts');
  const kubeConfig =
    server === undefined ? await inClusterKubeConfig() : kubeConfigForServer(server.replace(/\/$/, ''));
  const component = await startIdentity(identity, {
    dir: identityDir ?? null,
    dirFlag: '--identity-dir',
    verifier: new TokenReviewVerifier({ kubeConfig, trustDomain: identity.trustDomain }),
    log: settings.log,
  });
  // The control plane's own certificate, to tap proxies over mTLS (their tap listeners let in
  // only this identity: the injector gives every proxy the same from the same ConfigMap).
  const { TapClientCertificate } = await import('../control/tap/tap-client-certificate.ts');
  const tapCertificate = new TapClientCertificate({
    issuer: component.authority,
    id: controlPlaneId(identity.trustDomain, injector?.config.controlPlaneNamespace),
    log: settings.log,
  });
  const watcher = new KubernetesWatcher({
    kubeConfig,
    trustDomain: identity.trustDomain,
    onError: (error) => log.warn(error.message, { error: error.cause }),
  });
  const catalog = kubernetesCatalog(kubeConfig, watcher, identity.trustDomain);
  // Of several replicas, the holder of the Lease alone writes route and policy status.
  const { LeaseElector } = await import('../control/leader-lease.ts');
  const elector = new LeaseElector({
    kubeConfig,
    ...lease,
    name: STATUS_LEASE,
    log: settings.log.child({ component: 'status-lease' }),
  });
  // The edges, shared with the routes component (a workload page's outbound routes).
  const { EdgeTracker } = await import('../control/metrics/edges.ts');
  const edges = new EdgeTracker();
  const plane = await startControlPlane({
    ...settings,
    watcher,
    catalog,
    edges,
    components: [
      component,
      kubernetesPolicyComponent(kubeConfig, settings.log),
      // Routes (Gateway API HTTPRoute/GRPCRoute) for the proxies; their status written back.
      createRouteComponent(
        new KubernetesRouteSource({ kubeConfig, log: settings.log, statusLeader: elector }),
        settings.log,
        async () => (await catalog).listServices(),
        () => edges.edges(),
      ),
    ],
    operatorToken,
    operatorTokenSource:
      tokenFile === undefined ? '--operator-token-file' : `in the file ${tokenFile} (--operator-token-file)`,
    // The HTTP API listens on the pod's address: a tap or a trace is for operators only.
    sensitiveReadsNeedOperator: true,
    tapClientTls: () => tapCertificate.tlsOptions(),
  });
  const kubernetes = kubeConfig.getCurrentCluster()?.server ?? '';
  let webhook = null;
  if (injector !== null) {
    const { startInjectorServer } = await import('../control/injector/webhook-server.ts');
    const { CoreV1Api } = await import('@kubernetes/client-node');
    const core = kubeConfig.makeApiClient(CoreV1Api);
    try {
      webhook = await startInjectorServer({
        ...injector,
        namespaceAnnotations: async (name) =>
          (await core.readNamespace({ name })).metadata?.annotations ?? {},
        log: settings.log,
      });
    } catch (error) {
      await plane.close();
      throw new ConfigError('--injector-listen', (error as Error).message);
    }
  }
  elector.start();
  return serveUntilSignal(
    plane,
    { kubernetes, trustDomain: identity.trustDomain, ...(webhook ? { injector: webhook.address } : {}) },
    log,
    async () => {
      tapCertificate.close();
      // The route source stopped writing with the plane; now another replica may take over.
      await Promise.all([elector.stop(), webhook?.close()]);
    },
  );
}

/** The status Lease's namespace, timings and this replica's identity in it. */
function statusLeaseSettings(values: ParsedFlags['values']) {
  const namespace =
    (values.get('status-lease-namespace') as string | undefined) ?? (process.env.POD_NAMESPACE || 'trellis');
  if (!DNS_LABEL.test(namespace))
    throw new ConfigError('--status-lease-namespace', `expected a namespace name, got '${namespace}'`);
  const raw = values.get('status-lease-duration') as string | undefined;
  const leaseDurationMs = raw === undefined ? 15_000 : parseDuration('--status-lease-duration', raw);
  if (leaseDurationMs < 1000 || leaseDurationMs % 1000 !== 0)
    throw new ConfigError('--status-lease-duration', 'expected whole seconds, at least 1s');
  return {
    namespace,
    // client-go's proportions: 15 s, renew deadline 10 s, retry every 2 s.
    leaseDurationMs,
    renewDeadlineMs: Math.round((leaseDurationMs * 2) / 3),
    retryPeriodMs: Math.round((leaseDurationMs * 2) / 15),
    identity: `${process.env.POD_NAME || hostname()}_${randomBytes(4).toString('hex')}`,
  };
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/** The injector's listener, certificate and configuration; null without --injector-listen. */
async function injectorSettings(values: ParsedFlags['values']) {
  const listen = values.get('injector-listen') as string | undefined;
  const tlsDir = values.get('injector-tls-dir') as string | undefined;
  const configFile = values.get('injector-config') as string | undefined;
  if (listen === undefined) {
    const stray =
      tlsDir !== undefined ? '--injector-tls-dir' : configFile !== undefined ? '--injector-config' : null;
    if (stray !== null) throw new ConfigError(stray, 'only with --injector-listen');
    return null;
  }
  listenAddress('--injector-listen', listen);
  if (tlsDir === undefined) throw new ConfigError('--injector-tls-dir', 'required with --injector-listen');
  if (configFile === undefined) throw new ConfigError('--injector-config', 'required with --injector-listen');
  const { readFile } = await import('node:fs/promises');
  const { join } = await import('node:path');
  const { readInjectorConfig } = await import('../control/injector/config.ts');
  const [certPem, keyPem] = await Promise.all(
    ['tls.crt', 'tls.key'].map((file) =>
      readFile(join(tlsDir, file), 'utf8').catch((error: unknown) => {
        throw new ConfigError('--injector-tls-dir', (error as Error).message);
      }),
    ),
  );
  return {
    listen,
    certPem: certPem!,
    keyPem: keyPem!,
    config: await readInjectorConfig('--injector-config', configFile),
  };
}

/** The pod's ServiceAccount token and CA, and the API server's address from the pod's environment. */
async function inClusterKubeConfig(): Promise<KubeConfig> {
  const { KubeConfig } = await import('@kubernetes/client-node');
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromCluster();
  // Outside a pod the client builds "https://undefined:undefined" from the missing environment.
  if (kubeConfig.getCurrentCluster()?.server.includes('undefined')) {
    throw new ConfigError('--in-cluster', 'not in a pod (KUBERNETES_SERVICE_HOST is not set)');
  }
  return kubeConfig;
}

/** The Services of a cluster (listed on each call) with the endpoints the watcher's caches hold. */
async function kubernetesCatalog(
  kubeConfig: KubeConfig,
  watcher: KubernetesWatcher,
  trustDomain: string,
): Promise<ServiceCatalog> {
  const { kubernetesScrapeTargets, kubernetesTapTargets } =
    await import('../control/tap/kubernetes-tap-targets.ts');
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
    // The meshed pods' proxies, tapped over mTLS at their pod IPs (GET /api/tap).
    listTapTargets: async () => kubernetesTapTargets(watcher.currentPods(), trustDomain),
    // The same proxies' admin listeners: stat, edges, routes, the dashboard and Prometheus.
    listScrapeTargets: async () => kubernetesScrapeTargets(watcher.currentPods(), trustDomain),
  };
}
