// The flags that set what the injector puts into pods (the `config.yaml` of the ConfigMap
// `trellis-config`, InjectorConfig), shared by `trellis install`, `trellis upgrade` and `trellis
// inject`: each takes them over a base, the defaults of a new install, the cluster's own
// configuration (upgrade) or a file (inject --config). A flag not given keeps the base's value.
import { ConfigError } from '../core/errors.ts';
import { LOG_LEVEL_SETTINGS } from '../core/log.ts';
import { DEFAULT_POLICIES } from '../core/policy-syntax.ts';
import type { InjectorConfig } from '../control/injector/proxy-containers.ts';
import { isSampleRatio } from '../control/injector/config.ts';
import { traceEndpoint } from '../proxy/telemetry/trace-endpoint.ts';
import { DNS_NAME } from './control.ts';
import type { FlagSpec } from './flags.ts';
import { clusterDomainOf, controlPlaneAddress, NAMESPACE } from './install-manifests.ts';
import { packageVersion } from './version.ts';

export const DEFAULT_IMAGE = `localhost/trellis:${packageVersion()}`;

export const INJECTOR_FLAGS: FlagSpec[] = [
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
    name: 'trace-collector',
    kind: 'string',
    help: 'OTLP URL the proxies export spans to: http(s):// (OTLP/HTTP) or grpc(s):// (OTLP/gRPC) (default: no tracing)',
  },
  {
    name: 'trace-sample-ratio',
    kind: 'string',
    help: 'share 0..1 of requests without a sampling decision that start a trace (default 0; a pod annotation overrides)',
  },
];

/** What a new install has. */
export const DEFAULT_INJECTOR_CONFIG: InjectorConfig = {
  proxyImage: DEFAULT_IMAGE,
  controlPlaneAddress: controlPlaneAddress('cluster.local'),
  trustDomain: 'cluster.local',
  proxyLogLevel: 'warn',
  defaultInboundPolicy: 'all-unauthenticated',
  nativeSidecar: true,
  cni: false,
  controlPlaneNamespace: NAMESPACE,
  traceCollector: '',
  traceSampleRatio: '0',
};

/** The flag `name`'s value, else `fallback`; ConfigError when empty or not one of `allowed`. */
export function flagText(
  values: ReadonlyMap<string, unknown>,
  name: string,
  fallback: string,
  allowed?: readonly string[],
): string {
  const value = (values.get(name) as string | undefined) ?? fallback;
  if (value === '') throw new ConfigError(`--${name}`, 'must not be empty');
  if (allowed !== undefined && !allowed.includes(value)) {
    throw new ConfigError(`--${name}`, `expected one of ${allowed.join(', ')}, got '${value}'`);
  }
  return value;
}

/** `base` with the INJECTOR_FLAGS given in `values`; ConfigError names a bad flag. */
export function injectorConfigFromFlags(
  values: ReadonlyMap<string, unknown>,
  base: InjectorConfig = DEFAULT_INJECTOR_CONFIG,
): InjectorConfig {
  const trustDomain = flagText(values, 'trust-domain', base.trustDomain);
  const clusterDomain = flagText(values, 'cluster-domain', clusterDomainOf(base.controlPlaneAddress));
  for (const [flag, value] of [
    ['--trust-domain', trustDomain],
    ['--cluster-domain', clusterDomain],
  ] as const) {
    if (!DNS_NAME.test(value)) throw new ConfigError(flag, `expected a DNS name, got '${value}'`);
  }
  const image = flagText(values, 'image', base.proxyImage);
  if (/\s/.test(image)) throw new ConfigError('--image', `expected an image reference, got '${image}'`);
  const flag = (name: string): boolean | undefined => values.get(name) as boolean | undefined;
  return {
    proxyImage: image,
    controlPlaneAddress: values.has('cluster-domain')
      ? controlPlaneAddress(clusterDomain)
      : base.controlPlaneAddress,
    trustDomain,
    proxyLogLevel: flagText(values, 'proxy-log-level', base.proxyLogLevel, LOG_LEVEL_SETTINGS),
    defaultInboundPolicy: flagText(
      values,
      'default-inbound-policy',
      base.defaultInboundPolicy,
      DEFAULT_POLICIES,
    ),
    nativeSidecar: flag('no-native-sidecar') === undefined ? base.nativeSidecar : !flag('no-native-sidecar'),
    cni: flag('cni') ?? base.cni,
    controlPlaneNamespace: base.controlPlaneNamespace,
    traceCollector: traceCollectorFlag(values, base.traceCollector),
    traceSampleRatio: traceSampleRatioFlag(values, base.traceSampleRatio),
  };
}

/** --trace-collector: an OTLP URL as the proxy reads it (telemetry/trace-endpoint.ts); '' keeps no tracing. */
function traceCollectorFlag(values: ReadonlyMap<string, unknown>, fallback: string): string {
  const value = values.get('trace-collector') as string | undefined;
  if (value === undefined) return fallback;
  const endpoint = traceEndpoint(value);
  if (typeof endpoint === 'string') throw new ConfigError('--trace-collector', endpoint);
  return value;
}

/** --trace-sample-ratio: a number from 0 to 1. */
function traceSampleRatioFlag(values: ReadonlyMap<string, unknown>, fallback: string): string {
  const value = values.get('trace-sample-ratio') as string | undefined;
  if (value === undefined) return fallback;
  if (!isSampleRatio(value))
    throw new ConfigError('--trace-sample-ratio', `expected a number from 0 to 1, got '${value}'`);
  return value;
}
