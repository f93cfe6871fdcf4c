// End-to-end tests of `trellis check --pre` and `trellis check --kubernetes`
// (src/cli/check-kubernetes.ts) against the fake API server (test/fake-kube), through the
// official client: a cluster that can take Trellis passes --pre, and one that cannot (no RBAC,
// an old version, a foreign CRD, an existing namespace) fails with a hint; an installed Trellis
// (what `trellis install` printed, stored in the fake server, plus a ready control-plane pod and
// injector endpoint) passes every group, and each thing broken afterwards fails its check with a
// hint and exit 1.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadCaKeyPair, makeAnchor, makeIssuer } from '../../src/control/identity/ca-certs.ts';
import { fakeCluster } from '../fake-kube/cluster.ts';
import type { FakeKubeServer, KubeObject } from '../fake-kube/server.ts';
import { freePort, runCli } from '../helpers/cli.ts';
import { createPrivateKey, webcrypto } from 'node:crypto';
import {
  certifiedKey,
  createCa,
  issueLeaf,
  testIdentity,
  type TestCa,
  type TestLeaf,
} from '../helpers/mesh-pki.ts';
import { EC_P256, x509 } from '../helpers/x509.ts';
import { validateProxyConfig } from '../../src/proxy/config.ts';
import { startProxy } from '../../src/proxy/proxy.ts';
import { silentLogger } from '../../src/core/log.ts';
import { portOf } from '../helpers/running-proxy.ts';

const SSAR = '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews';
const HOUR = 3600_000;

async function cluster(t: { after(fn: () => Promise<void>): void }) {
  const { kube, kubeconfig } = await fakeCluster(t);
  const check = async (args: string[]) => {
    const out = await runCli(['check', '--kubeconfig', kubeconfig, ...args]);
    return { ...out, lines: out.stdout.split('\n') };
  };
  return { kube, check };
}

/** The line of `check` and, when it failed, the hint under it. */
function line(lines: string[], check: string): { mark: string; text: string; hint: string | undefined } {
  const i = lines.findIndex((l) => l.slice(2).startsWith(check));
  assert.ok(i >= 0, `no line for ${check} in\n${lines.join('\n')}`);
  const hint = lines[i + 1]?.startsWith('    hint: ') ? lines[i + 1]!.slice(10) : undefined;
  return { mark: lines[i]![0]!, text: lines[i]!, hint };
}

test('trellis check --pre: a cluster that can take Trellis passes; no RBAC, an old version, a foreign CRD, an existing namespace fail with hints', async (t) => {
  const { kube, check } = await cluster(t);
  const denied = new Set<string>();
  kube.postHandlers.set(SSAR, (body) => {
    const attributes = (body as { spec: { resourceAttributes: { resource: string } } }).spec
      .resourceAttributes;
    const allowed = !denied.has(attributes.resource);
    return {
      status: 201,
      body: { ...(body as object), status: { allowed, ...(allowed ? {} : { reason: 'RBAC: no rule' }) } },
    };
  });
  // The upstream Gateway API CRD (v1 served beside v1beta1) is compatible.
  const gatewayCrd = (plural: string, versions: string[]) =>
    ({
      apiVersion: 'apiextensions.k8s.io/v1',
      kind: 'CustomResourceDefinition',
      metadata: {
        name: `${plural}.gateway.networking.k8s.io`,
        annotations: { 'gateway.networking.k8s.io/bundle-version': 'v1.2.0' },
      },
      spec: {
        group: 'gateway.networking.k8s.io',
        names: { plural, kind: 'X' },
        versions: versions.map((name, i) => ({ name, served: true, storage: i === 0 })),
      },
    }) as unknown as KubeObject;
  kube.apply(gatewayCrd('httproutes', ['v1', 'v1beta1']));
  const good = await check(['--pre']);
  assert.equal(good.code, 0, good.stdout + good.stderr);
  assert.match(
    line(good.lines, 'CRD httproutes.gateway.networking.k8s.io is absent or compatible').text,
    /^✔ .*present with v1 served .*--skip-gateway-api/,
  );
  assert.equal(
    line(good.lines, 'CRD grpcroutes.gateway.networking.k8s.io is absent or compatible').mark,
    '✔',
  );
  assert.ok(!good.stdout.includes('✖') && !good.stdout.includes('‼'), good.stdout);
  for (const group of [
    'kubernetes-api',
    'kubernetes-version',
    'pre-kubernetes-setup',
    'pre-kubernetes-crds',
  ]) {
    assert.ok(good.lines.includes(group), `no group ${group}`);
  }
  assert.equal(
    line(good.lines, 'can query the Kubernetes API').text,
    '✔ can query the Kubernetes API: version v1.32.0',
  );
  assert.equal(line(good.lines, 'can create clusterroles.rbac.authorization.k8s.io').mark, '✔');

  denied.add('clusterroles');
  kube.kubernetesVersion = '1.28.3';
  kube.apply({
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: 'servers.policy.trellis.dev' },
    spec: { group: 'policy.other.example', names: { plural: 'servers', kind: 'Server' } },
  } as KubeObject);
  kube.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'trellis' } });
  kube.apply(gatewayCrd('grpcroutes', ['v1alpha2']));
  const bad = await check(['--pre']);
  const oldGateway = line(bad.lines, 'CRD grpcroutes.gateway.networking.k8s.io is absent or compatible');
  assert.equal(oldGateway.mark, '✖');
  assert.match(oldGateway.text, /without version v1 served \(v1alpha2\)/);
  assert.match(oldGateway.hint!, /upgrade the Gateway API CRDs/);
  assert.equal(bad.code, 1);
  const rbac = line(bad.lines, 'can create clusterroles.rbac.authorization.k8s.io');
  assert.equal(rbac.mark, '✖');
  assert.match(rbac.text, /denied: RBAC: no rule/);
  assert.match(rbac.hint!, /cluster administrator/);
  const version = line(bad.lines, 'is running a Kubernetes with native sidecars');
  assert.equal(version.mark, '‼');
  assert.match(version.hint!, /--no-native-sidecar/);
  const crd = line(bad.lines, 'CRD servers.policy.trellis.dev is absent or compatible');
  assert.equal(crd.mark, '✖');
  assert.match(crd.text, /group policy\.other\.example/);
  assert.equal(line(bad.lines, 'the control plane namespace does not exist yet').mark, '✖');
});

test('trellis check --kubernetes: an installed Trellis passes every group; what breaks later fails its check with a hint', async (t) => {
  const { kube, check } = await cluster(t);
  const crds = await runCli(['install', '--crds']);
  kube.applyYaml(crds.stdout);
  const installed = await runCli(['install']);
  assert.equal(installed.code, 0, installed.stderr);
  kube.applyYaml(installed.stdout);
  const before = await check(['--kubernetes']);
  assert.equal(before.code, 1);
  assert.equal(line(before.lines, 'control plane pods are ready').mark, '✖');
  assert.match(
    line(before.lines, 'the injector is reachable').hint!,
    /kubectl -n trellis get pods,endpointslices/,
  );

  // The control plane comes up: a ready pod, and the injector's endpoint.
  kube.apply({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: 'trellis-control-1',
      namespace: 'trellis',
      labels: { 'app.kubernetes.io/name': 'trellis-control' },
    },
    spec: { containers: [{ name: 'control', image: 'x' }] },
    status: { phase: 'Running', conditions: [{ type: 'Ready', status: 'True' }] },
  } as KubeObject);
  kube.apply({
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      name: 'trellis-injector-1',
      namespace: 'trellis',
      labels: { 'kubernetes.io/service-name': 'trellis-injector' },
    },
    addressType: 'IPv4',
    endpoints: [{ addresses: ['198.18.0.10'], conditions: { ready: true } }],
    ports: [{ name: 'webhook', port: 8443 }],
  } as KubeObject);
  const good = await check(['--kubernetes']);
  assert.equal(good.code, 0, good.stdout);
  assert.ok(!good.stdout.includes('✖') && !good.stdout.includes('‼'), good.stdout);
  for (const group of [
    'kubernetes-api',
    'kubernetes-version',
    'trellis-existence',
    'trellis-config',
    'trellis-identity',
    'trellis-webhook',
    'control-plane-version',
  ]) {
    assert.ok(good.lines.includes(group), `no group ${group}`);
  }
  assert.match(
    line(good.lines, 'the control plane ClusterRole grants what it calls').text,
    /rules, no wildcard/,
  );
  assert.match(line(good.lines, 'the control plane Role grants the status-writer Lease').text, /1 rule/);
  assert.match(
    line(good.lines, "the webhook's caBundle verifies the injector's certificate").text,
    /trellis-injector\.trellis\.svc/,
  );
  const json = await check(['--kubernetes', '-o', 'json']);
  const results = JSON.parse(json.stdout) as { group: string; level: string }[];
  assert.ok(results.every((r) => r.level === 'ok' && typeof r.group === 'string'));

  // Now break things, one per group.
  kube.kubernetesVersion = '1.28.0';
  kube.delete('ClusterRole', undefined, 'trellis-control');
  // A Role of an older install: no Lease for the status writer.
  const role = kube.get('Role', 'trellis', 'trellis-control')!;
  kube.apply({ ...role, rules: [] } as KubeObject);
  // Without the experimental XBackendTrafficPolicy only retry budgets by policy are missing: a warning.
  kube.delete('CustomResourceDefinition', undefined, 'xbackendtrafficpolicies.gateway.networking.x-k8s.io');
  const now = Date.now();
  const anchor = loadCaKeyPair(await makeAnchor('cluster.local', 10 * 8760 * HOUR, now - 2 * HOUR), 'a');
  const expired = await makeIssuer(anchor, 'cluster.local', 60_000, now - HOUR);
  const issuer = kube.get('Secret', 'trellis', 'trellis-identity-issuer')!;
  kube.apply({
    ...issuer,
    data: {
      'issuer.pem': Buffer.from(expired.certPem).toString('base64'),
      'issuer.key.pem': Buffer.from(expired.keyPem).toString('base64'),
    },
  } as KubeObject);
  // The webhook of another install: its caBundle does not verify this injector's certificate.
  const other = await runCli(['install']);
  const otherWebhook = other.stdout
    .split(/^---$/m)
    .find((d) => d.includes('kind: MutatingWebhookConfiguration'))!;
  kube.applyYaml(otherWebhook);
  const deployment = kube.get('Deployment', 'trellis', 'trellis-control')!;
  const spec = structuredClone(deployment['spec']) as {
    template: { spec: { containers: { image: string }[] } };
  };
  spec.template.spec.containers[0]!.image = 'localhost/trellis:0.0.1';
  kube.apply({ ...deployment, spec } as KubeObject);

  const broken = await check(['--kubernetes']);
  assert.equal(broken.code, 1);
  const expect = (check: string, mark: string, hint: RegExp) => {
    const found = line(broken.lines, check);
    assert.equal(found.mark, mark, found.text);
    assert.match(found.hint ?? '', hint, found.text);
  };
  expect('is running a Kubernetes with native sidecars', '✖', /--no-native-sidecar/);
  expect('ClusterRole trellis-control exists', '✖', /trellis install \| kubectl apply -f -/);
  expect(
    'the control plane Role grants the status-writer Lease',
    '✖',
    /trellis upgrade \| kubectl apply -f -/,
  );
  expect(
    'the issuer is a CA signed by a trust anchor, with its key',
    '✖',
    /trellis upgrade --identity-issuer-certificate-file/,
  );
  expect("the webhook's caBundle verifies the injector's certificate", '✖', /trellis upgrade/);
  expect('the control plane is up to date', '‼', /trellis upgrade --image REGISTRY\/trellis:0\.1\.0/);
  expect('CRD xbackendtrafficpolicies.gateway.networking.x-k8s.io exists', '‼', /upstream Gateway API CRDs/);
});

test('trellis check --kubernetes: no API server is one failed check with a hint, and nothing more', async (t) => {
  const { kube, check } = await cluster(t);
  await kube.close();
  const out = await check(['--kubernetes']);
  assert.equal(out.code, 1);
  assert.deepEqual(out.lines.slice(0, 2), ['kubernetes-api', '--------------']);
  assert.equal(line(out.lines, 'can query the Kubernetes API').mark, '✖');
  assert.match(line(out.lines, 'can query the Kubernetes API').hint!, /--kubeconfig, --context/);
  assert.equal(out.lines.filter((l) => /^[✔‼✖]/.test(l)).length, 2);
});

test('trellis check --kubernetes --proxy: injected pods whose proxy is not ready fail, older proxies warn, with hints', async (t) => {
  const { kube, check } = await cluster(t);
  const pod = (name: string, image: string, ready: boolean, injected = true): KubeObject =>
    ({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name,
        namespace: 'shop',
        annotations: injected ? { 'trellis.dev/proxy-injected': 'true' } : {},
      },
      spec: {
        initContainers: injected ? [{ name: 'trellis-proxy', image, restartPolicy: 'Always' }] : [],
        containers: [{ name: 'app', image: 'web:1' }],
      },
      status: {
        initContainerStatuses: injected
          ? [{ name: 'trellis-proxy', ready, image, imageID: '', restartCount: 0 }]
          : [],
      },
    }) as unknown as KubeObject;
  kube.apply(pod('web-1', 'localhost/trellis:0.1.0', true));
  kube.apply(pod('web-2', 'localhost/trellis:0.0.9', false));
  kube.apply(pod('plain', 'x', false, false));
  const out = await check(['--kubernetes', '--proxy']);
  assert.ok(out.lines.includes('data-plane'));
  const ready = line(out.lines, 'the proxies are ready');
  assert.equal(ready.mark, '✖');
  assert.match(ready.text, /not ready: shop\/web-2$/);
  assert.equal(ready.hint, 'kubectl -n shop logs web-2 -c trellis-proxy');
  const current = line(out.lines, 'the proxies are up to date');
  assert.equal(current.mark, '‼');
  assert.match(current.text, /older than 0\.1\.0: shop\/web-2 \(localhost\/trellis:0\.0\.9\)/);
  assert.match(current.hint!, /kubectl rollout restart/);

  kube.delete('Pod', 'shop', 'web-2');
  const fixed = await check(['--kubernetes', '--proxy']);
  assert.equal(line(fixed.lines, 'the proxies are ready').text, '✔ the proxies are ready: 1 injected pods');
  assert.equal(line(fixed.lines, 'the proxies are up to date').mark, '✔');
  // Without --proxy there is no data-plane group.
  assert.ok(!(await check(['--kubernetes'])).lines.includes('data-plane'));
});

/** The installed issuer (Secret trellis-identity-issuer) as a CA the test signs proxy leaves with. */
async function installedIssuer(kube: FakeKubeServer): Promise<{ ca: TestCa; pem: string }> {
  const secret = kube.get('Secret', 'trellis', 'trellis-identity-issuer') as unknown as {
    data: Record<string, string>;
  };
  const pem = Buffer.from(secret.data['issuer.pem']!, 'base64').toString();
  const keyPem = Buffer.from(secret.data['issuer.key.pem']!, 'base64').toString();
  const cert = new x509.X509Certificate(pem);
  const privateKey = await webcrypto.subtle.importKey(
    'pkcs8',
    createPrivateKey(keyPem).export({ type: 'pkcs8', format: 'der' }),
    EC_P256,
    false,
    ['sign'],
  );
  const publicKey = await cert.publicKey.export(EC_P256, ['verify']);
  return { ca: { certPem: pem, cert, keys: { privateKey, publicKey } }, pem };
}

test("trellis check --kubernetes --proxy: each ready proxy's certificate, read through the API server, leads to the installed anchor and names its service account", async (t) => {
  const { kube, check } = await cluster(t);
  const installed = await runCli(['install']);
  assert.equal(installed.code, 0, installed.stderr);
  kube.applyYaml(installed.stdout);
  const anchorsPem = (
    kube.get('ConfigMap', 'trellis', 'trellis-identity-trust-anchors') as unknown as {
      data: Record<string, string>;
    }
  ).data['trust-anchors.pem']!;
  const issuer = await installedIssuer(kube);
  const id = (sa: string) => `spiffe://cluster.local/ns/shop/sa/${sa}`;
  // A proxy presenting `leaf` (with the installed issuer after it, as the identity service sends).
  const proxyWith = async (leaf: TestLeaf, chainTail: string) => {
    const config = validateProxyConfig({
      inboundListen: '127.0.0.1:0',
      outboundListen: '127.0.0.1:0',
      adminListen: '127.0.0.1:0',
      workload: { name: 'web', namespace: 'shop' },
      log: { level: 'off' },
    });
    const identity = testIdentity(leaf.id, {
      ...certifiedKey(leaf, anchorsPem),
      chainPem: leaf.certPem + chainTail,
    });
    const p = await startProxy(config, silentLogger, undefined, { identity });
    t.after(() => p.shutdown(100));
    return portOf(p, 'admin');
  };
  const good = await proxyWith(await issueLeaf(issuer.ca, id('web')), issuer.pem);
  const otherAccount = await proxyWith(await issueLeaf(issuer.ca, id('billing')), issuer.pem);
  const foreignCa = await createCa('Not The Installed Anchor');
  const foreign = await proxyWith(await issueLeaf(foreignCa, id('web')), foreignCa.certPem);
  const pod = (name: string, adminPort: number): KubeObject =>
    ({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, namespace: 'shop', annotations: { 'trellis.dev/proxy-injected': 'true' } },
      spec: {
        serviceAccountName: 'web',
        initContainers: [
          {
            name: 'trellis-proxy',
            image: 'localhost/trellis:0.1.0',
            restartPolicy: 'Always',
            ports: [{ name: 'trellis-admin', containerPort: adminPort }],
          },
        ],
        containers: [{ name: 'app', image: 'web:1' }],
      },
      status: {
        podIP: '127.0.0.1',
        initContainerStatuses: [
          {
            name: 'trellis-proxy',
            ready: true,
            image: 'localhost/trellis:0.1.0',
            imageID: '',
            restartCount: 0,
          },
        ],
      },
    }) as unknown as KubeObject;
  kube.apply(pod('web-good', good));
  const passing = await check(['--kubernetes', '--proxy']);
  assert.equal(
    line(passing.lines, "the proxies' certificates are valid").text,
    "✔ the proxies' certificates are valid: 1 proxies",
  );

  kube.apply(pod('web-other-account', otherAccount));
  kube.apply(pod('web-foreign', foreign));
  const closed = await freePort();
  kube.apply(pod('web-unreachable', closed));
  const out = await check(['--kubernetes', '--proxy']);
  assert.equal(out.code, 1);
  const certs = line(out.lines, "the proxies' certificates are valid");
  assert.equal(certs.mark, '✖');
  assert.match(certs.text, /shop\/web-foreign: its chain does not lead to a trust anchor/);
  assert.match(certs.text, new RegExp(`shop/web-other-account: presents ${id('billing')}, not ${id('web')}`));
  assert.match(certs.text, /shop\/web-unreachable: cannot read its certificate: .*503/);
  assert.doesNotMatch(certs.text, /web-good/);
  assert.match(certs.hint!, /kubectl -n shop logs web-/);
});
