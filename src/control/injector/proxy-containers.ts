// What the injector adds to a pod (Kubernetes install, docs/kubernetes.md): the proxy container
// (a native sidecar, an init container with `restartPolicy: Always` and a startup probe on the
// admin listener's /ready, or a classic sidecar), the `trellis init` init container that writes
// the iptables rules (NET_ADMIN, NET_RAW; left out in CNI mode), and the projected ServiceAccount
// token with the identity audience. Pure: the settings come from the install's ConfigMap
// (InjectorConfig) and the pod's `config.trellis.dev/*` annotations.
import { TOKEN_AUDIENCE } from '../identity/tokens.ts';
import { controlPlaneId } from '../../core/spiffe.ts';
import { isSampleRatio } from './config.ts';
import { OPAQUE_PORTS_ANNOTATION, PROXY_CONTAINER_NAME } from '../discovery/kubernetes-translate.ts';

/** The injector's settings: the `config.yaml` of the ConfigMap `trellis-config`. */
export interface InjectorConfig {
  /** The one image of the control plane, the proxy and `trellis init`. */
  readonly proxyImage: string;
  /** The control plane's gRPC API (destination, identity, policy), HOST:PORT. */
  readonly controlPlaneAddress: string;
  readonly trustDomain: string;
  readonly proxyLogLevel: string;
  readonly defaultInboundPolicy: string;
  /** Native sidecars (Kubernetes 1.29+) unless a pod says otherwise. */
  readonly nativeSidecar: boolean;
  /** A CNI plugin writes the iptables rules: no `trellis init` container. */
  readonly cni: boolean;
  /** The namespace of the control plane, whose pods are never injected. */
  readonly controlPlaneNamespace: string;
  /** The OTLP collector proxies export spans to ('' = no tracing; `trellis proxy --trace-collector`). */
  readonly traceCollector: string;
  /** Share of requests without a sampling decision that start a trace (0..1, as text). */
  readonly traceSampleRatio: string;
}

export const INIT_CONTAINER_NAME = 'trellis-init';
export const TOKEN_VOLUME_NAME = 'trellis-identity-token';
export const PROXY_UID = 2102;
export const PORTS = { inbound: 4143, outbound: 4140, admin: 4191, tap: 4190 } as const;
/** The names of the proxy container's ports (the control plane finds a pod's tap port by its name). */
export const PORT_NAMES = { inbound: 'trellis-inbound', admin: 'trellis-admin', tap: 'trellis-tap' } as const;

const TOKEN_DIR = '/var/run/secrets/trellis.dev/identity';
const TOKEN_FILE = 'token';
const CONFIG = 'config.trellis.dev/';
/** Per-pod settings, each overriding the install's (docs/kubernetes.md lists them). */
export const POD_SETTINGS = {
  nativeSidecar: `${CONFIG}native-sidecar`,
  skipInboundPorts: `${CONFIG}skip-inbound-ports`,
  skipOutboundPorts: `${CONFIG}skip-outbound-ports`,
  opaquePorts: OPAQUE_PORTS_ANNOTATION,
  logLevel: `${CONFIG}proxy-log-level`,
  defaultInboundPolicy: `${CONFIG}default-inbound-policy`,
  cpuRequest: `${CONFIG}proxy-cpu-request`,
  memoryRequest: `${CONFIG}proxy-memory-request`,
  cpuLimit: `${CONFIG}proxy-cpu-limit`,
  memoryLimit: `${CONFIG}proxy-memory-limit`,
  traceSampleRatio: `${CONFIG}trace-sample-ratio`,
  jitWarmUp: `${CONFIG}proxy-jit-warm-up`,
} as const;

type Json = Record<string, unknown>;
type Annotations = Readonly<Record<string, string>>;

/** Every container the install and the injector write runs with this, but for init's NET_ADMIN. */
export function restrictedSecurityContext(uid: number): Json {
  return {
    runAsUser: uid,
    runAsNonRoot: true,
    readOnlyRootFilesystem: true,
    allowPrivilegeEscalation: false,
    capabilities: { drop: ['ALL'] },
    seccompProfile: { type: 'RuntimeDefault' },
  };
}

/** Whether the pod runs its proxy as a native sidecar: its annotation, else the install's setting. */
export function usesNativeSidecar(config: InjectorConfig, annotations: Annotations): boolean {
  const value = annotations[POD_SETTINGS.nativeSidecar];
  return value === undefined ? config.nativeSidecar : value !== 'false';
}

const fieldEnv = (name: string, fieldPath: string): Json => ({
  name,
  valueFrom: { fieldRef: { fieldPath } },
});

/** The pod's trace sample ratio annotation when it is a number from 0 to 1, else the install's. */
function sampleRatio(annotations: Annotations, config: InjectorConfig): string {
  const value = annotations[POD_SETTINGS.traceSampleRatio];
  return value !== undefined && isSampleRatio(value) ? value : config.traceSampleRatio;
}

/**
 * The pod's JIT warm-up annotation as a flag when it is a whole number of requests (0: off; a pod
 * with a small CPU limit spends up to the warm-up's 2 s budget on it before it is ready), else none
 * (the proxy's default).
 */
function jitWarmUpArgs(annotations: Annotations): string[] {
  const value = annotations[POD_SETTINGS.jitWarmUp];
  return value !== undefined && /^\d{1,6}$/.test(value) ? [`--jit-warm-up=${Number(value)}`] : [];
}

/** The proxy container; `native` adds `restartPolicy: Always` and the startup probe. */
export function proxyContainer(config: InjectorConfig, annotations: Annotations, native: boolean): Json {
  const setting = (key: keyof typeof POD_SETTINGS, fallback: string): string =>
    annotations[POD_SETTINGS[key]] ?? fallback;
  const opaque = annotations[POD_SETTINGS.opaquePorts];
  const resources: Json = {
    requests: { cpu: setting('cpuRequest', '100m'), memory: setting('memoryRequest', '64Mi') },
  };
  const limits = Object.fromEntries(
    [
      ['cpu', annotations[POD_SETTINGS.cpuLimit]],
      ['memory', annotations[POD_SETTINGS.memoryLimit]],
    ].filter(([, v]) => v !== undefined),
  );
  if (Object.keys(limits).length > 0) resources['limits'] = limits;
  const ready = { httpGet: { path: '/ready', port: PORTS.admin } };
  return {
    name: PROXY_CONTAINER_NAME,
    image: config.proxyImage,
    args: [
      'proxy',
      '--mode=transparent',
      `--inbound-listen=0.0.0.0:${PORTS.inbound}`,
      `--outbound-listen=127.0.0.1:${PORTS.outbound}`,
      `--admin-listen=0.0.0.0:${PORTS.admin}`,
      `--destination-address=${config.controlPlaneAddress}`,
      `--identity-address=${config.controlPlaneAddress}`,
      `--policy-address=${config.controlPlaneAddress}`,
      `--identity-token-file=${TOKEN_DIR}/${TOKEN_FILE}`,
      `--trust-domain=${config.trustDomain}`,
      // Kubernetes expands $(VAR) in args from the container's env (the downward API below).
      '--workload=$(TRELLIS_POD_NAME)',
      '--namespace=$(TRELLIS_POD_NAMESPACE)',
      '--service-account=$(TRELLIS_POD_SERVICE_ACCOUNT)',
      `--default-policy=${setting('defaultInboundPolicy', config.defaultInboundPolicy)}`,
      `--log-level=${setting('logLevel', config.proxyLogLevel)}`,
      // Live taps over mTLS, from the control plane's identity only (docs/tap.md).
      `--tap-listen=0.0.0.0:${PORTS.tap}`,
      `--tap-allowed-identity=${controlPlaneId(config.trustDomain, config.controlPlaneNamespace)}`,
      ...(opaque === undefined ? [] : [`--opaque-ports=${opaque}`]),
      ...jitWarmUpArgs(annotations),
      ...(config.traceCollector === ''
        ? []
        : [
            `--trace-collector=${config.traceCollector}`,
            `--trace-sample-ratio=${sampleRatio(annotations, config)}`,
          ]),
    ],
    env: [
      fieldEnv('TRELLIS_POD_NAME', 'metadata.name'),
      fieldEnv('TRELLIS_POD_NAMESPACE', 'metadata.namespace'),
      fieldEnv('TRELLIS_POD_SERVICE_ACCOUNT', 'spec.serviceAccountName'),
    ],
    ports: [
      { name: PORT_NAMES.inbound, containerPort: PORTS.inbound },
      { name: PORT_NAMES.admin, containerPort: PORTS.admin },
      { name: PORT_NAMES.tap, containerPort: PORTS.tap },
    ],
    ...(native
      ? { restartPolicy: 'Always', startupProbe: { ...ready, periodSeconds: 1, failureThreshold: 120 } }
      : {}),
    readinessProbe: { ...ready, periodSeconds: 5 },
    livenessProbe: { httpGet: { path: '/live', port: PORTS.admin }, periodSeconds: 10 },
    resources,
    securityContext: restrictedSecurityContext(PROXY_UID),
    volumeMounts: [{ name: TOKEN_VOLUME_NAME, mountPath: TOKEN_DIR, readOnly: true }],
  };
}

/** The init container that writes the iptables rules (root with NET_ADMIN and NET_RAW only). */
export function initContainer(config: InjectorConfig, annotations: Annotations): Json {
  const skipIn = annotations[POD_SETTINGS.skipInboundPorts];
  const skipOut = annotations[POD_SETTINGS.skipOutboundPorts];
  return {
    name: INIT_CONTAINER_NAME,
    image: config.proxyImage,
    args: [
      'init',
      `--proxy-uid=${PROXY_UID}`,
      `--inbound-port=${PORTS.inbound}`,
      `--outbound-port=${PORTS.outbound}`,
      `--admin-port=${PORTS.admin}`,
      // The tap listener is reached directly, like the admin port (its own mTLS, not the mesh's).
      `--inbound-ports-to-ignore=${skipIn === undefined ? PORTS.tap : `${PORTS.tap},${skipIn}`}`,
      ...(skipOut === undefined ? [] : [`--outbound-ports-to-ignore=${skipOut}`]),
    ],
    resources: { requests: { cpu: '10m', memory: '32Mi' } },
    securityContext: {
      runAsUser: 0,
      runAsNonRoot: false,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'], add: ['NET_ADMIN', 'NET_RAW'] },
      seccompProfile: { type: 'RuntimeDefault' },
    },
    // iptables takes its lock in /run; the root file system is read-only.
    volumeMounts: [{ name: `${INIT_CONTAINER_NAME}-run`, mountPath: '/run' }],
  };
}

/** The volumes the injected containers mount. */
export function injectedVolumes(cni: boolean): Json[] {
  const token = {
    name: TOKEN_VOLUME_NAME,
    projected: {
      sources: [
        {
          serviceAccountToken: { audience: TOKEN_AUDIENCE, expirationSeconds: 86400, path: TOKEN_FILE },
        },
      ],
    },
  };
  return cni ? [token] : [token, { name: `${INIT_CONTAINER_NAME}-run`, emptyDir: {} }];
}
