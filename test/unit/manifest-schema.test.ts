// Every manifest Trellis prints or makes, checked against the Kubernetes schemas
// (test/helpers/kube-schema.ts): `trellis install` in each of its modes, `install --crds`, the
// workloads `trellis inject` rewrites (native and classic sidecar, with per-pod overrides), and the
// pod the admission webhook's patch makes. Every object must be of a kind the schemas cover, so a
// new kind cannot slip in unchecked.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseAllDocuments, stringify } from 'yaml';
import { review, INJECT_ANNOTATION } from '../../src/control/injector/admission.ts';
import { applyPatch } from '../../src/control/injector/patch.ts';
import { injectManifests } from '../../src/cli/inject.ts';
import type { InjectorConfig } from '../../src/control/injector/proxy-containers.ts';
import { TEST_INJECTOR_CONFIG } from '../helpers/injector-config.ts';
import { runCli } from '../helpers/cli.ts';
import { validateKubeObject, validateKubeObjects, type SchemaVerdict } from '../helpers/kube-schema.ts';

type Json = Record<string, unknown>;

function documents(text: string): Json[] {
  return parseAllDocuments(text)
    .map((doc) => {
      assert.deepEqual(doc.errors, []);
      return doc.toJS() as Json | null;
    })
    .filter((o): o is Json => o !== null);
}

/** Every verdict checked and without problems (the failure lists the ones that are not). */
function assertValid(verdicts: readonly SchemaVerdict[], what: string): void {
  assert.ok(verdicts.length > 0, `${what}: no objects`);
  const unchecked = verdicts.filter((v) => !v.checked).map((v) => v.object);
  assert.deepEqual(unchecked, [], `${what}: kinds no schema covers`);
  const bad = verdicts
    .filter((v) => v.problems.length > 0)
    .map((v) => `${v.object}: ${v.problems.join('; ')}`);
  assert.deepEqual(bad, [], `${what}: objects the schemas refuse`);
}

test('the schema check refuses what the API server would: a string port, a Deployment without its selector', async () => {
  const deployment = {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'web' },
    spec: {
      selector: { matchLabels: { app: 'web' } },
      template: {
        metadata: { labels: { app: 'web' } },
        spec: { containers: [{ name: 'app', image: 'web:1', ports: [{ containerPort: 8080 }] }] },
      },
    },
  };
  assertValid(await validateKubeObject(deployment), 'a valid Deployment');
  const stringPort = structuredClone(deployment) as Json & typeof deployment;
  (stringPort.spec.template.spec.containers[0]!.ports[0] as Json)['containerPort'] = '8080';
  const [portVerdict] = await validateKubeObject(stringPort);
  assert.match(portVerdict!.problems.join(), /containerPort must be integer/);
  const noSelector = structuredClone(deployment) as Json;
  delete (noSelector['spec'] as Json)['selector'];
  const [selectorVerdict] = await validateKubeObject(noSelector);
  assert.match(selectorVerdict!.problems.join(), /selector/);
  const [custom] = await validateKubeObject({ apiVersion: 'policy.trellis.dev/v1alpha1', kind: 'Server' });
  assert.equal(custom!.checked, false);
});

test('trellis install in each mode prints objects the Kubernetes schemas accept', async () => {
  for (const args of [[], ['--ha', '--no-native-sidecar', '--cni'], ['--crds']]) {
    const out = await runCli(['install', ...args]);
    assert.equal(out.code, 0, out.stderr);
    const objects = documents(out.stdout);
    assertValid(await validateKubeObjects(objects), `trellis install ${args.join(' ')}`);
    if (args.includes('--crds')) assert.ok(objects.every((o) => o['kind'] === 'CustomResourceDefinition'));
  }
});

const TEMPLATE = {
  metadata: {
    labels: { app: 'web' },
    annotations: {
      'config.trellis.dev/proxy-cpu-request': '50m',
      'config.trellis.dev/proxy-memory-limit': '128Mi',
      'config.trellis.dev/skip-outbound-ports': '5432',
      'config.trellis.dev/opaque-ports': '6379',
    },
  },
  spec: {
    containers: [{ name: 'app', image: 'web:1', ports: [{ name: 'http', containerPort: 8080 }] }],
  },
};

/** One of each workload kind `trellis inject` rewrites, each valid before injection. */
function workloads(): Json[] {
  const selector = { matchLabels: { app: 'web' } };
  const template = () => structuredClone(TEMPLATE);
  const jobTemplate = () => ({ ...template(), spec: { ...template().spec, restartPolicy: 'Never' } });
  const meta = (kind: string) => ({ name: kind.toLowerCase(), namespace: 'shop' });
  return [
    {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: meta('Deployment'),
      spec: { selector, template: template() },
    },
    {
      apiVersion: 'apps/v1',
      kind: 'StatefulSet',
      metadata: meta('StatefulSet'),
      spec: { selector, serviceName: 'web', template: template() },
    },
    {
      apiVersion: 'apps/v1',
      kind: 'DaemonSet',
      metadata: meta('DaemonSet'),
      spec: { selector, template: template() },
    },
    {
      apiVersion: 'apps/v1',
      kind: 'ReplicaSet',
      metadata: meta('ReplicaSet'),
      spec: { selector, template: template() },
    },
    { apiVersion: 'batch/v1', kind: 'Job', metadata: meta('Job'), spec: { template: jobTemplate() } },
    {
      apiVersion: 'batch/v1',
      kind: 'CronJob',
      metadata: meta('CronJob'),
      spec: { schedule: '*/5 * * * *', jobTemplate: { spec: { template: jobTemplate() } } },
    },
    { apiVersion: 'v1', kind: 'Pod', metadata: meta('Pod'), spec: template().spec },
  ];
}

test('trellis inject: every workload kind it rewrites is still valid, native and classic sidecar', async () => {
  const input = workloads();
  assertValid(await validateKubeObjects(input), 'the workloads before injection');
  const classic: InjectorConfig = { ...TEST_INJECTOR_CONFIG, nativeSidecar: false };
  for (const [name, config] of [
    ['native sidecar', TEST_INJECTOR_CONFIG],
    ['classic sidecar', classic],
  ] as const) {
    const report: string[] = [];
    const text = injectManifests(input.map((o) => stringify(o)).join('---\n'), 'w.yaml', config, (l) =>
      report.push(l),
    );
    assert.equal(report.filter((l) => / injected$/.test(l)).length, input.length, report.join('\n'));
    assertValid(await validateKubeObjects(documents(text)), `trellis inject (${name})`);
  }
});

test("the admission webhook's patch makes a pod the schemas accept", async () => {
  const pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'web-1', namespace: 'shop', ...TEMPLATE.metadata },
    spec: structuredClone(TEMPLATE.spec),
  };
  const answer = review(
    {
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      request: { uid: 'u', kind: { group: '', version: 'v1', kind: 'Pod' }, namespace: 'shop', object: pod },
    },
    { [INJECT_ANNOTATION]: 'enabled' },
    TEST_INJECTOR_CONFIG,
  );
  assert.equal(answer.response.patchType, 'JSONPatch');
  const operations = JSON.parse(Buffer.from(answer.response.patch!, 'base64').toString()) as unknown[];
  const patched = applyPatch(structuredClone(pod), operations as Parameters<typeof applyPatch>[1]) as Json;
  assert.ok(
    ((patched['spec'] as Json)['initContainers'] as Json[]).some((c) => c['name'] === 'trellis-proxy'),
  );
  assertValid(await validateKubeObject(patched), 'the patched pod');
});
