// End-to-end tests of `trellis install`, `trellis install --crds` and `trellis uninstall`: their
// output goes through the real kubectl (`create --dry-run=client`, mapped against the fake API
// server's discovery, test/fake-kube/discovery.ts), and what kubectl parsed is checked: the kinds
// in order, RBAC without wildcards, every container's securityContext and requests, --ha, the
// webhook (failurePolicy, namespace selector, a caBundle that verifies its serving certificate),
// the identity issuer signed by the trust anchor, the configuration, the operator's own identity
// files, and errors that name the flag or file. Then `trellis control --injector-listen` with the
// installed Secret and ConfigMap answers AdmissionReviews over HTTPS that the caBundle verifies.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import { FakeKubeServer } from '../fake-kube/server.ts';
import { request } from 'node:https';
import * as net from 'node:net';
import { INJECTOR_MAX_CONNECTIONS } from '../../src/control/injector/webhook-server.ts';
import { runCli } from '../helpers/cli.ts';
import { startInstalledInjector } from '../helpers/installed-injector.ts';
import { removeTempDir } from '../helpers/temp-dir.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** Runs kubectl against `server` with `input` on stdin. */
async function kubectl(server: string, args: string[], input: string) {
  const proc = spawn('kubectl', ['--server', server, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  proc.stdin.end(input);
  const timer = setTimeout(() => proc.kill('SIGKILL'), 30_000);
  const [code] = (await once(proc, 'exit')) as [number | null];
  clearTimeout(timer);
  return { code, stdout, stderr };
}

async function fakeKube(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const kube = new FakeKubeServer();
  await kube.start();
  t.after(() => kube.close());
  return kube.url;
}

/** `trellis ARGS` piped through `kubectl create --dry-run=client -o yaml`: the objects kubectl read. */
async function installThroughKubectl(server: string, args: string[]): Promise<Json[]> {
  const out = await runCli(args);
  assert.equal(out.code, 0, out.stderr);
  const parsed = await kubectl(
    server,
    ['create', '--dry-run=client', '--validate=false', '-o', 'yaml', '-f', '-'],
    out.stdout,
  );
  assert.equal(parsed.code, 0, parsed.stderr);
  const items = parseAllDocuments(parsed.stdout).map((doc) => {
    assert.deepEqual(doc.errors, []);
    return doc.toJS() as Json;
  });
  // kubectl read every document trellis printed.
  assert.equal(items.length, out.stdout.split(/^---$/m).length);
  return items;
}

const find = (objects: Json[], kind: string, name?: string): Json => {
  const found = objects.find(
    (o) => o['kind'] === kind && (name === undefined || o['metadata']['name'] === name),
  );
  assert.ok(found, `no ${kind} ${name ?? ''}`);
  return found;
};

test('trellis install: every document parses in kubectl, RBAC has no wildcard, every container is locked down', async (t) => {
  const server = await fakeKube(t);
  // prettier-ignore
  const objects = await installThroughKubectl(server, ['install', '--image', 'registry.test/trellis:1',
    '--trace-collector', 'http://collector.tracing:4318', '--trace-sample-ratio', '0.05']);
  assert.deepEqual(
    objects.map((o) => `${o['kind']}/${o['metadata']['name']}`),
    [
      'Namespace/trellis',
      'ServiceAccount/trellis-control',
      'ClusterRole/trellis-control',
      'ClusterRoleBinding/trellis-control',
      'Role/trellis-control',
      'RoleBinding/trellis-control',
      'ConfigMap/trellis-identity-trust-anchors',
      'Secret/trellis-identity-issuer',
      'Secret/trellis-injector-tls',
      'Secret/trellis-operator-token',
      'ConfigMap/trellis-config',
      'Deployment/trellis-control',
      'Service/trellis-control',
      'Service/trellis-injector',
      'MutatingWebhookConfiguration/trellis-proxy-injector',
    ],
  );
  const role = find(objects, 'ClusterRole');
  assert.ok(!JSON.stringify(role['rules']).includes('*'), 'no wildcard in the rules');
  assert.deepEqual(
    (role['rules'] as Json[]).map((r) => `${r['apiGroups']}:${r['resources']}:${r['verbs']}`),
    [
      ':services,pods:list,watch',
      ':namespaces:get',
      'discovery.k8s.io:endpointslices:list,watch',
      'policy.trellis.dev:servers,authorizationpolicies,httplocalratelimitpolicies:list,watch',
      'traffic.trellis.dev:httpfaults:list,watch',
      'gateway.networking.k8s.io:httproutes,grpcroutes:list,watch',
      'gateway.networking.k8s.io:httproutes/status,grpcroutes/status:patch',
      'gateway.networking.x-k8s.io:xbackendtrafficpolicies:list,watch',
      'gateway.networking.x-k8s.io:xbackendtrafficpolicies/status:patch',
      'authentication.k8s.io:tokenreviews:create',
    ],
  );
  // The status writer's Lease, in the control plane's namespace only.
  const namespaced = find(objects, 'Role');
  assert.equal(namespaced['metadata']['namespace'], 'trellis');
  assert.deepEqual(namespaced['rules'], [
    { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['get', 'create', 'update'] },
  ]);
  const binding = find(objects, 'RoleBinding');
  assert.deepEqual(binding['roleRef'], {
    apiGroup: 'rbac.authorization.k8s.io',
    kind: 'Role',
    name: 'trellis-control',
  });
  assert.deepEqual(binding['subjects'], [
    { kind: 'ServiceAccount', name: 'trellis-control', namespace: 'trellis' },
  ]);
  const deployment = find(objects, 'Deployment');
  const pod = deployment['spec']['template']['spec'];
  assert.equal(deployment['spec']['replicas'], 1);
  assert.equal(pod['serviceAccountName'], 'trellis-control');
  const containers = [...pod['initContainers'], ...pod['containers']] as Json[];
  assert.equal(containers.length, 2);
  for (const container of containers) {
    const sc = container['securityContext'];
    assert.equal(container['image'], 'registry.test/trellis:1');
    assert.equal(sc['runAsNonRoot'], true, container['name']);
    assert.ok(sc['runAsUser'] > 0);
    assert.equal(sc['readOnlyRootFilesystem'], true);
    assert.equal(sc['allowPrivilegeEscalation'], false);
    assert.deepEqual(sc['capabilities'], { drop: ['ALL'] });
    assert.ok(container['resources']['requests']['cpu'] && container['resources']['requests']['memory']);
  }
  const control = pod['containers'][0];
  assert.deepEqual(control['args'].slice(0, 2), ['control', '--in-cluster']);
  // The status Lease's holder identity and namespace, from the downward API.
  assert.deepEqual(control['env'], [
    { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
    { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
  ]);

  const webhook = find(objects, 'MutatingWebhookConfiguration')['webhooks'][0];
  assert.equal(webhook['failurePolicy'], 'Ignore');
  assert.deepEqual(webhook['admissionReviewVersions'], ['v1']);
  assert.deepEqual(webhook['namespaceSelector']['matchExpressions'], [
    { key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: ['kube-system', 'trellis'] },
  ]);
  assert.deepEqual(webhook['clientConfig']['service'], {
    name: 'trellis-injector',
    namespace: 'trellis',
    path: '/inject',
    port: 443,
  });
  const webhookCa = new X509Certificate(Buffer.from(webhook['clientConfig']['caBundle'], 'base64'));
  const serving = new X509Certificate(
    find(objects, 'Secret', 'trellis-injector-tls')['stringData']['tls.crt'],
  );
  assert.ok(serving.verify(webhookCa.publicKey), 'the caBundle signed the serving certificate');
  assert.equal(serving.checkHost('trellis-injector.trellis.svc'), 'trellis-injector.trellis.svc');

  const anchor = new X509Certificate(
    find(objects, 'ConfigMap', 'trellis-identity-trust-anchors')['data']['trust-anchors.pem'],
  );
  const issuer = new X509Certificate(
    find(objects, 'Secret', 'trellis-identity-issuer')['stringData']['issuer.pem'],
  );
  assert.ok(issuer.verify(anchor.publicKey) && issuer.ca && anchor.ca);
  const year = 365 * 24 * 3600_000;
  assert.ok(Math.abs(Date.parse(issuer.validTo) - Date.now() - year) < 3600_000, issuer.validTo);

  const config = parse(find(objects, 'ConfigMap', 'trellis-config')['data']['config.yaml']) as Json;
  assert.deepEqual(config, {
    proxyImage: 'registry.test/trellis:1',
    controlPlaneAddress: 'trellis-control.trellis.svc.cluster.local:8086',
    trustDomain: 'cluster.local',
    proxyLogLevel: 'warn',
    defaultInboundPolicy: 'all-unauthenticated',
    nativeSidecar: true,
    cni: false,
    controlPlaneNamespace: 'trellis',
    traceCollector: 'http://collector.tracing:4318',
    traceSampleRatio: '0.05',
  });
});

test('trellis install --ha: three replicas on different nodes and a PodDisruptionBudget', async (t) => {
  const server = await fakeKube(t);
  const objects = await installThroughKubectl(server, [
    'install',
    '--ha',
    '--default-inbound-policy=deny',
    '--cni',
  ]);
  const deployment = find(objects, 'Deployment');
  assert.equal(deployment['spec']['replicas'], 3);
  const anti = deployment['spec']['template']['spec']['affinity']['podAntiAffinity'];
  assert.equal(
    anti['requiredDuringSchedulingIgnoredDuringExecution'][0]['topologyKey'],
    'kubernetes.io/hostname',
  );
  const budget = find(objects, 'PodDisruptionBudget');
  assert.equal(budget['spec']['maxUnavailable'], 1);
  assert.deepEqual(budget['spec']['selector'], deployment['spec']['selector']);
  const config = parse(find(objects, 'ConfigMap', 'trellis-config')['data']['config.yaml']) as Json;
  assert.equal(config['defaultInboundPolicy'], 'deny');
  assert.equal(config['cni'], true);
});

test('trellis install --crds prints deploy/crds.yaml and the Gateway API CRDs (not with --skip-gateway-api); the API server takes them; uninstall lists what install made, webhook first', async (t) => {
  const kube = new FakeKubeServer();
  await kube.start();
  t.after(() => kube.close());
  const server = kube.url;
  const own = await readFile(new URL('../../deploy/crds.yaml', import.meta.url), 'utf8');
  const gateway = await readFile(new URL('../../deploy/gateway-api-crds.yaml', import.meta.url), 'utf8');
  const crds = await runCli(['install', '--crds']);
  assert.deepEqual([crds.code, crds.stderr], [0, '']);
  assert.equal(crds.stdout, `${own}---\n${gateway}`);
  const skipped = await runCli(['install', '--crds', '--skip-gateway-api']);
  assert.deepEqual([skipped.stdout, skipped.stderr], [own, '']);
  const parsed = await installThroughKubectl(server, ['install', '--crds']);
  assert.deepEqual(
    parsed.map((o) => o['metadata']['name']),
    [
      'servers.policy.trellis.dev',
      'authorizationpolicies.policy.trellis.dev',
      'httplocalratelimitpolicies.policy.trellis.dev',
      'httpfaults.traffic.trellis.dev',
      'httproutes.gateway.networking.k8s.io',
      'grpcroutes.gateway.networking.k8s.io',
      'xbackendtrafficpolicies.gateway.networking.x-k8s.io',
    ],
  );
  for (const crd of parsed.slice(4)) {
    const [version] = crd['spec']['versions'] as Json[];
    assert.deepEqual(
      [version!['name'], version!['served'], version!['storage']],
      [crd['spec']['group'] === 'gateway.networking.k8s.io' ? 'v1' : 'v1alpha1', true, true],
    );
    assert.deepEqual(version!['subresources'], { status: {} });
    assert.equal(crd['spec']['scope'], 'Namespaced');
  }
  assert.deepEqual(
    parsed.slice(4).map((o) => o['spec']['names']['kind']),
    ['HTTPRoute', 'GRPCRoute', 'XBackendTrafficPolicy'],
  );
  // The API server takes them (kubectl apply against the fake one).
  const applied = await kubectl(server, ['apply', '--validate=false', '-f', '-'], crds.stdout);
  assert.equal(applied.code, 0, applied.stderr);
  assert.match(
    applied.stdout,
    /customresourcedefinition.apiextensions.k8s.io\/grpcroutes.gateway.networking.k8s.io created/,
  );
  assert.equal(kube.list('CustomResourceDefinition').length, 7);

  const uninstall = await runCli(['uninstall']);
  assert.equal(uninstall.code, 0, uninstall.stderr);
  const deleted = await kubectl(
    server,
    ['delete', '--dry-run=client', '-o', 'name', '-f', '-'],
    uninstall.stdout,
  );
  assert.equal(deleted.code, 0, deleted.stderr);
  assert.deepEqual(deleted.stdout.trim().split('\n'), [
    'mutatingwebhookconfiguration.admissionregistration.k8s.io/trellis-proxy-injector',
    'clusterrolebinding.rbac.authorization.k8s.io/trellis-control',
    'clusterrole.rbac.authorization.k8s.io/trellis-control',
    'namespace/trellis',
    'customresourcedefinition.apiextensions.k8s.io/servers.policy.trellis.dev',
    'customresourcedefinition.apiextensions.k8s.io/authorizationpolicies.policy.trellis.dev',
    'customresourcedefinition.apiextensions.k8s.io/httplocalratelimitpolicies.policy.trellis.dev',
    'customresourcedefinition.apiextensions.k8s.io/httpfaults.traffic.trellis.dev',
  ]);
});

test('trellis install with the operator identity files uses them; bad or partial files are refused by flag', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'trellis-install-'));
  t.after(() => removeTempDir(dir));
  // The anchor and issuer of one install, given to another.
  const first = parseAll((await runCli(['install'])).stdout);
  const anchors = join(dir, 'anchors.pem');
  const cert = join(dir, 'issuer.pem');
  const key = join(dir, 'issuer.key.pem');
  const issuerSecret = find(first, 'Secret', 'trellis-identity-issuer')['stringData'];
  await writeFile(
    anchors,
    find(first, 'ConfigMap', 'trellis-identity-trust-anchors')['data']['trust-anchors.pem'],
  );
  await writeFile(cert, issuerSecret['issuer.pem']);
  await writeFile(key, issuerSecret['issuer.key.pem']);
  const files = [
    '--identity-trust-anchors-file',
    anchors,
    '--identity-issuer-certificate-file',
    cert,
    '--identity-issuer-key-file',
    key,
  ];
  const second = await runCli(['install', ...files]);
  assert.equal(second.code, 0, second.stderr);
  const objects = parseAll(second.stdout);
  assert.deepEqual(find(objects, 'Secret', 'trellis-identity-issuer')['stringData'], issuerSecret);

  const partial = await runCli(['install', ...files.slice(0, 4)]);
  assert.deepEqual([partial.code, partial.stdout], [2, '']);
  assert.match(partial.stderr, /--identity-issuer-key-file: required with/);
  await writeFile(join(dir, 'junk.pem'), 'not a certificate');
  const junk = await runCli(['install', ...files.slice(0, 1), join(dir, 'junk.pem'), ...files.slice(2)]);
  assert.equal(junk.code, 2);
  assert.match(junk.stderr, /--identity-trust-anchors-file: .*junk\.pem: no PEM certificate found/);
  // An issuer from another install is not signed by these anchors.
  const other = parseAll((await runCli(['install'])).stdout);
  await writeFile(
    join(dir, 'other.pem'),
    find(other, 'ConfigMap', 'trellis-identity-trust-anchors')['data']['trust-anchors.pem'],
  );
  const foreign = await runCli(['install', files[0]!, join(dir, 'other.pem'), ...files.slice(2)]);
  assert.equal(foreign.code, 2);
  assert.match(
    foreign.stderr,
    /--identity-issuer-certificate-file: .*issuer\.pem is not signed by any anchor/,
  );
  const missing = await runCli(['install', ...files.slice(0, 5), join(dir, 'absent.pem')]);
  assert.match(missing.stderr, /--identity-issuer-key-file: ENOENT/);
});

test('trellis install: a bad flag or value is an error naming it; --help lists every flag', async (t) => {
  for (const [args, pattern] of [
    [['--no-such-flag'], /--no-such-flag: unknown flag/],
    [['--default-inbound-policy', 'open'], /--default-inbound-policy: expected one of all-unauthenticated/],
    [['--log-level', 'loud'], /--log-level: expected one of/],
    [['--trust-domain', 'Not A Domain'], /--trust-domain: expected a DNS name/],
    [
      ['--trace-collector', 'collector:4318'],
      /--trace-collector: expected an http:\/\/, https:\/\/, grpc:\/\/ or grpcs:\/\/ URL with a host, got 'collector:4318'/,
    ],
    [
      ['--trace-collector', 'grpc:collector'],
      /--trace-collector: expected an http:\/\/, https:\/\/, grpc:\/\/ or grpcs:\/\/ URL with a host, got 'grpc:collector'/,
    ],
    [['--trace-sample-ratio', '1.5'], /--trace-sample-ratio: expected a number from 0 to 1/],
    [['--identity-issuer-lifetime', 'forever'], /--identity-issuer-lifetime: expected a duration/],
    [['extra'], /unexpected argument 'extra'/],
  ] as const) {
    const out = await runCli(['install', ...args]);
    assert.equal(out.code, 2, args.join(' '));
    assert.equal(out.stdout, '');
    assert.match(out.stderr, pattern);
  }
  const help = await runCli(['install', '--help']);
  const source = [
    await readFile(new URL('../../src/cli/install.ts', import.meta.url), 'utf8'),
    await readFile(new URL('../../src/cli/install-flags.ts', import.meta.url), 'utf8'),
  ].join('\n');
  const flags = [...source.matchAll(/name: '([a-z-]+)'/g)].map((m) => m[1]!);
  assert.ok(flags.length >= 14);
  for (const flag of flags) assert.ok(help.stdout.includes(`--${flag}`), flag);
  const control = await runCli(['control', '--in-cluster', '--kubeconfig-server', 'http://127.0.0.1:1']);
  assert.match(control.stderr, /--in-cluster: not with --kubeconfig-server/);
  const api = ['control', '--kubeconfig-server', 'http://127.0.0.1:1'];
  const stray = await runCli([...api, '--injector-tls-dir', '/tmp']);
  assert.match(stray.stderr, /--injector-tls-dir: only with --injector-listen/);
  const dir = await mkdtemp(join(tmpdir(), 'trellis-injector-config-'));
  t.after(() => removeTempDir(dir));
  await writeFile(join(dir, 'tls.crt'), '');
  await writeFile(join(dir, 'tls.key'), '');
  const config = join(dir, 'config.yaml');
  await writeFile(config, 'proxyImage: x\ncni: maybe\n');
  const injector = [
    '--injector-listen=127.0.0.1:0',
    `--injector-tls-dir=${dir}`,
    `--injector-config=${config}`,
  ];
  const bad = await runCli([...api, ...injector]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--injector-config: .*config\.yaml:\d+:\d+: (controlPlaneAddress|cni): /);
});

/** POSTs `body` to the injector at `address`, trusting only `caPem` for the Service's DNS name. */
function postReview(address: string, caPem: string, body: string): Promise<{ status: number; body: Json }> {
  const [host, port] = [
    address.slice(0, address.lastIndexOf(':')),
    Number(address.slice(address.lastIndexOf(':') + 1)),
  ];
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host,
        port,
        method: 'POST',
        path: '/inject',
        ca: caPem,
        servername: 'trellis-injector.trellis.svc',
        headers: { 'content-type': 'application/json' },
      },
      (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) as Json }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

test('trellis control --injector-listen serves the installed webhook over HTTPS: the caBundle verifies it, namespaces opt in', async (t) => {
  const kube = new FakeKubeServer();
  await kube.start();
  t.after(() => kube.close());
  kube.applyYaml(`
apiVersion: v1
kind: Namespace
metadata: { name: shop, annotations: { trellis.dev/inject: enabled } }
---
apiVersion: v1
kind: Namespace
metadata: { name: plain }
`);
  // The Secret and the ConfigMap of a real install, where the Deployment mounts them.
  const objects = parseAll((await runCli(['install', '--image', 'registry.test/trellis:2'])).stdout);
  const { address, caPem } = await startInstalledInjector(t, kube.url, objects);
  const ready = { injector: address };
  const pod = { metadata: { name: 'web-1' }, spec: { containers: [{ name: 'app', image: 'web:1' }] } };
  const reviewFor = (namespace: string) =>
    JSON.stringify({
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      request: {
        uid: `uid-${namespace}`,
        kind: { group: '', version: 'v1', kind: 'Pod' },
        namespace,
        operation: 'CREATE',
        object: pod,
      },
    });
  const injected = await postReview(ready['injector'], caPem, reviewFor('shop'));
  assert.equal(injected.status, 200);
  assert.equal(injected.body['response']['uid'], 'uid-shop');
  assert.equal(injected.body['response']['allowed'], true);
  const patch = JSON.parse(Buffer.from(injected.body['response']['patch'], 'base64').toString()) as Json[];
  const containers = patch.find((op) => op['path'] === '/spec/initContainers')!['value'] as Json[];
  assert.deepEqual(
    containers.map((c) => [c['name'], c['image']]),
    [
      ['trellis-init', 'registry.test/trellis:2'],
      ['trellis-proxy', 'registry.test/trellis:2'],
    ],
  );
  const plain = await postReview(ready['injector'], caPem, reviewFor('plain'));
  assert.deepEqual(plain.body['response'], { uid: 'uid-plain', allowed: true });
  const garbage = await postReview(ready['injector'], caPem, '{not json');
  assert.equal(garbage.status, 200);
  assert.equal(garbage.body['response']['allowed'], true);
  assert.match(garbage.body['response']['warnings'][0], /not a Pod review/);
  const unknown = await postReview(ready['injector'], caPem, reviewFor('gone'));
  assert.match(unknown.body['response']['warnings'][0], /cannot read namespace gone/);
  assert.equal(unknown.body['response']['patch'], undefined);

  // Any pod can reach the injector: connections past the limit are closed at once, and one that
  // never finishes its TLS handshake is closed at the deadline; then reviews are answered again.
  const at = ready['injector'] as string;
  const [host, port] = [at.slice(0, at.lastIndexOf(':')), Number(at.slice(at.lastIndexOf(':') + 1))];
  const open = (): Promise<net.Socket> =>
    new Promise((resolve, reject) => {
      const s = net.connect(port, host, () => resolve(s));
      s.once('error', reject);
    });
  const held: net.Socket[] = [];
  t.after(() => held.forEach((s) => s.destroy()));
  for (let i = 0; i < INJECTOR_MAX_CONNECTIONS; i++) held.push(await open());
  const closedAt = held.map((s) => once(s, 'close').then(() => Date.now()));
  const started = Date.now();
  const extra = await open();
  held.push(extra);
  await Promise.race([
    once(extra, 'close'),
    new Promise((_, reject) =>
      setTimeout(() => reject(new Error('the connection over the limit stayed open')), 3000),
    ),
  ]);
  const closed = await Promise.all(closedAt);
  const longest = Math.max(...closed) - started;
  assert.ok(longest < 12_000, `silent TLS connections closed after ${longest} ms (deadline 8 s)`);
  const again = await postReview(at, caPem, reviewFor('shop'));
  assert.equal(again.status, 200);
});

function parseAll(text: string): Json[] {
  return text.split(/^---$/m).map((doc) => parse(doc) as Json);
}
