// The Kubernetes objects of `trellis install` (and the list `trellis uninstall` deletes), as plain
// objects: pure functions of the settings and the certificates (install-identity.ts). The RBAC
// grants exactly what the control plane calls today: list and watch of Services, Pods and
// EndpointSlices (discovery/kubernetes.ts, and the catalog of cli/control.ts), get of Namespaces
// (the injector, injector/webhook-server.ts, reads their annotations) and list and watch of
// Trellis's CRDs (policy/kubernetes.ts, routes/kubernetes.ts; the groups and plurals are read from
// deploy/crds.yaml itself), list and watch of the Gateway API's HTTPRoutes, GRPCRoutes and
// XBackendTrafficPolicies and patch of their status (routes/kubernetes.ts), and create of
// TokenReviews (identity/token-review.ts); and, in a Role of the control plane's namespace only,
// get, create and update of Leases (the status writer's election, control/leader-lease.ts).
import { parseAllDocuments, stringify } from 'yaml';
import { restrictedSecurityContext, type InjectorConfig } from '../control/injector/proxy-containers.ts';
import type { IdentityMaterial, WebhookMaterial } from './install-identity.ts';

export const NAMESPACE = 'trellis';
export const CONTROL = 'trellis-control';
export const INJECTOR_SERVICE = 'trellis-injector';
export const WEBHOOK_CONFIGURATION = 'trellis-proxy-injector';
export const CONTROL_UID = 2103;
const PART_OF = { 'app.kubernetes.io/part-of': 'trellis' };
const CONTROL_LABELS = { ...PART_OF, 'app.kubernetes.io/name': CONTROL };
const PORTS = { grpc: 8086, http: 8084, webhook: 8443 } as const;
const IDENTITY_DIR = '/var/run/trellis/identity';
const IDENTITY_SOURCE_DIR = '/var/run/trellis/identity-source';
const INJECTOR_TLS_DIR = '/var/run/trellis/injector-tls';
const CONFIG_DIR = '/var/run/trellis/config';
const OPERATOR_DIR = '/var/run/trellis/operator';
export const SECRETS = {
  issuer: 'trellis-identity-issuer',
  webhook: 'trellis-injector-tls',
  /** The operator token the HTTP API wants for changes, taps and traces (key `token`). */
  operator: 'trellis-operator-token',
} as const;
export const CONFIG_MAPS = { anchors: 'trellis-identity-trust-anchors', config: 'trellis-config' } as const;
/** The keys of the ConfigMap trellis-config: the injector's settings, and the control plane's. */
export const CONFIG_KEYS = { injector: 'config.yaml', controlPlane: 'control-plane.yaml' } as const;

export interface InstallSettings {
  readonly image: string;
  readonly ha: boolean;
  readonly controlLogLevel: string;
  readonly clusterDomain: string;
  readonly injector: InjectorConfig;
}

type Json = Record<string, unknown>;

const meta = (name: string, namespaced = true): Json => ({
  name,
  ...(namespaced ? { namespace: NAMESPACE } : {}),
  labels: { ...PART_OF },
});

/** A CustomResourceDefinition of deploy/crds.yaml, as far as install and uninstall need it. */
export interface CrdName {
  readonly name: string;
  readonly group: string;
  readonly plural: string;
}

/** The CRDs of a multi-document YAML text (deploy/crds.yaml); throws naming a document it cannot read. */
export function crdNames(text: string): CrdName[] {
  return parseAllDocuments(text).map((doc, i) => {
    const crd = doc.toJS() as {
      kind?: string;
      metadata?: { name?: string };
      spec?: { group?: string; names?: { plural?: string } };
    };
    const name = crd.metadata?.name;
    const group = crd.spec?.group;
    const plural = crd.spec?.names?.plural;
    if (doc.errors.length > 0 || crd.kind !== 'CustomResourceDefinition' || !name || !group || !plural) {
      throw new Error(`document ${i + 1} is not a CustomResourceDefinition with a name, group and plural`);
    }
    return { name, group, plural };
  });
}

const GATEWAY_API_GROUP = 'gateway.networking.k8s.io';
const GATEWAY_API_EXPERIMENTAL_GROUP = 'gateway.networking.x-k8s.io';

/** The ClusterRole's rules: exactly the calls the control plane makes (no wildcards). */
export function controlPlaneRules(crds: readonly CrdName[]): Json[] {
  const groups = [...new Set(crds.map((c) => c.group))];
  return [
    { apiGroups: [''], resources: ['services', 'pods'], verbs: ['list', 'watch'] },
    // The injector reads the annotations of the namespace a pod is created in.
    { apiGroups: [''], resources: ['namespaces'], verbs: ['get'] },
    { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['list', 'watch'] },
    ...groups.map((group) => ({
      apiGroups: [group],
      resources: crds.filter((c) => c.group === group).map((c) => c.plural),
      verbs: ['list', 'watch'],
    })),
    // Routes (routes/kubernetes.ts), whoever installed their CRDs; their status is written back.
    { apiGroups: [GATEWAY_API_GROUP], resources: ['httproutes', 'grpcroutes'], verbs: ['list', 'watch'] },
    {
      apiGroups: [GATEWAY_API_GROUP],
      resources: ['httproutes/status', 'grpcroutes/status'],
      verbs: ['patch'],
    },
    // Retry budgets (XBackendTrafficPolicy, experimental channel); their status is written back.
    {
      apiGroups: [GATEWAY_API_EXPERIMENTAL_GROUP],
      resources: ['xbackendtrafficpolicies'],
      verbs: ['list', 'watch'],
    },
    {
      apiGroups: [GATEWAY_API_EXPERIMENTAL_GROUP],
      resources: ['xbackendtrafficpolicies/status'],
      verbs: ['patch'],
    },
    { apiGroups: ['authentication.k8s.io'], resources: ['tokenreviews'], verbs: ['create'] },
  ];
}

/** The Role's rules, in the control plane's namespace: the Lease of the status writer's election. */
export function controlPlaneNamespaceRules(): Json[] {
  return [{ apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['get', 'create', 'update'] }];
}

/** The control plane's address as proxies reach it. */
export const controlPlaneAddress = (clusterDomain: string): string =>
  `${CONTROL}.${NAMESPACE}.svc.${clusterDomain}:${PORTS.grpc}`;

/** The cluster domain of an address controlPlaneAddress made (else cluster.local). */
export function clusterDomainOf(address: string): string {
  const prefix = `${CONTROL}.${NAMESPACE}.svc.`;
  const suffix = `:${PORTS.grpc}`;
  return address.startsWith(prefix) && address.endsWith(suffix)
    ? address.slice(prefix.length, -suffix.length)
    : 'cluster.local';
}

function controlPlaneDeployment(settings: InstallSettings): Json {
  const identityCopy = {
    name: 'identity-files',
    image: settings.image,
    // The CA writes its bundle into its folder; Secret and ConfigMap volumes are read-only.
    command: ['sh', '-c', `cp -L ${IDENTITY_SOURCE_DIR}/*.pem ${IDENTITY_DIR}/`],
    resources: { requests: { cpu: '10m', memory: '16Mi' } },
    securityContext: restrictedSecurityContext(CONTROL_UID),
    volumeMounts: [
      { name: 'identity-source', mountPath: IDENTITY_SOURCE_DIR, readOnly: true },
      { name: 'identity', mountPath: IDENTITY_DIR },
    ],
  };
  const control = {
    name: 'control',
    image: settings.image,
    args: [
      'control',
      '--in-cluster',
      `--identity-dir=${IDENTITY_DIR}`,
      `--trust-domain=${settings.injector.trustDomain}`,
      `--cluster-domain=${settings.clusterDomain}`,
      `--log-level=${settings.controlLogLevel}`,
      `--grpc-listen=0.0.0.0:${PORTS.grpc}`,
      `--http-listen=0.0.0.0:${PORTS.http}`,
      `--injector-listen=0.0.0.0:${PORTS.webhook}`,
      `--injector-tls-dir=${INJECTOR_TLS_DIR}`,
      `--injector-config=${CONFIG_DIR}/${CONFIG_KEYS.injector}`,
      `--operator-token-file=${OPERATOR_DIR}/token`,
    ],
    // The status Lease's holder identity and namespace (cli/control.ts).
    env: [
      { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
      { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
    ],
    ports: [
      { name: 'grpc', containerPort: PORTS.grpc },
      { name: 'http', containerPort: PORTS.http },
      { name: 'webhook', containerPort: PORTS.webhook },
    ],
    readinessProbe: { httpGet: { path: '/healthz', port: PORTS.http }, periodSeconds: 5 },
    livenessProbe: { tcpSocket: { port: PORTS.grpc }, periodSeconds: 10 },
    resources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '512Mi' } },
    securityContext: restrictedSecurityContext(CONTROL_UID),
    volumeMounts: [
      { name: 'identity', mountPath: IDENTITY_DIR },
      { name: 'injector-tls', mountPath: INJECTOR_TLS_DIR, readOnly: true },
      { name: 'config', mountPath: CONFIG_DIR, readOnly: true },
      { name: 'operator-token', mountPath: OPERATOR_DIR, readOnly: true },
    ],
  };
  const selector = { matchLabels: { 'app.kubernetes.io/name': CONTROL } };
  const affinity = settings.ha
    ? {
        podAntiAffinity: {
          requiredDuringSchedulingIgnoredDuringExecution: [
            { labelSelector: selector, topologyKey: 'kubernetes.io/hostname' },
          ],
          preferredDuringSchedulingIgnoredDuringExecution: [
            {
              weight: 100,
              podAffinityTerm: { labelSelector: selector, topologyKey: 'topology.kubernetes.io/zone' },
            },
          ],
        },
      }
    : undefined;
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { ...meta(CONTROL), labels: CONTROL_LABELS },
    spec: {
      replicas: settings.ha ? 3 : 1,
      selector,
      template: {
        metadata: { labels: CONTROL_LABELS },
        spec: {
          serviceAccountName: CONTROL,
          automountServiceAccountToken: true,
          securityContext: { runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } },
          ...(affinity ? { affinity } : {}),
          initContainers: [identityCopy],
          containers: [control],
          volumes: [
            {
              name: 'identity-source',
              projected: {
                sources: [{ configMap: { name: CONFIG_MAPS.anchors } }, { secret: { name: SECRETS.issuer } }],
              },
            },
            { name: 'identity', emptyDir: { medium: 'Memory' } },
            { name: 'injector-tls', secret: { secretName: SECRETS.webhook } },
            { name: 'config', configMap: { name: CONFIG_MAPS.config } },
            { name: 'operator-token', secret: { secretName: SECRETS.operator } },
          ],
        },
      },
    },
  };
}

function service(name: string, ports: Json[]): Json {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: meta(name),
    spec: { selector: { 'app.kubernetes.io/name': CONTROL }, ports },
  };
}

function webhookConfiguration(caPem: string): Json {
  return {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'MutatingWebhookConfiguration',
    metadata: meta(WEBHOOK_CONFIGURATION, false),
    webhooks: [
      {
        name: 'inject.trellis.dev',
        clientConfig: {
          service: { name: INJECTOR_SERVICE, namespace: NAMESPACE, path: '/inject', port: 443 },
          caBundle: Buffer.from(caPem).toString('base64'),
        },
        rules: [
          {
            operations: ['CREATE'],
            apiGroups: [''],
            apiVersions: ['v1'],
            resources: ['pods'],
            scope: 'Namespaced',
          },
        ],
        // An unreachable injector must not stop pods from starting anywhere in the cluster.
        failurePolicy: 'Ignore',
        timeoutSeconds: 10,
        sideEffects: 'None',
        admissionReviewVersions: ['v1'],
        reinvocationPolicy: 'Never',
        namespaceSelector: {
          matchExpressions: [
            { key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: ['kube-system', NAMESPACE] },
          ],
        },
      },
    ],
  };
}

/** Everything `trellis install` prints (not the CRDs), in the order kubectl should apply it. */
export function installObjects(
  settings: InstallSettings,
  identity: IdentityMaterial,
  webhook: WebhookMaterial,
  crds: readonly CrdName[],
  /** The operator token (`trellis upgrade` keeps the installed one). */
  operatorToken: string,
): Json[] {
  const objects: Json[] = [
    {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: {
        name: NAMESPACE,
        labels: { ...PART_OF },
        annotations: { 'trellis.dev/inject': 'disabled' },
      },
    },
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: meta(CONTROL) },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: meta(CONTROL, false),
      rules: controlPlaneRules(crds),
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: meta(CONTROL, false),
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: CONTROL },
      subjects: [{ kind: 'ServiceAccount', name: CONTROL, namespace: NAMESPACE }],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata: meta(CONTROL),
      rules: controlPlaneNamespaceRules(),
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: meta(CONTROL),
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: CONTROL },
      subjects: [{ kind: 'ServiceAccount', name: CONTROL, namespace: NAMESPACE }],
    },
    {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: meta(CONFIG_MAPS.anchors),
      data: { 'trust-anchors.pem': identity.trustAnchorsPem },
    },
    {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: meta(SECRETS.issuer),
      type: 'Opaque',
      stringData: { 'issuer.pem': identity.issuerCertPem, 'issuer.key.pem': identity.issuerKeyPem },
    },
    {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: meta(SECRETS.webhook),
      type: 'kubernetes.io/tls',
      stringData: { 'tls.crt': webhook.certPem, 'tls.key': webhook.keyPem },
    },
    {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: meta(SECRETS.operator),
      type: 'Opaque',
      stringData: { token: operatorToken },
    },
    {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: meta(CONFIG_MAPS.config),
      data: {
        [CONFIG_KEYS.injector]: stringify(settings.injector),
        // What `trellis upgrade` keeps besides the injector's settings.
        [CONFIG_KEYS.controlPlane]: stringify({ ha: settings.ha, logLevel: settings.controlLogLevel }),
      },
    },
    controlPlaneDeployment(settings),
    service(CONTROL, [
      { name: 'grpc', port: PORTS.grpc, targetPort: 'grpc', appProtocol: 'kubernetes.io/h2c' },
      { name: 'http', port: PORTS.http, targetPort: 'http' },
    ]),
    service(INJECTOR_SERVICE, [{ name: 'webhook', port: 443, targetPort: 'webhook' }]),
  ];
  if (settings.ha) {
    objects.push({
      apiVersion: 'policy/v1',
      kind: 'PodDisruptionBudget',
      metadata: meta(CONTROL),
      spec: { maxUnavailable: 1, selector: { matchLabels: { 'app.kubernetes.io/name': CONTROL } } },
    });
  }
  // Last: the webhook points at a Service that exists by now.
  objects.push(webhookConfiguration(webhook.caPem));
  return objects;
}

/** The objects as multi-document YAML. */
export function toYaml(objects: readonly Json[]): string {
  return objects.map((o) => stringify(o, { lineWidth: 0 })).join('---\n');
}

/** What `trellis uninstall` deletes: the webhook first (pods keep starting), then the rest, CRDs last. */
export function uninstallObjects(crds: readonly CrdName[]): Json[] {
  const ref = (apiVersion: string, kind: string, name: string, namespaced = true): Json => ({
    apiVersion,
    kind,
    metadata: { name, ...(namespaced ? { namespace: NAMESPACE } : {}) },
  });
  return [
    ref('admissionregistration.k8s.io/v1', 'MutatingWebhookConfiguration', WEBHOOK_CONFIGURATION, false),
    ref('rbac.authorization.k8s.io/v1', 'ClusterRoleBinding', CONTROL, false),
    ref('rbac.authorization.k8s.io/v1', 'ClusterRole', CONTROL, false),
    // Deleting the namespace deletes everything in it.
    ref('v1', 'Namespace', NAMESPACE, false),
    ...crds.map((crd) => ref('apiextensions.k8s.io/v1', 'CustomResourceDefinition', crd.name, false)),
  ];
}
