// End-to-end tests of `trellis upgrade` (src/cli/upgrade.ts): what `trellis install` printed is
// stored in the fake API server (test/fake-kube, which turns a Secret's stringData into data as
// the real one does), and `trellis upgrade --kubeconfig FILE` reads it back through the official
// client over HTTP. It must keep the trust anchors, the issuer and the configuration, change only
// what a flag names, take a new issuer only when a kept anchor signed it, refuse an expired issuer
// with the way out, and fail clearly when trellis is not installed or the API server is not there.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import { loadCaKeyPair, makeAnchor, makeIssuer } from '../../src/control/identity/ca-certs.ts';
import { fakeCluster } from '../fake-kube/cluster.ts';
import type { FakeKubeServer, KubeObject } from '../fake-kube/server.ts';
import { runCli } from '../helpers/cli.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const HOUR = 3600_000;

interface Cluster {
  readonly kube: FakeKubeServer;
  readonly dir: string;
  /** `--kubeconfig FILE` for the fake API server. */
  readonly kubeconfig: string[];
}

async function cluster(t: { after(fn: () => Promise<void>): void }): Promise<Cluster> {
  const { kube, dir, kubeconfig } = await fakeCluster(t);
  return { kube, dir, kubeconfig: ['--kubeconfig', kubeconfig] };
}

const parseAll = (text: string): Json[] => parseAllDocuments(text).map((d) => d.toJS() as Json);

const find = (objects: Json[], kind: string, name: string): Json => {
  const found = objects.find((o) => o['kind'] === kind && o['metadata']['name'] === name);
  assert.ok(found, `no ${kind} ${name}`);
  return found;
};

/** `trellis install ARGS`, stored in the fake API server as `kubectl apply` would. */
async function install(c: Cluster, args: string[] = []): Promise<Json[]> {
  const out = await runCli(['install', ...args]);
  assert.equal(out.code, 0, out.stderr);
  c.kube.applyYaml(out.stdout);
  return parseAll(out.stdout);
}

/** What upgrade must keep of an install's output. */
function kept(objects: Json[]) {
  const config = find(objects, 'ConfigMap', 'trellis-config')['data'];
  return {
    anchors: find(objects, 'ConfigMap', 'trellis-identity-trust-anchors')['data'],
    issuer: find(objects, 'Secret', 'trellis-identity-issuer')['stringData'],
    operatorToken: find(objects, 'Secret', 'trellis-operator-token')['stringData'],
    injector: parse(config['config.yaml']),
    controlPlane: parse(config['control-plane.yaml']),
  };
}

test('trellis upgrade keeps the trust anchors, the issuer and the configuration; a flag changes only its setting', async (t) => {
  const c = await cluster(t);
  const installed = await install(c, [
    '--ha',
    '--image',
    'registry.example/trellis:0.0.9',
    '--proxy-log-level',
    'debug',
    '--default-inbound-policy',
    'all-authenticated',
    '--cni',
    '--log-level',
    'debug',
  ]);
  // What the fake API server stored is what the real one would: the issuer's key as base64 data.
  const secret = c.kube.get('Secret', 'trellis', 'trellis-identity-issuer')!;
  assert.equal(secret['stringData'], undefined);
  assert.ok((secret['data'] as Json)['issuer.key.pem']);

  const out = await runCli(['upgrade', ...c.kubeconfig]);
  assert.equal(out.code, 0, out.stderr);
  const upgraded = parseAll(out.stdout);
  assert.deepEqual(kept(upgraded), kept(installed));
  assert.match(
    out.stderr,
    /^trellis upgrade: kept from the cluster: the trust anchors \(ConfigMap trellis\/trellis-identity-trust-anchors\) and the issuer \(Secret trellis\/trellis-identity-issuer\), the operator token, and the configuration \(ConfigMap trellis\/trellis-config: image registry\.example\/trellis:0\.0\.9\); new: the injector's serving certificate\n$/,
  );
  // Everything install prints, with HA kept: 3 replicas and the PodDisruptionBudget.
  assert.deepEqual(
    upgraded.map((o) => `${o['kind']}/${o['metadata']['name']}`),
    installed.map((o) => `${o['kind']}/${o['metadata']['name']}`),
  );
  assert.equal(find(upgraded, 'Deployment', 'trellis-control')['spec']['replicas'], 3);
  // The operator token (for changes, taps and traces over the HTTP API) is a mounted Secret.
  const control = find(upgraded, 'Deployment', 'trellis-control')['spec']['template']['spec'];
  assert.ok(
    (control['containers'][0]['args'] as string[]).includes(
      '--operator-token-file=/var/run/trellis/operator/token',
    ),
  );
  assert.deepEqual(
    (control['volumes'] as Json[]).find((v) => v['name'] === 'operator-token'),
    { name: 'operator-token', secret: { secretName: 'trellis-operator-token' } },
  );
  assert.match(kept(installed).operatorToken['token'], /^[A-Za-z0-9_-]{43}$/);
  // An install from before the operator token gets a new one.
  c.kube.delete('Secret', 'trellis', 'trellis-operator-token');
  const older = await runCli(['upgrade', ...c.kubeconfig]);
  assert.equal(older.code, 0, older.stderr);
  assert.match(older.stderr, /the operator token \(none: a new one\)/);
  assert.notEqual(
    kept(parseAll(older.stdout)).operatorToken['token'],
    kept(installed).operatorToken['token'],
  );
  c.kube.applyYaml(out.stdout);
  // The webhook gets a new certificate, and its caBundle with it.
  const tls = (objects: Json[]) => find(objects, 'Secret', 'trellis-injector-tls')['stringData']['tls.crt'];
  assert.notEqual(tls(upgraded), tls(installed));

  const changed = await runCli([
    'upgrade',
    ...c.kubeconfig,
    '--proxy-log-level',
    'info',
    '--ha=false',
    '--cni=false',
    '--image',
    'registry.example/trellis:0.1.0',
  ]);
  assert.equal(changed.code, 0, changed.stderr);
  const after = kept(parseAll(changed.stdout));
  const before = kept(installed);
  assert.deepEqual(after.anchors, before.anchors);
  assert.deepEqual(after.issuer, before.issuer);
  assert.deepEqual(after.injector, {
    ...before.injector,
    proxyLogLevel: 'info',
    cni: false,
    proxyImage: 'registry.example/trellis:0.1.0',
  });
  assert.deepEqual(after.controlPlane, { ha: false, logLevel: 'debug' });
  assert.match(changed.stderr, /but for --proxy-log-level, --ha, --cni, --image;/);

  const crds = await runCli(['upgrade', '--crds', '--skip-gateway-api']);
  assert.equal(crds.code, 0);
  assert.ok(parseAll(crds.stdout).every((o) => o['kind'] === 'CustomResourceDefinition'));

  const domain = await runCli(['upgrade', ...c.kubeconfig, '--trust-domain', 'other.example']);
  assert.equal(domain.code, 2);
  assert.match(domain.stderr, /--trust-domain: the kept trust anchor and issuer are for cluster\.local/);
});

test('trellis upgrade takes a new issuer only when a kept anchor signed it, and refuses an expired issuer with the way out', async (t) => {
  const c = await cluster(t);
  const now = Date.now();
  const anchorPem = await makeAnchor('cluster.local', 10 * 8760 * HOUR, now - 2 * HOUR);
  const anchor = loadCaKeyPair(anchorPem, 'test anchor');
  const write = async (name: string, text: string) => {
    await writeFile(join(c.dir, name), text);
    return join(c.dir, name);
  };
  const issuer = await makeIssuer(anchor, 'cluster.local', 8760 * HOUR, now);
  const files = [
    '--identity-trust-anchors-file',
    await write('anchors.pem', anchorPem.certPem),
    '--identity-issuer-certificate-file',
    await write('issuer.pem', issuer.certPem),
    '--identity-issuer-key-file',
    await write('issuer.key.pem', issuer.keyPem),
  ];
  const installed = await install(c, files);

  const next = await makeIssuer(anchor, 'cluster.local', 8760 * HOUR, now);
  const nextFiles = [
    '--identity-issuer-certificate-file',
    await write('next.pem', next.certPem),
    '--identity-issuer-key-file',
    await write('next.key.pem', next.keyPem),
  ];
  const rotated = await runCli(['upgrade', ...c.kubeconfig, ...nextFiles]);
  assert.equal(rotated.code, 0, rotated.stderr);
  const objects = parseAll(rotated.stdout);
  assert.deepEqual(
    find(objects, 'ConfigMap', 'trellis-identity-trust-anchors')['data'],
    find(installed, 'ConfigMap', 'trellis-identity-trust-anchors')['data'],
  );
  assert.deepEqual(find(objects, 'Secret', 'trellis-identity-issuer')['stringData'], {
    'issuer.pem': next.certPem,
    'issuer.key.pem': next.keyPem,
  });
  assert.match(rotated.stderr, /kept from the cluster: the trust anchors \(.*; the issuer from the files\)/);

  const half = await runCli(['upgrade', ...c.kubeconfig, ...nextFiles.slice(0, 2)]);
  assert.deepEqual([half.code, half.stdout], [2, '']);
  assert.match(half.stderr, /--identity-issuer-key-file: required with --identity-issuer-certificate-file/);

  const stranger = loadCaKeyPair(await makeAnchor('cluster.local', 8760 * HOUR, now), 'other anchor');
  const foreign = await makeIssuer(stranger, 'cluster.local', 8760 * HOUR, now);
  const refused = await runCli([
    'upgrade',
    ...c.kubeconfig,
    '--identity-issuer-certificate-file',
    await write('foreign.pem', foreign.certPem),
    '--identity-issuer-key-file',
    await write('foreign.key.pem', foreign.keyPem),
  ]);
  assert.deepEqual([refused.code, refused.stdout], [2, '']);
  assert.match(
    refused.stderr,
    /--identity-issuer-certificate-file: .*foreign\.pem is not signed by any anchor of ConfigMap trellis\/trellis-identity-trust-anchors/,
  );

  // The issuer in the cluster has expired: upgrade says so and how to give a new one.
  const expired = await makeIssuer(anchor, 'cluster.local', 60_000, now - HOUR);
  const secret = c.kube.get('Secret', 'trellis', 'trellis-identity-issuer')!;
  c.kube.apply({
    ...secret,
    data: {
      'issuer.pem': Buffer.from(expired.certPem).toString('base64'),
      'issuer.key.pem': Buffer.from(expired.keyPem).toString('base64'),
    },
  } as KubeObject);
  const stale = await runCli(['upgrade', ...c.kubeconfig]);
  assert.deepEqual([stale.code, stale.stdout], [2, '']);
  assert.match(
    stale.stderr,
    /Secret trellis\/trellis-identity-issuer expired at .*; give a new issuer signed by the trust anchor with --identity-issuer-certificate-file and --identity-issuer-key-file/,
  );
  // ... which works.
  assert.equal((await runCli(['upgrade', ...c.kubeconfig, ...nextFiles])).code, 0);
});

test('trellis upgrade: not installed, or no API server, is an error saying which', async (t) => {
  const c = await cluster(t);
  const empty = await runCli(['upgrade', ...c.kubeconfig]);
  assert.deepEqual([empty.code, empty.stdout], [1, '']);
  assert.match(
    empty.stderr,
    /^trellis: trellis is not installed in this cluster \(trellis install \| kubectl apply -f -\): 404 configmaps "trellis-identity-trust-anchors" not found\n$/,
  );
  await c.kube.close();
  const gone = await runCli(['upgrade', ...c.kubeconfig]);
  assert.equal(gone.code, 1);
  assert.match(
    gone.stderr,
    /^trellis: cannot read ConfigMap trellis\/trellis-identity-trust-anchors: .*(ECONNREFUSED|fetch failed)/,
  );
  const noFile = await runCli(['upgrade', '--kubeconfig', join(c.dir, 'absent')]);
  assert.equal(noFile.code, 2);
  assert.match(noFile.stderr, /--kubeconfig: /);
  const noContext = await runCli(['upgrade', ...c.kubeconfig, '--context', 'prod']);
  assert.match(noContext.stderr, /--context: no context 'prod' in the kubeconfig/);
});
