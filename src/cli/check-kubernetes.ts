// `trellis check --pre` and `trellis check --kubernetes`: Linkerd-style groups of checks of a
// cluster, through the official client (kube-cluster.ts). Each failed check says how to fix it.
//   --pre: kubernetes-api, kubernetes-version (1.29+ for native sidecars, else the classic mode),
//     pre-kubernetes-setup (the namespace is free, RBAC to create every kind install prints, by
//     SelfSubjectAccessReview), pre-kubernetes-crds (Trellis's CRDs absent or of the same group
//     and kind; the Gateway API's HTTPRoute and GRPCRoute may also be the upstream ones, with v1
//     served).
//   --kubernetes (after install): kubernetes-api, kubernetes-version, trellis-existence (the
//     namespace, the objects install wrote, control-plane pods ready), trellis-config (the
//     configuration parses; the ClusterRole grants what the control plane calls, the Role the
//     status writer's Lease; the CRDs are there), trellis-identity (the anchors and the issuer:
//     chain, key and expiry),
//     trellis-webhook (the configuration, its caBundle verifies the injector's certificate, which
//     is not expiring; the injector's Service has ready endpoints) and control-plane-version (the
//     control plane runs this CLI's version); with `--proxy`, data-plane (every injected pod's
//     proxy is ready and of this version; each ready proxy's certificate, read from its admin
//     listener through the API server's pods/proxy subresource, leads to an installed trust
//     anchor, names the pod's service account and is not close to expiry).
import { X509Certificate } from 'node:crypto';
import {
  AdmissionregistrationV1Api,
  ApiextensionsV1Api,
  AppsV1Api,
  AuthorizationV1Api,
  CoreV1Api,
  DiscoveryV1Api,
  RbacAuthorizationV1Api,
  VersionApi,
  type KubeConfig,
} from '@kubernetes/client-node';
import { isDeepStrictEqual } from 'node:util';
import { parseInjectorConfig } from '../control/injector/config.ts';
import {
  PROXY_CONTAINER_NAME,
  PROXY_INJECTED_ANNOTATION,
} from '../control/discovery/kubernetes-translate.ts';
import type { CheckResult } from './check.ts';
import { expiryCheck, pemCertificates, verifiesTo } from './check.ts';
import { checkedIdentity } from './install-identity.ts';
import { readCrds, readGatewayCrds } from './install.ts';
import {
  CONFIG_KEYS,
  CONTROL,
  controlPlaneNamespaceRules,
  controlPlaneRules,
  INJECTOR_SERVICE,
  NAMESPACE,
  SECRETS,
  WEBHOOK_CONFIGURATION,
  type CrdName,
} from './install-manifests.ts';
import { INSTALLED_NAMES, KubernetesError, readInstalled } from './kube-cluster.ts';
import { PORTS } from '../control/injector/proxy-containers.ts';
import { spiffeId, spiffeUriSan } from '../core/spiffe.ts';
import { packageVersion } from './version.ts';

/** The oldest Kubernetes with native sidecars (restartPolicy Always on init containers, on by default). */
export const NATIVE_SIDECAR_MINOR = 29;

type Group = (results: CheckResult[]) => Promise<void>;

const ok = (group: string, check: string, detail: string): CheckResult => ({
  level: 'ok',
  group,
  check,
  detail,
});
const fail = (
  group: string,
  check: string,
  detail: string,
  hint: string,
  level: 'error' | 'warn' = 'error',
): CheckResult => ({
  level,
  group,
  check,
  detail,
  hint,
});

/** A failed call's detail: the status and message, or why the server was not reached. */
const why = (error: unknown): string => new KubernetesError('', error).message.replace(/^: /, '');
const status = (error: unknown): number => new KubernetesError('', error).status;

async function apiGroup(kubeConfig: KubeConfig, results: CheckResult[]): Promise<{ minor: number } | null> {
  const group = 'kubernetes-api';
  const server = kubeConfig.getCurrentCluster()?.server ?? '(none)';
  results.push(ok(group, 'can initialize the client', server));
  try {
    const version = await kubeConfig.makeApiClient(VersionApi).getCode();
    results.push(ok(group, 'can query the Kubernetes API', `version ${version.gitVersion}`));
    const minor = Number.parseInt(version.minor, 10);
    const major = Number.parseInt(version.major, 10);
    return { minor: major > 1 ? Number.MAX_SAFE_INTEGER : minor };
  } catch (error) {
    results.push(
      fail(
        group,
        'can query the Kubernetes API',
        `${server}: ${why(error)}`,
        'check the kubeconfig (--kubeconfig, --context) and that the API server is up: kubectl version',
      ),
    );
    return null;
  }
}

function versionGroup(
  minor: number,
  nativeSidecar: boolean,
  results: CheckResult[],
  level: 'error' | 'warn',
): void {
  const group = 'kubernetes-version';
  const check = 'is running a Kubernetes with native sidecars';
  if (minor >= NATIVE_SIDECAR_MINOR)
    results.push(ok(group, check, `1.${minor} >= 1.${NATIVE_SIDECAR_MINOR}`));
  else if (!nativeSidecar)
    results.push(
      ok(group, 'is running a Kubernetes for classic sidecars', `1.${minor}, proxies as classic sidecars`),
    );
  else
    results.push(
      fail(
        group,
        check,
        `1.${minor} < 1.${NATIVE_SIDECAR_MINOR}: init containers with restartPolicy Always are not supported`,
        'install (or upgrade) with --no-native-sidecar, or upgrade the cluster to 1.29+',
        level,
      ),
    );
}

/** The kinds `trellis install` creates, as SelfSubjectAccessReview resource attributes. */
const INSTALL_ACCESS: readonly { group: string; resource: string; namespaced: boolean }[] = [
  { group: '', resource: 'namespaces', namespaced: false },
  { group: '', resource: 'serviceaccounts', namespaced: true },
  { group: '', resource: 'configmaps', namespaced: true },
  { group: '', resource: 'secrets', namespaced: true },
  { group: '', resource: 'services', namespaced: true },
  { group: 'apps', resource: 'deployments', namespaced: true },
  { group: 'policy', resource: 'poddisruptionbudgets', namespaced: true },
  { group: 'rbac.authorization.k8s.io', resource: 'clusterroles', namespaced: false },
  { group: 'rbac.authorization.k8s.io', resource: 'clusterrolebindings', namespaced: false },
  { group: 'rbac.authorization.k8s.io', resource: 'roles', namespaced: true },
  { group: 'rbac.authorization.k8s.io', resource: 'rolebindings', namespaced: true },
  { group: 'admissionregistration.k8s.io', resource: 'mutatingwebhookconfigurations', namespaced: false },
  { group: 'apiextensions.k8s.io', resource: 'customresourcedefinitions', namespaced: false },
];

const preSetup =
  (kubeConfig: KubeConfig): Group =>
  async (results) => {
    const group = 'pre-kubernetes-setup';
    const core = kubeConfig.makeApiClient(CoreV1Api);
    try {
      await core.readNamespace({ name: NAMESPACE });
      results.push(
        fail(
          group,
          'the control plane namespace does not exist yet',
          `namespace ${NAMESPACE} exists`,
          'trellis is installed already: use trellis upgrade, or trellis uninstall | kubectl delete -f - first',
        ),
      );
    } catch (error) {
      if (status(error) === 404)
        results.push(ok(group, 'the control plane namespace does not exist yet', NAMESPACE));
      else
        results.push(
          fail(
            group,
            'the control plane namespace does not exist yet',
            why(error),
            'check that you may get namespaces',
          ),
        );
    }
    const authz = kubeConfig.makeApiClient(AuthorizationV1Api);
    for (const access of INSTALL_ACCESS) {
      const what = `${access.resource}${access.group ? `.${access.group}` : ''}`;
      const check = `can create ${what}`;
      try {
        const review = await authz.createSelfSubjectAccessReview({
          body: {
            apiVersion: 'authorization.k8s.io/v1',
            kind: 'SelfSubjectAccessReview',
            spec: {
              resourceAttributes: {
                verb: 'create',
                group: access.group,
                resource: access.resource,
                ...(access.namespaced ? { namespace: NAMESPACE } : {}),
              },
            },
          },
        });
        if (review.status?.allowed === true) results.push(ok(group, check, 'allowed'));
        else
          results.push(
            fail(
              group,
              check,
              `denied${review.status?.reason ? `: ${review.status.reason}` : ''}`,
              'install as a cluster administrator (kubectl auth can-i create ' + what + ')',
            ),
          );
      } catch (error) {
        results.push(
          fail(group, check, why(error), 'check that the API server answers SelfSubjectAccessReviews'),
        );
      }
    }
  };

const GATEWAY_API_GROUP = 'gateway.networking.k8s.io';
/** The Gateway API groups and the version of each that Trellis reads (the upstream CRDs' will do). */
const GATEWAY_API_EXPERIMENTAL_GROUP = 'gateway.networking.x-k8s.io';
const GATEWAY_API_VERSIONS: Readonly<Record<string, string>> = {
  [GATEWAY_API_GROUP]: 'v1',
  [GATEWAY_API_EXPERIMENTAL_GROUP]: 'v1alpha1',
};

/**
 * Absent, or the same group and kind (an earlier install's): anything else is someone else's. The
 * Gateway API's may be anyone's (the upstream CRDs, either channel) as long as the version Trellis
 * reads is served (v1; v1alpha1 of the experimental XBackendTrafficPolicy).
 */
const preCrds =
  (kubeConfig: KubeConfig, crds: readonly CrdName[]): Group =>
  async (results) => {
    const group = 'pre-kubernetes-crds';
    const api = kubeConfig.makeApiClient(ApiextensionsV1Api);
    for (const crd of crds) {
      const check = `CRD ${crd.name} is absent or compatible`;
      try {
        const found = await api.readCustomResourceDefinition({ name: crd.name });
        const version = GATEWAY_API_VERSIONS[crd.group];
        const sameKind = found.spec.group === crd.group && found.spec.names.plural === crd.plural;
        if (
          sameKind &&
          version !== undefined &&
          !found.spec.versions.some((v) => v.name === version && v.served)
        )
          results.push(
            fail(
              group,
              check,
              `present without version ${version} served (${found.spec.versions.map((v) => v.name).join(', ')})`,
              'upgrade the Gateway API CRDs to v1.0 or later (or trellis install --crds | kubectl apply -f -)',
            ),
          );
        else if (sameKind && version !== undefined)
          results.push(
            ok(
              group,
              check,
              `present with ${version} served (Trellis uses it as it is: trellis install --crds --skip-gateway-api)`,
            ),
          );
        else if (sameKind)
          results.push(
            ok(group, check, 'present, same group and plural (trellis install --crds updates it)'),
          );
        else
          results.push(
            fail(
              group,
              check,
              `present with group ${found.spec.group}, plural ${found.spec.names.plural}`,
              `another product owns ${crd.name}: remove it first`,
            ),
          );
      } catch (error) {
        if (status(error) === 404) results.push(ok(group, check, 'absent'));
        else results.push(fail(group, check, why(error), 'check that you may get customresourcedefinitions'));
      }
    }
  };

/** One object `trellis install` wrote: it exists (its result, and the object, or null). */
async function exists<T>(
  results: CheckResult[],
  group: string,
  what: string,
  read: () => Promise<T>,
): Promise<T | null> {
  try {
    const object = await read();
    results.push(ok(group, `${what} exists`, 'found'));
    return object;
  } catch (error) {
    results.push(
      fail(
        group,
        `${what} exists`,
        why(error),
        status(error) === 404
          ? 'install it: trellis install | kubectl apply -f -'
          : 'check that you may read it (kubectl get)',
      ),
    );
    return null;
  }
}

async function postInstall(
  kubeConfig: KubeConfig,
  minor: number,
  now: number,
  results: CheckResult[],
): Promise<void> {
  const core = kubeConfig.makeApiClient(CoreV1Api);
  const apps = kubeConfig.makeApiClient(AppsV1Api);
  const rbac = kubeConfig.makeApiClient(RbacAuthorizationV1Api);
  const admission = kubeConfig.makeApiClient(AdmissionregistrationV1Api);
  const { crds } = await readCrds();
  // The installed mode decides whether an old cluster is an error (read again below, with checks).
  const early = await readInstalled(kubeConfig).catch(() => null);
  let nativeSidecar = true;
  try {
    if (early !== null)
      nativeSidecar = parseInjectorConfig('', '', early.config[CONFIG_KEYS.injector] ?? '').nativeSidecar;
  } catch {
    // trellis-config says what is wrong with it.
  }
  versionGroup(minor, nativeSidecar, results, 'error');

  // trellis-existence
  let group = 'trellis-existence';
  const namespace = await exists(results, group, `namespace ${NAMESPACE}`, () =>
    core.readNamespace({ name: NAMESPACE }),
  );
  if (namespace === null) return;
  const role = await exists(results, group, `ClusterRole ${CONTROL}`, () =>
    rbac.readClusterRole({ name: CONTROL }),
  );
  await exists(results, group, `ClusterRoleBinding ${CONTROL}`, () =>
    rbac.readClusterRoleBinding({ name: CONTROL }),
  );
  const namespaceRole = await exists(results, group, `Role ${NAMESPACE}/${CONTROL}`, () =>
    rbac.readNamespacedRole({ name: CONTROL, namespace: NAMESPACE }),
  );
  await exists(results, group, `RoleBinding ${NAMESPACE}/${CONTROL}`, () =>
    rbac.readNamespacedRoleBinding({ name: CONTROL, namespace: NAMESPACE }),
  );
  await exists(results, group, `ServiceAccount ${NAMESPACE}/${CONTROL}`, () =>
    core.readNamespacedServiceAccount({ name: CONTROL, namespace: NAMESPACE }),
  );
  const deployment = await exists(results, group, `Deployment ${NAMESPACE}/${CONTROL}`, () =>
    apps.readNamespacedDeployment({ name: CONTROL, namespace: NAMESPACE }),
  );
  const pods = await core
    .listNamespacedPod({ namespace: NAMESPACE, labelSelector: `app.kubernetes.io/name=${CONTROL}` })
    .catch(() => null);
  const ready = (pods?.items ?? []).filter((p) =>
    p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
  );
  if (ready.length > 0)
    results.push(ok(group, 'control plane pods are ready', `${ready.length} of ${pods!.items.length}`));
  else
    results.push(
      fail(
        group,
        'control plane pods are ready',
        `${pods?.items.length ?? 0} pods, none ready`,
        `kubectl -n ${NAMESPACE} describe pods -l app.kubernetes.io/name=${CONTROL}; kubectl -n ${NAMESPACE} logs deploy/${CONTROL}`,
      ),
    );

  // trellis-config
  group = 'trellis-config';
  let installed;
  try {
    installed = await readInstalled(kubeConfig);
  } catch (error) {
    results.push(
      fail(
        group,
        'the configuration can be read',
        (error as Error).message,
        'install it: trellis install | kubectl apply -f -',
      ),
    );
    return;
  }
  try {
    const config = parseInjectorConfig(
      INSTALLED_NAMES.config,
      INSTALLED_NAMES.config,
      installed.config[CONFIG_KEYS.injector] ?? '',
    );
    results.push(ok(group, 'the injector configuration is valid', `image ${config.proxyImage}`));
  } catch (error) {
    results.push(
      fail(
        group,
        'the injector configuration is valid',
        (error as Error).message,
        'write it again: trellis upgrade | kubectl apply -f -',
      ),
    );
  }
  if (role !== null) {
    const want = controlPlaneRules(crds);
    const have = JSON.parse(JSON.stringify(role.rules ?? [])) as unknown[];
    if (isDeepStrictEqual(have, want))
      results.push(
        ok(group, 'the control plane ClusterRole grants what it calls', `${want.length} rules, no wildcard`),
      );
    else
      results.push(
        fail(
          group,
          'the control plane ClusterRole grants what it calls',
          "its rules differ from this version's",
          'trellis upgrade | kubectl apply -f -',
        ),
      );
  }
  if (namespaceRole !== null) {
    const want = controlPlaneNamespaceRules();
    const have = JSON.parse(JSON.stringify(namespaceRole.rules ?? [])) as unknown[];
    const what = 'the control plane Role grants the status-writer Lease';
    if (isDeepStrictEqual(have, want)) results.push(ok(group, what, `${want.length} rule`));
    else
      results.push(
        fail(group, what, "its rules differ from this version's", 'trellis upgrade | kubectl apply -f -'),
      );
  }
  const crdApi = kubeConfig.makeApiClient(ApiextensionsV1Api);
  for (const crd of [...crds, ...(await readGatewayCrds()).crds]) {
    await exists(results, group, `CRD ${crd.name}`, () =>
      crdApi.readCustomResourceDefinition({ name: crd.name }),
    ).then((found) => {
      if (found === null)
        results[results.length - 1] = {
          ...results[results.length - 1]!,
          // Without the experimental XBackendTrafficPolicy only its retry budgets are missing.
          ...(crd.group === GATEWAY_API_EXPERIMENTAL_GROUP
            ? { level: 'warn', detail: 'absent: retry budgets come from Service annotations only' }
            : {}),
          hint:
            GATEWAY_API_VERSIONS[crd.group] !== undefined
              ? 'trellis install --crds | kubectl apply -f - (or install the upstream Gateway API CRDs)'
              : 'trellis install --crds | kubectl apply -f -',
        };
    });
  }

  // trellis-identity
  group = 'trellis-identity';
  try {
    checkedIdentity(
      {
        anchors: installed.trustAnchorsPem,
        issuerCert: installed.issuerCertPem,
        issuerKey: installed.issuerKeyPem,
      },
      { anchors: INSTALLED_NAMES.anchors, issuer: INSTALLED_NAMES.issuer, pair: INSTALLED_NAMES.issuer },
      { anchors: INSTALLED_NAMES.anchors, issuer: INSTALLED_NAMES.issuer },
      now,
    );
    results.push(
      ok(group, 'the issuer is a CA signed by a trust anchor, with its key', INSTALLED_NAMES.issuer),
    );
  } catch (error) {
    results.push(
      fail(
        group,
        'the issuer is a CA signed by a trust anchor, with its key',
        (error as Error).message,
        'give a new issuer: trellis upgrade --identity-issuer-certificate-file F --identity-issuer-key-file K | kubectl apply -f -',
      ),
    );
  }
  const withHint = (result: CheckResult, hint: string): CheckResult =>
    result.level === 'ok' ? { ...result, group } : { ...result, group, hint };
  for (const anchor of safeCertificates(installed.trustAnchorsPem)) {
    results.push(
      withHint(
        expiryCheck(`trust anchor ${anchor.subject.replaceAll('\n', ', ')}`, anchor, now, true),
        'rotate the trust anchor: docs/kubernetes.md, Upgrade (all three identity files)',
      ),
    );
  }
  const issuer = safeCertificates(installed.issuerCertPem)[0];
  if (issuer !== undefined)
    results.push(
      withHint(
        expiryCheck('issuer certificate', issuer, now, false),
        'give a new issuer with trellis upgrade (docs/kubernetes.md, Upgrade)',
      ),
    );

  // trellis-webhook
  group = 'trellis-webhook';
  const webhook = await exists(results, group, `MutatingWebhookConfiguration ${WEBHOOK_CONFIGURATION}`, () =>
    admission.readMutatingWebhookConfiguration({ name: WEBHOOK_CONFIGURATION }),
  );
  const tls = await exists(results, group, `Secret ${NAMESPACE}/${SECRETS.webhook}`, () =>
    core.readNamespacedSecret({ name: SECRETS.webhook, namespace: NAMESPACE }),
  );
  if (webhook !== null && tls !== null) {
    const caBundle = Buffer.from(webhook.webhooks?.[0]?.clientConfig.caBundle ?? '', 'base64').toString(
      'utf8',
    );
    const cert = safeCertificates(Buffer.from(tls.data?.['tls.crt'] ?? '', 'base64').toString('utf8'))[0];
    const check = "the webhook's caBundle verifies the injector's certificate";
    if (cert !== undefined && verifiesTo([cert], safeCertificates(caBundle))) {
      results.push(ok(group, check, cert.subjectAltName ?? ''));
      results.push(
        withHint(
          expiryCheck("the injector's certificate", cert, now, false),
          'trellis upgrade | kubectl apply -f - (a new certificate and caBundle)',
        ),
      );
    } else
      results.push(
        fail(group, check, 'it does not', 'trellis upgrade | kubectl apply -f - writes both again'),
      );
  }
  const slices = await kubeConfig
    .makeApiClient(DiscoveryV1Api)
    .listNamespacedEndpointSlice({
      namespace: NAMESPACE,
      labelSelector: `kubernetes.io/service-name=${INJECTOR_SERVICE}`,
    })
    .catch(() => null);
  const endpoints = (slices?.items ?? [])
    .flatMap((s) => s.endpoints ?? [])
    .filter((e) => e.conditions?.ready !== false);
  if (endpoints.length > 0)
    results.push(
      ok(
        group,
        'the injector is reachable',
        `${endpoints.length} ready endpoints behind Service ${INJECTOR_SERVICE}`,
      ),
    );
  else
    results.push(
      fail(
        group,
        'the injector is reachable',
        `no ready endpoint behind Service ${NAMESPACE}/${INJECTOR_SERVICE}: pods are created without proxies (failurePolicy Ignore)`,
        `kubectl -n ${NAMESPACE} get pods,endpointslices; kubectl -n ${NAMESPACE} logs deploy/${CONTROL}`,
      ),
    );

  // control-plane-version
  group = 'control-plane-version';
  if (deployment !== null) {
    const image = deployment.spec?.template.spec?.containers.find((c) => c.name === 'control')?.image ?? '';
    const version = packageVersion();
    if (image.endsWith(`:${version}`)) results.push(ok(group, 'the control plane is up to date', image));
    else
      results.push(
        fail(
          group,
          'the control plane is up to date',
          `it runs ${image || '(no image)'}, this CLI is ${version}`,
          `trellis upgrade --image REGISTRY/trellis:${version} | kubectl apply -f -`,
          'warn',
        ),
      );
  }
}

/** At most this many proxies' certificates are read by one `check --proxy` (8 at a time). */
const MAX_CERTIFICATE_CHECKS = 200;
const CERTIFICATE_CONCURRENCY = 8;

type Pod = Awaited<ReturnType<CoreV1Api['listPodForAllNamespaces']>>['items'][number];

/** The proxy container's admin port (its `trellis-admin` port, else the injector's default). */
function adminPortOf(pod: Pod): number {
  const proxy = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].find(
    (c) => c.name === PROXY_CONTAINER_NAME,
  );
  return proxy?.ports?.find((p) => p.name === 'trellis-admin')?.containerPort ?? PORTS.admin;
}

/**
 * What is wrong with one proxy's certificate chain (null: nothing), read through the API server
 * (pods/proxy to its admin listener's /identity): it must lead to an installed anchor, name
 * spiffe://TRUST_DOMAIN/ns/NS/sa/SERVICE_ACCOUNT, and be neither expired nor close to expiry.
 */
async function proxyCertificateProblem(
  core: CoreV1Api,
  pod: Pod,
  anchors: readonly X509Certificate[],
  trustDomain: string,
  now: number,
): Promise<{ level: 'error' | 'warn'; detail: string } | null> {
  const namespace = pod.metadata?.namespace ?? 'default';
  const expected = spiffeId(trustDomain, namespace, pod.spec?.serviceAccountName ?? 'default');
  let chain: X509Certificate[];
  try {
    const pem = await core.connectGetNamespacedPodProxyWithPath({
      name: `${pod.metadata?.name}:${adminPortOf(pod)}`,
      namespace,
      path: 'identity',
    });
    chain = pemCertificates(String(pem));
  } catch (error) {
    return status(error) === 404
      ? { level: 'error', detail: 'its proxy has no certificate yet' }
      : { level: 'error', detail: `cannot read its certificate: ${why(error)}` };
  }
  if (chain.length === 0) return { level: 'error', detail: 'its proxy answered no certificate' };
  const leaf = chain[0]!;
  const id = spiffeUriSan(leaf.subjectAltName) ?? '(none)';
  if (id !== expected) return { level: 'error', detail: `presents ${id}, not ${expected}` };
  if (!verifiesTo(chain, anchors))
    return { level: 'error', detail: 'its chain does not lead to a trust anchor' };
  for (const cert of chain) {
    const expiry = expiryCheck('certificate', cert, now, false);
    if (expiry.level !== 'ok')
      return {
        level: expiry.level,
        detail: `${cert === leaf ? 'its' : 'an issuer'} certificate ${expiry.detail}`,
      };
  }
  return null;
}

/** `--proxy`: every ready proxy's certificate (proxyCertificateProblem), as one check. */
async function proxyCertificates(
  kubeConfig: KubeConfig,
  ready: readonly Pod[],
  now: number,
  results: CheckResult[],
): Promise<void> {
  const group = 'data-plane';
  const check = "the proxies' certificates are valid";
  let anchors: X509Certificate[];
  let trustDomain: string;
  try {
    const installed = await readInstalled(kubeConfig);
    anchors = safeCertificates(installed.trustAnchorsPem);
    trustDomain = parseInjectorConfig('', '', installed.config[CONFIG_KEYS.injector] ?? '').trustDomain;
  } catch (error) {
    results.push(
      fail(
        group,
        check,
        `cannot read the installed identity: ${(error as Error).message}`,
        'run trellis check --kubernetes',
      ),
    );
    return;
  }
  const core = kubeConfig.makeApiClient(CoreV1Api);
  const checked = ready.slice(0, MAX_CERTIFICATE_CHECKS);
  const problems: { pod: Pod; level: 'error' | 'warn'; detail: string }[] = [];
  for (let i = 0; i < checked.length; i += CERTIFICATE_CONCURRENCY) {
    const batch = checked.slice(i, i + CERTIFICATE_CONCURRENCY);
    const verdicts = await Promise.all(
      batch.map((pod) => proxyCertificateProblem(core, pod, anchors, trustDomain, now)),
    );
    verdicts.forEach((v, k) => v !== null && problems.push({ pod: batch[k]!, ...v }));
  }
  const skipped = ready.length - checked.length;
  const extra = skipped > 0 ? ` (the first ${checked.length}; ${skipped} not read)` : '';
  if (problems.length === 0) {
    results.push(ok(group, check, `${checked.length} proxies${extra}`));
    return;
  }
  const podName = (p: Pod): string => `${p.metadata?.namespace}/${p.metadata?.name}`;
  const listed = problems.slice(0, 5).map((p) => `${podName(p.pod)}: ${p.detail}`);
  if (problems.length > 5) listed.push(`and ${problems.length - 5} more`);
  const first = problems[0]!.pod;
  results.push(
    fail(
      group,
      check,
      listed.join('; '),
      `kubectl -n ${first.metadata?.namespace} logs ${first.metadata?.name} -c ${PROXY_CONTAINER_NAME} (a proxy renews its certificate itself; restart its pod if it does not)`,
      problems.some((p) => p.level === 'error') ? 'error' : 'warn',
    ),
  );
}

/** `--proxy`: every injected pod's proxy is ready, of this version, with a valid certificate. */
async function dataPlane(kubeConfig: KubeConfig, results: CheckResult[], now: number): Promise<void> {
  const group = 'data-plane';
  let pods;
  try {
    pods = (await kubeConfig.makeApiClient(CoreV1Api).listPodForAllNamespaces()).items;
  } catch (error) {
    results.push(
      fail(group, 'can list the pods', why(error), 'check that you may list pods in every namespace'),
    );
    return;
  }
  const injected = pods.filter((p) => p.metadata?.annotations?.[PROXY_INJECTED_ANNOTATION] === 'true');
  const name = (p: (typeof pods)[number]): string => `${p.metadata?.namespace}/${p.metadata?.name}`;
  const some = (list: string[]): string =>
    list.slice(0, 5).join(', ') + (list.length > 5 ? ` and ${list.length - 5} more` : '');
  const statuses = (p: (typeof pods)[number]) => [
    ...(p.status?.initContainerStatuses ?? []),
    ...(p.status?.containerStatuses ?? []),
  ];
  const proxyReady = (p: (typeof pods)[number]): boolean =>
    statuses(p).some((c) => c.name === PROXY_CONTAINER_NAME && c.ready);
  const unready = injected.filter((p) => !proxyReady(p));
  if (unready.length === 0)
    results.push(ok(group, 'the proxies are ready', `${injected.length} injected pods`));
  else {
    const first = unready[0]!;
    results.push(
      fail(
        group,
        'the proxies are ready',
        `not ready: ${some(unready.map(name))}`,
        `kubectl -n ${first.metadata?.namespace} logs ${first.metadata?.name} -c ${PROXY_CONTAINER_NAME}`,
      ),
    );
  }
  await proxyCertificates(kubeConfig, injected.filter(proxyReady), now, results);
  const version = packageVersion();
  const image = (p: (typeof pods)[number]): string =>
    [...(p.spec?.initContainers ?? []), ...(p.spec?.containers ?? [])].find(
      (c) => c.name === PROXY_CONTAINER_NAME,
    )?.image ?? '';
  const old = injected.filter((p) => !image(p).endsWith(`:${version}`));
  if (old.length === 0) results.push(ok(group, 'the proxies are up to date', `all of version ${version}`));
  else
    results.push(
      fail(
        group,
        'the proxies are up to date',
        `older than ${version}: ${some(old.map((p) => `${name(p)} (${image(p)})`))}`,
        'after trellis upgrade, restart them: kubectl rollout restart deploy -n NAMESPACE',
        'warn',
      ),
    );
}

function safeCertificates(pem: string): X509Certificate[] {
  try {
    return pemCertificates(pem);
  } catch {
    return [];
  }
}

/** The checks of `--pre` (`pre`) or after install (`proxies`: with the data plane), at time `now`. */
export async function checkKubernetes(
  kubeConfig: KubeConfig,
  pre: boolean,
  now: number,
  proxies = false,
): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  const api = await apiGroup(kubeConfig, results);
  if (api === null) return results;
  if (pre) {
    versionGroup(api.minor, true, results, 'warn');
    await preSetup(kubeConfig)(results);
    await preCrds(kubeConfig, [...(await readCrds()).crds, ...(await readGatewayCrds()).crds])(results);
  } else {
    await postInstall(kubeConfig, api.minor, now, results);
    if (proxies) await dataPlane(kubeConfig, results, now);
  }
  return results;
}
