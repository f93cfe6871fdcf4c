// API discovery for the fake Kubernetes API server (server.ts), enough for the real kubectl to map
// kinds to resources (`kubectl create --dry-run=client -f -` asks for it before anything else):
// the legacy documents /api, /apis, /api/v1 and /apis/GROUP/VERSION for the kinds Trellis reads
// and `trellis install` writes. kubectl falls back to them when the answer is plain
// application/json rather than aggregated discovery.

interface DiscoveredKind {
  readonly groupVersion: string;
  readonly plural: string;
  readonly kind: string;
  readonly namespaced: boolean;
  /** It has a status subresource (PLURAL/status: written only there, ignored in the main resource). */
  readonly status?: boolean;
}

const VERBS = ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'];
const STATUS_VERBS = ['get', 'patch', 'update'];

export const DISCOVERED_KINDS: readonly DiscoveredKind[] = [
  { groupVersion: 'v1', plural: 'namespaces', kind: 'Namespace', namespaced: false },
  { groupVersion: 'v1', plural: 'serviceaccounts', kind: 'ServiceAccount', namespaced: true },
  { groupVersion: 'v1', plural: 'configmaps', kind: 'ConfigMap', namespaced: true },
  { groupVersion: 'v1', plural: 'secrets', kind: 'Secret', namespaced: true },
  { groupVersion: 'v1', plural: 'services', kind: 'Service', namespaced: true },
  { groupVersion: 'v1', plural: 'pods', kind: 'Pod', namespaced: true },
  { groupVersion: 'apps/v1', plural: 'deployments', kind: 'Deployment', namespaced: true },
  {
    groupVersion: 'policy/v1',
    plural: 'poddisruptionbudgets',
    kind: 'PodDisruptionBudget',
    namespaced: true,
  },
  {
    groupVersion: 'rbac.authorization.k8s.io/v1',
    plural: 'clusterroles',
    kind: 'ClusterRole',
    namespaced: false,
  },
  {
    groupVersion: 'rbac.authorization.k8s.io/v1',
    plural: 'clusterrolebindings',
    kind: 'ClusterRoleBinding',
    namespaced: false,
  },
  // The control plane's Role in its namespace: the Lease of status writes (install-manifests.ts).
  { groupVersion: 'rbac.authorization.k8s.io/v1', plural: 'roles', kind: 'Role', namespaced: true },
  {
    groupVersion: 'rbac.authorization.k8s.io/v1',
    plural: 'rolebindings',
    kind: 'RoleBinding',
    namespaced: true,
  },
  // The Lease the replicas of `trellis control` elect the status writer with (control/leader-lease.ts).
  { groupVersion: 'coordination.k8s.io/v1', plural: 'leases', kind: 'Lease', namespaced: true },
  {
    groupVersion: 'admissionregistration.k8s.io/v1',
    plural: 'mutatingwebhookconfigurations',
    kind: 'MutatingWebhookConfiguration',
    namespaced: false,
  },
  {
    groupVersion: 'apiextensions.k8s.io/v1',
    plural: 'customresourcedefinitions',
    kind: 'CustomResourceDefinition',
    namespaced: false,
  },
  {
    groupVersion: 'authentication.k8s.io/v1',
    plural: 'tokenreviews',
    kind: 'TokenReview',
    namespaced: false,
  },
  { groupVersion: 'discovery.k8s.io/v1', plural: 'endpointslices', kind: 'EndpointSlice', namespaced: true },
  { groupVersion: 'policy.trellis.dev/v1alpha1', plural: 'servers', kind: 'Server', namespaced: true },
  {
    groupVersion: 'policy.trellis.dev/v1alpha1',
    plural: 'authorizationpolicies',
    kind: 'AuthorizationPolicy',
    namespaced: true,
  },
  {
    groupVersion: 'policy.trellis.dev/v1alpha1',
    plural: 'httplocalratelimitpolicies',
    kind: 'HTTPLocalRateLimitPolicy',
    namespaced: true,
  },
  { groupVersion: 'traffic.trellis.dev/v1alpha1', plural: 'httpfaults', kind: 'HTTPFault', namespaced: true },
  // The experimental channel's retry budget policy the route source watches, status written back.
  {
    groupVersion: 'gateway.networking.x-k8s.io/v1alpha1',
    plural: 'xbackendtrafficpolicies',
    kind: 'XBackendTrafficPolicy',
    namespaced: true,
    status: true,
  },
  // The Gateway API routes the route source watches (src/control/routes/kubernetes.ts).
  ...(['HTTPRoute', 'GRPCRoute'] as const).map((kind) => ({
    groupVersion: 'gateway.networking.k8s.io/v1',
    plural: `${kind.toLowerCase()}s`,
    kind,
    namespaced: true,
    status: true,
  })),
];

/** The discovery document at `pathname`, or null when it is not one. */
export function discoveryDocument(pathname: string): unknown {
  const groupVersions = [...new Set(DISCOVERED_KINDS.map((k) => k.groupVersion))];
  if (pathname === '/api') return { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [] };
  if (pathname === '/apis') {
    return {
      kind: 'APIGroupList',
      apiVersion: 'v1',
      groups: groupVersions
        .filter((gv) => gv.includes('/'))
        .map((groupVersion) => {
          const [name, version] = groupVersion.split('/') as [string, string];
          const preferred = { groupVersion, version };
          return { name, versions: [preferred], preferredVersion: preferred };
        }),
    };
  }
  const groupVersion = pathname === '/api/v1' ? 'v1' : /^\/apis\/([^/]+\/[^/]+)$/.exec(pathname)?.[1];
  if (groupVersion === undefined || !groupVersions.includes(groupVersion)) return null;
  return {
    kind: 'APIResourceList',
    apiVersion: 'v1',
    groupVersion,
    resources: DISCOVERED_KINDS.filter((k) => k.groupVersion === groupVersion).flatMap((k) => [
      {
        name: k.plural,
        singularName: k.kind.toLowerCase(),
        namespaced: k.namespaced,
        kind: k.kind,
        verbs: VERBS,
      },
      ...(k.status === true
        ? [
            {
              name: `${k.plural}/status`,
              singularName: '',
              namespaced: k.namespaced,
              kind: k.kind,
              verbs: STATUS_VERBS,
            },
          ]
        : []),
    ]),
  };
}
