// How the Kubernetes commands of the CLI (`trellis upgrade`, `trellis check --pre` and its groups)
// reach the cluster: the official client's KubeConfig, from `--kubeconfig FILE` or, as kubectl
// does, $KUBECONFIG, ~/.kube/config or the pod's ServiceAccount; `--context` picks a context. And
// the objects `trellis install` wrote, read back through the API.
import { homedir } from 'node:os';
import path from 'node:path';
import { ApiException, CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { ConfigError, TrellisError } from '../core/errors.ts';
import type { FlagSpec } from './flags.ts';
import { CONFIG_MAPS, NAMESPACE, SECRETS } from './install-manifests.ts';

export const CLUSTER_FLAGS: FlagSpec[] = [
  {
    name: 'kubeconfig',
    kind: 'string',
    help: 'the kubeconfig file (default: as kubectl, $KUBECONFIG or ~/.kube/config)',
  },
  { name: 'context', kind: 'string', help: 'the kubeconfig context to use (default: its current one)' },
];

/** The KubeConfig the flags name; ConfigError when the file or the context does not exist. */
export function clusterConfig(values: ReadonlyMap<string, unknown>): KubeConfig {
  const kubeConfig = new KubeConfig();
  const file = values.get('kubeconfig') as string | undefined;
  try {
    if (file === undefined) kubeConfig.loadFromDefault();
    else kubeConfig.loadFromFile(file);
  } catch (error) {
    throw new ConfigError('--kubeconfig', `${file ?? 'the default kubeconfig'}: ${(error as Error).message}`);
  }
  // With no $KUBECONFIG, no ~/.kube/config and no pod ServiceAccount, the client (like kubectl)
  // falls back to an insecure http://localhost:8080, which fails later with a message about TLS
  // settings nobody made: say instead that there is no kubeconfig.
  if (file === undefined && isNoConfigFallback(kubeConfig)) {
    throw new ConfigError(
      '--kubeconfig',
      `no kubeconfig found ($KUBECONFIG is not set, ${path.join(homedir(), '.kube', 'config')} does not exist, ` +
        'and this is not a pod): give --kubeconfig FILE, or set up kubectl for the cluster first',
    );
  }
  const context = values.get('context') as string | undefined;
  if (context !== undefined) {
    if (kubeConfig.getContextObject(context) === null) {
      throw new ConfigError('--context', `no context '${context}' in the kubeconfig`);
    }
    kubeConfig.setCurrentContext(context);
  }
  if (kubeConfig.getCurrentCluster() === null) {
    throw new ConfigError('--kubeconfig', 'no cluster in the kubeconfig (or no current context)');
  }
  // A plain http:// server (`kubectl proxy`) has no TLS to verify: kubectl talks to it as it is,
  // and so does `trellis control --kubeconfig-server`; the client wants skipTLSVerify for that.
  kubeConfig.clusters = kubeConfig.clusters.map((cluster) =>
    cluster.server.startsWith('http:') ? { ...cluster, skipTLSVerify: true } : cluster,
  );
  return kubeConfig;
}

/** Whether loadFromDefault found nothing and made up its fallback (client-node's loadFromClusterAndUser). */
function isNoConfigFallback(kubeConfig: KubeConfig): boolean {
  const cluster = kubeConfig.getCurrentCluster();
  return (
    kubeConfig.getCurrentContext() === 'loaded-context' &&
    kubeConfig.getContexts().length === 1 &&
    cluster?.name === 'cluster' &&
    cluster.server === 'http://localhost:8080' &&
    kubeConfig.getCurrentUser()?.name === 'user'
  );
}

/** The message of the Status the API server answered with (the client hands it over as text or parsed). */
function statusMessage(body: unknown): string {
  let status = body;
  if (typeof body === 'string') {
    try {
      status = JSON.parse(body);
    } catch {
      return body.slice(0, 200);
    }
  }
  const message = (status as { message?: unknown } | null)?.message;
  return typeof message === 'string' ? message : '';
}

/** An error of a call to the API server, with what it was doing and how the server answered. */
export class KubernetesError extends TrellisError {
  /** The HTTP status, 0 when the server was not reached. */
  readonly status: number;
  constructor(what: string, error: unknown) {
    const status = error instanceof ApiException ? error.code : 0;
    const reason =
      error instanceof ApiException
        ? `${status} ${statusMessage(error.body)}`.trim()
        : (error as Error).message;
    super('TRELLIS_ERR_KUBERNETES', `${what}: ${reason}`, { cause: error });
    this.status = status;
  }
}

/** `call`'s answer; a KubernetesError saying `what` when it fails. */
export async function kubeCall<T>(what: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    throw new KubernetesError(what, error);
  }
}

/** What `trellis install` wrote that an upgrade keeps, as the cluster has it now. */
export interface InstalledState {
  readonly trustAnchorsPem: string;
  readonly issuerCertPem: string;
  readonly issuerKeyPem: string;
  /** The `data` of the ConfigMap trellis-config. */
  readonly config: Readonly<Record<string, string>>;
  /** The operator token of the Secret trellis-operator-token; null: none (an older install). */
  readonly operatorToken: string | null;
}

export const INSTALLED_NAMES = {
  anchors: `ConfigMap ${NAMESPACE}/${CONFIG_MAPS.anchors}`,
  issuer: `Secret ${NAMESPACE}/${SECRETS.issuer}`,
  config: `ConfigMap ${NAMESPACE}/${CONFIG_MAPS.config}`,
  operator: `Secret ${NAMESPACE}/${SECRETS.operator}`,
} as const;

/** Reads the installed anchors, issuer and configuration; KubernetesError names what is missing. */
export async function readInstalled(kubeConfig: KubeConfig): Promise<InstalledState> {
  const core = kubeConfig.makeApiClient(CoreV1Api);
  const read = <T>(name: string, call: () => Promise<T>): Promise<T> => kubeCall(`cannot read ${name}`, call);
  const [anchors, issuer, config, operator] = await Promise.all([
    // One after the other would say the same; the first that fails is the one named.
    read(INSTALLED_NAMES.anchors, () =>
      core.readNamespacedConfigMap({ name: CONFIG_MAPS.anchors, namespace: NAMESPACE }),
    ),
    read(INSTALLED_NAMES.issuer, () =>
      core.readNamespacedSecret({ name: SECRETS.issuer, namespace: NAMESPACE }),
    ),
    read(INSTALLED_NAMES.config, () =>
      core.readNamespacedConfigMap({ name: CONFIG_MAPS.config, namespace: NAMESPACE }),
    ),
    // Absent from installs older than it.
    read(INSTALLED_NAMES.operator, () =>
      core.readNamespacedSecret({ name: SECRETS.operator, namespace: NAMESPACE }),
    ).catch((error: unknown) => {
      if (error instanceof KubernetesError && error.status === 404) return null;
      throw error;
    }),
  ]);
  const token = operator?.data?.['token'];
  const secret = (key: string): string => Buffer.from(issuer.data?.[key] ?? '', 'base64').toString('utf8');
  return {
    trustAnchorsPem: anchors.data?.['trust-anchors.pem'] ?? '',
    issuerCertPem: secret('issuer.pem'),
    issuerKeyPem: secret('issuer.key.pem'),
    config: config.data ?? {},
    operatorToken: token === undefined ? null : Buffer.from(token, 'base64').toString('utf8'),
  };
}
