// `trellis install`: prints the Kubernetes manifests of Trellis as multi-document YAML on stdout,
// for `trellis install --crds | kubectl apply -f -` then `trellis install | kubectl apply -f -`.
// `--crds` prints deploy/crds.yaml as it is, then deploy/gateway-api-crds.yaml (HTTPRoute,
// GRPCRoute) unless `--skip-gateway-api` (for clusters with the upstream ones); otherwise the objects of install-manifests.ts with
// certificates made now (install-identity.ts) or read from the operator's files.
// docs/kubernetes.md describes what comes out and why.
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { LOG_LEVEL_SETTINGS } from '../core/log.ts';
import { parseCommandFlags, parseDuration } from './control.ts';
import { type FlagSpec, formatHelp } from './flags.ts';
import {
  DEFAULT_INJECTOR_CONFIG,
  flagText,
  INJECTOR_FLAGS,
  injectorConfigFromFlags,
} from './install-flags.ts';
import {
  identityMaterial,
  webhookMaterial,
  type IdentityFiles,
  type IdentityMaterial,
} from './install-identity.ts';
import {
  clusterDomainOf,
  crdNames,
  INJECTOR_SERVICE,
  installObjects,
  NAMESPACE,
  toYaml,
  type CrdName,
  type InstallSettings,
} from './install-manifests.ts';
import { SUMMARIES } from './summaries.ts';

export const summary = SUMMARIES.install;

const DEFAULT_ISSUER_LIFETIME = '8760h';

/** The flags that choose the objects (install's, and upgrade's over the cluster's settings). */
export const SETTINGS_FLAGS: FlagSpec[] = [
  {
    name: 'ha',
    kind: 'boolean',
    help: '3 control-plane replicas on different nodes, and a PodDisruptionBudget',
  },
  { name: 'log-level', kind: 'string', help: "the control plane's log level (default info)" },
  ...INJECTOR_FLAGS,
  {
    name: 'identity-trust-anchors-file',
    kind: 'string',
    help: 'PEM trust anchor(s) to use instead of generating one (with the two issuer files)',
  },
  {
    name: 'identity-issuer-certificate-file',
    kind: 'string',
    help: 'PEM issuer certificate, signed by an anchor',
  },
  { name: 'identity-issuer-key-file', kind: 'string', help: 'PEM (PKCS#8) P-256 key of the issuer' },
  {
    name: 'identity-issuer-lifetime',
    kind: 'string',
    help: `lifetime of a generated issuer (default ${DEFAULT_ISSUER_LIFETIME}; not renewed in the cluster)`,
  },
];

/** `--crds` and its note's switch (install's and upgrade's). */
export const CRDS_FLAGS: FlagSpec[] = [
  { name: 'crds', kind: 'boolean', help: 'print only the CustomResourceDefinitions (apply these first)' },
  {
    name: 'skip-gateway-api',
    kind: 'boolean',
    help: 'with --crds: leave out the Gateway API CRDs (HTTPRoute, GRPCRoute), e.g. where the upstream ones are installed',
  },
];

const FLAGS: FlagSpec[] = [...CRDS_FLAGS, ...SETTINGS_FLAGS];

/** The settings of a new install (`base` absent) or of an upgrade of `base`, with the flags given. */
export function installSettings(
  values: ReadonlyMap<string, unknown>,
  base: Pick<InstallSettings, 'ha' | 'controlLogLevel' | 'injector'> = {
    ha: false,
    controlLogLevel: 'info',
    injector: DEFAULT_INJECTOR_CONFIG,
  },
): InstallSettings {
  const injector = injectorConfigFromFlags(values, base.injector);
  return {
    image: injector.proxyImage,
    ha: (values.get('ha') as boolean | undefined) ?? base.ha,
    controlLogLevel: flagText(values, 'log-level', base.controlLogLevel, LOG_LEVEL_SETTINGS),
    clusterDomain: clusterDomainOf(injector.controlPlaneAddress),
    injector,
  };
}

/** The identity files given as flags (none, or all three). */
export const identityFiles = (values: ReadonlyMap<string, unknown>): IdentityFiles => ({
  anchors: values.get('identity-trust-anchors-file') as string | undefined,
  issuerCert: values.get('identity-issuer-certificate-file') as string | undefined,
  issuerKey: values.get('identity-issuer-key-file') as string | undefined,
});

/** The lifetime of a generated issuer (and of the webhook's certificate). */
export const issuerLifetimeMs = (values: ReadonlyMap<string, unknown>): number =>
  parseDuration(
    '--identity-issuer-lifetime',
    flagText(values, 'identity-issuer-lifetime', DEFAULT_ISSUER_LIFETIME),
  );

/**
 * The manifests of `settings` with `identity`, a new webhook certificate and `operatorToken` (by
 * default a new one: 32 random bytes, base64url), as YAML.
 */
export async function installYaml(
  settings: InstallSettings,
  identity: IdentityMaterial,
  lifetimeMs: number,
  nowMs: number,
  operatorToken: string = randomBytes(32).toString('base64url'),
): Promise<string> {
  const { crds } = await readCrds();
  const webhook = await webhookMaterial(
    INJECTOR_SERVICE,
    NAMESPACE,
    settings.injector.trustDomain,
    lifetimeMs,
    nowMs,
  );
  return toYaml(installObjects(settings, identity, webhook, crds, operatorToken));
}

/** deploy/crds.yaml, beside src/ or dist/. */
export async function readCrds(): Promise<{ text: string; crds: CrdName[] }> {
  const url = new URL('../../deploy/crds.yaml', import.meta.url);
  const text = await readFile(url, 'utf8');
  return { text, crds: crdNames(text) };
}

/** deploy/gateway-api-crds.yaml (HTTPRoute, GRPCRoute), beside src/ or dist/. */
export async function readGatewayCrds(): Promise<{ text: string; crds: CrdName[] }> {
  const text = await readFile(new URL('../../deploy/gateway-api-crds.yaml', import.meta.url), 'utf8');
  return { text, crds: crdNames(text) };
}

/** `--crds`: deploy/crds.yaml on stdout, then the Gateway API CRDs unless --skip-gateway-api. */
export async function printCrds(values: ReadonlyMap<string, unknown>): Promise<number> {
  const own = (await readCrds()).text;
  const gateway = values.get('skip-gateway-api') === true ? '' : `---\n${(await readGatewayCrds()).text}`;
  process.stdout.write(own.endsWith('\n') || own === '' ? own + gateway : `${own}\n${gateway}`);
  return 0;
}

export async function run(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(
      formatHelp(
        'Usage: trellis install [--crds] [options] | kubectl apply -f -\n\n' +
          'Prints the manifests of Trellis: `trellis install --crds` the CustomResourceDefinitions, ' +
          '`trellis install` everything else.',
        FLAGS,
      ) + '\n',
    );
    return 0;
  }
  const values = parseCommandFlags('install', argv, FLAGS);
  if (values.get('crds') === true) {
    return printCrds(values);
  }
  const settings = installSettings(values);
  const lifetimeMs = issuerLifetimeMs(values);
  const now = Date.now();
  const identity = await identityMaterial(
    identityFiles(values),
    settings.injector.trustDomain,
    lifetimeMs,
    now,
  );
  process.stdout.write(await installYaml(settings, identity, lifetimeMs, now));
  return 0;
}
