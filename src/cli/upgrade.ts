// `trellis upgrade`: prints the manifests of this version of Trellis, as `trellis install` does,
// but keeping what the cluster has: the trust anchor(s) and the issuer (so every proxy's
// certificate stays valid across the upgrade) and the configuration (the ConfigMap
// trellis-config: the injector's settings, the control plane's replicas and log level), read
// through the API server with the official client (kube-cluster.ts). A flag given replaces the
// kept setting it names; new issuer files replace the issuer (it must be signed by a kept anchor),
// and all three identity files replace the anchors too. The injector gets a new serving
// certificate (and the webhook its caBundle) every time. Like Linkerd's: `trellis upgrade --crds |
// kubectl apply -f -`, then `trellis upgrade | kubectl apply -f -`.
import { parse } from 'yaml';
import { parseInjectorConfig } from '../control/injector/config.ts';
import { ConfigError } from '../core/errors.ts';
import { parseCommandFlags } from './control.ts';
import { type FlagSpec, formatHelp } from './flags.ts';
import {
  CRDS_FLAGS,
  identityFiles,
  installSettings,
  installYaml,
  issuerLifetimeMs,
  printCrds,
  SETTINGS_FLAGS,
} from './install.ts';
import {
  checkedIdentity,
  IDENTITY_FILE_FLAGS,
  identityMaterial,
  readIdentityFile,
  type IdentityMaterial,
} from './install-identity.ts';
import { CONFIG_KEYS } from './install-manifests.ts';
import {
  CLUSTER_FLAGS,
  clusterConfig,
  INSTALLED_NAMES,
  KubernetesError,
  readInstalled,
  type InstalledState,
} from './kube-cluster.ts';
import { SUMMARIES } from './summaries.ts';

export const summary = SUMMARIES.upgrade;

const FLAGS: FlagSpec[] = [...CRDS_FLAGS, ...SETTINGS_FLAGS, ...CLUSTER_FLAGS];

const USAGE = `Usage: trellis upgrade [--crds] [options] | kubectl apply -f -

Prints the manifests of this version of Trellis like trellis install, keeping what the cluster has:
the trust anchors, the issuer (its certificate and key), the operator token and the configuration (trellis-config: the
image, trust domain, cluster domain, proxy log level, default inbound policy, native sidecar, CNI
mode, HA and the control plane's log level). A flag given replaces that setting; the issuer files
replace the issuer (signed by a kept anchor), all three identity files the anchors too. The
injector gets a new serving certificate.`;

/** The control plane's kept settings (`control-plane.yaml`; an install from before it: defaults). */
function controlPlaneSettings(state: InstalledState): { ha: boolean; controlLogLevel: string } {
  const text = state.config[CONFIG_KEYS.controlPlane];
  const raw = (text === undefined ? {} : parse(text)) as { ha?: unknown; logLevel?: unknown } | null;
  return {
    ha: raw?.ha === true,
    controlLogLevel: typeof raw?.logLevel === 'string' ? raw.logLevel : 'info',
  };
}

/** The kept identity, or the one the identity files give (checked against the kept anchors). */
async function identity(
  values: ReadonlyMap<string, unknown>,
  state: InstalledState,
  trustDomain: string,
  nowMs: number,
): Promise<{ identity: IdentityMaterial; kept: string }> {
  const files = identityFiles(values);
  if (files.anchors !== undefined) {
    return {
      identity: await identityMaterial(files, trustDomain, issuerLifetimeMs(values), nowMs),
      kept: 'nothing of the identity (new trust anchors and issuer from the files)',
    };
  }
  const newIssuer = files.issuerCert !== undefined || files.issuerKey !== undefined;
  if (newIssuer && (files.issuerCert === undefined || files.issuerKey === undefined)) {
    const missing = files.issuerCert === undefined ? 'issuerCert' : 'issuerKey';
    const other = missing === 'issuerCert' ? 'issuerKey' : 'issuerCert';
    throw new ConfigError(IDENTITY_FILE_FLAGS[missing], `required with ${IDENTITY_FILE_FLAGS[other]}`);
  }
  const [issuerCert, issuerKey] = newIssuer
    ? await Promise.all([readIdentityFile(files, 'issuerCert'), readIdentityFile(files, 'issuerKey')])
    : [state.issuerCertPem, state.issuerKeyPem];
  const issuerName = newIssuer ? files.issuerCert! : INSTALLED_NAMES.issuer;
  const fields = {
    anchors: INSTALLED_NAMES.anchors,
    issuer: newIssuer ? IDENTITY_FILE_FLAGS.issuerCert : INSTALLED_NAMES.issuer,
  };
  try {
    return {
      identity: checkedIdentity(
        { anchors: state.trustAnchorsPem, issuerCert, issuerKey },
        {
          anchors: INSTALLED_NAMES.anchors,
          issuer: issuerName,
          pair: newIssuer ? `${files.issuerCert} with ${files.issuerKey}` : INSTALLED_NAMES.issuer,
        },
        fields,
        nowMs,
      ),
      kept: newIssuer
        ? `the trust anchors (${INSTALLED_NAMES.anchors}; the issuer from the files)`
        : `the trust anchors (${INSTALLED_NAMES.anchors}) and the issuer (${INSTALLED_NAMES.issuer})`,
    };
  } catch (error) {
    if (newIssuer || !(error instanceof ConfigError)) throw error;
    throw new ConfigError(
      '',
      `${error.message}; give a new issuer signed by the trust anchor with ` +
        `${IDENTITY_FILE_FLAGS.issuerCert} and ${IDENTITY_FILE_FLAGS.issuerKey} (docs/kubernetes.md, Upgrade)`,
    );
  }
}

export async function run(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(formatHelp(USAGE, FLAGS) + '\n');
    return 0;
  }
  const values = parseCommandFlags('upgrade', argv, FLAGS);
  if (values.get('crds') === true) return printCrds(values);
  const state = await readInstalled(clusterConfig(values)).catch((error: unknown) => {
    if (error instanceof KubernetesError && error.status === 404) {
      throw new KubernetesError(
        'trellis is not installed in this cluster (trellis install | kubectl apply -f -)',
        error.cause,
      );
    }
    throw error;
  });
  const configText = state.config[CONFIG_KEYS.injector];
  if (configText === undefined) {
    throw new ConfigError(
      '',
      `${INSTALLED_NAMES.config} has no ${CONFIG_KEYS.injector}: is this a trellis install?`,
    );
  }
  const keptInjector = parseInjectorConfig(INSTALLED_NAMES.config, INSTALLED_NAMES.config, configText);
  const settings = installSettings(values, { ...controlPlaneSettings(state), injector: keptInjector });
  const identityFilesGiven = Object.values(identityFiles(values)).some((f) => f !== undefined);
  if (settings.injector.trustDomain !== keptInjector.trustDomain && !identityFilesGiven) {
    throw new ConfigError(
      '--trust-domain',
      `the kept trust anchor and issuer are for ${keptInjector.trustDomain}; give new identity files to change it`,
    );
  }
  const now = Date.now();
  const { identity: material, kept } = await identity(values, state, settings.injector.trustDomain, now);
  const given = [...values.keys()].filter((name) => SETTINGS_FLAGS.some((f) => f.name === name));
  process.stderr.write(
    `trellis upgrade: kept from the cluster: ${kept}, ` +
      `the operator token${state.operatorToken === null ? ' (none: a new one)' : ''}, ` +
      `and the configuration (${INSTALLED_NAMES.config}: image ${settings.image})` +
      (given.length > 0 ? `, but for ${given.map((n) => `--${n}`).join(', ')}` : '') +
      `; new: the injector's serving certificate\n`,
  );
  process.stdout.write(
    await installYaml(settings, material, issuerLifetimeMs(values), now, state.operatorToken ?? undefined),
  );
  return 0;
}
