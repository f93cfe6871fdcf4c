// `trellis install`: prints the Kubernetes manifests of Trellis as multi-document YAML on stdout,
// for `trellis install --crds | kubectl apply -f -` then `trellis install | kubectl apply -f -`.
// `--crds` prints deploy/crds.yaml as it is; otherwise the objects of install-manifests.ts with
// certificates made now (install-identity.ts) or read from the operator's files.
// docs/kubernetes.md describes what comes out and why.
import { readFile } from 'node:fs/promises';
import { ConfigError } from '../core/errors.ts';
import { DEFAULT_POLICIES } from '../core/policy-syntax.ts';
import { LOG_LEVEL_SETTINGS } from '../core/log.ts';
import { DNS_NAME, parseCommandFlags, parseDuration } from './control.ts';
import { type FlagSpec, formatHelp } from './flags.ts';
import { identityMaterial, webhookMaterial } from './install-identity.ts';
import {
  controlPlaneAddress,
  crdNames,
  INJECTOR_SERVICE,
  installObjects,
  NAMESPACE,
  toYaml,
  type CrdName,
} from './install-manifests.ts';
import { packageVersion } from './version.ts';

export const summary = 'print the Kubernetes manifests of Trellis (--crds: its CustomResourceDefinitions)';

const DEFAULT_ISSUER_LIFETIME = '8760h';
const DEFAULT_IMAGE = `localhost/trellis:${packageVersion()}`;

const FLAGS: FlagSpec[] = [
  { name: 'crds', kind: 'boolean', help: 'print only the CustomResourceDefinitions (apply these first)' },
  {
    name: 'skip-gateway-api',
    kind: 'boolean',
    help: 'with --crds: say nothing about the Gateway API CRDs (not bundled yet; see docs/kubernetes.md)',
  },
  {
    name: 'ha',
    kind: 'boolean',
    help: '3 control-plane replicas on different nodes, and a PodDisruptionBudget',
  },
  {
    name: 'image',
    kind: 'string',
    help: `the image of the control plane, the proxy and trellis init (default ${DEFAULT_IMAGE})`,
  },
  {
    name: 'trust-domain',
    kind: 'string',
    help: 'trust domain of the SPIFFE identities (default cluster.local)',
  },
  { name: 'cluster-domain', kind: 'string', help: "the cluster's DNS domain (default cluster.local)" },
  { name: 'log-level', kind: 'string', help: "the control plane's log level (default info)" },
  { name: 'proxy-log-level', kind: 'string', help: "the proxies' log level (default warn)" },
  {
    name: 'default-inbound-policy',
    kind: 'string',
    help: `${DEFAULT_POLICIES.join(', ')} (default all-unauthenticated)`,
  },
  {
    name: 'no-native-sidecar',
    kind: 'boolean',
    help: 'inject the proxy as a classic sidecar (Kubernetes before 1.29); a pod annotation overrides',
  },
  { name: 'cni', kind: 'boolean', help: 'a CNI plugin writes the iptables rules: inject no trellis-init' },
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

/** deploy/crds.yaml, beside src/ or dist/. */
export async function readCrds(): Promise<{ text: string; crds: CrdName[] }> {
  const url = new URL('../../deploy/crds.yaml', import.meta.url);
  const text = await readFile(url, 'utf8');
  return { text, crds: crdNames(text) };
}

const GATEWAY_API_NOTE =
  'trellis install --crds: the Gateway API CRDs (HTTPRoute, GRPCRoute) are not bundled yet; ' +
  'install them from https://gateway-api.sigs.k8s.io/guides/ if you use them, ' +
  'or pass --skip-gateway-api to silence this note\n';

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
  const text = (name: string, fallback: string, allowed?: readonly string[]): string => {
    const value = (values.get(name) as string | undefined) ?? fallback;
    if (value === '') throw new ConfigError(`--${name}`, 'must not be empty');
    if (allowed !== undefined && !allowed.includes(value)) {
      throw new ConfigError(`--${name}`, `expected one of ${allowed.join(', ')}, got '${value}'`);
    }
    return value;
  };
  const { text: crdText, crds } = await readCrds();
  if (values.get('crds') === true) {
    process.stdout.write(crdText);
    if (values.get('skip-gateway-api') !== true) process.stderr.write(GATEWAY_API_NOTE);
    return 0;
  }
  const trustDomain = text('trust-domain', 'cluster.local');
  const clusterDomain = text('cluster-domain', 'cluster.local');
  for (const [flag, value] of [
    ['--trust-domain', trustDomain],
    ['--cluster-domain', clusterDomain],
  ] as const) {
    if (!DNS_NAME.test(value)) throw new ConfigError(flag, `expected a DNS name, got '${value}'`);
  }
  const image = text('image', DEFAULT_IMAGE);
  if (/\s/.test(image)) throw new ConfigError('--image', `expected an image reference, got '${image}'`);
  const settings = {
    image,
    ha: values.get('ha') === true,
    controlLogLevel: text('log-level', 'info', LOG_LEVEL_SETTINGS),
    clusterDomain,
    injector: {
      proxyImage: image,
      controlPlaneAddress: controlPlaneAddress(clusterDomain),
      trustDomain,
      proxyLogLevel: text('proxy-log-level', 'warn', LOG_LEVEL_SETTINGS),
      defaultInboundPolicy: text('default-inbound-policy', 'all-unauthenticated', DEFAULT_POLICIES),
      nativeSidecar: values.get('no-native-sidecar') !== true,
      cni: values.get('cni') === true,
      controlPlaneNamespace: NAMESPACE,
    },
  };
  const issuerLifetimeMs = parseDuration(
    '--identity-issuer-lifetime',
    text('identity-issuer-lifetime', DEFAULT_ISSUER_LIFETIME),
  );
  const now = Date.now();
  const identity = await identityMaterial(
    {
      anchors: values.get('identity-trust-anchors-file') as string | undefined,
      issuerCert: values.get('identity-issuer-certificate-file') as string | undefined,
      issuerKey: values.get('identity-issuer-key-file') as string | undefined,
    },
    trustDomain,
    issuerLifetimeMs,
    now,
  );
  const webhook = await webhookMaterial(INJECTOR_SERVICE, NAMESPACE, trustDomain, issuerLifetimeMs, now);
  process.stdout.write(toYaml(installObjects(settings, identity, webhook, crds)));
  return 0;
}
