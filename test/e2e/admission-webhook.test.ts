// End to end: a Pod created through the (fake) API server with the official client is injected by
// the webhook `trellis install` configures. The fake server (test/fake-kube/admission.ts) does what
// kube-apiserver does: for a namespace the MutatingWebhookConfiguration's selector takes, it POSTs a
// real AdmissionReview over HTTPS to `trellis control --injector-listen`, verifying it with the
// caBundle, and applies the JSONPatch before storing the pod. The control plane's own namespace is
// never sent; with the injector down, failurePolicy Ignore lets the pod in unchanged.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CoreV1Api } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { kubeConfigForServer } from '../../src/control/discovery/kubernetes.ts';
import { FakeKubeServer } from '../fake-kube/server.ts';
import { runCli } from '../helpers/cli.ts';
import { startInstalledInjector } from '../helpers/installed-injector.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

test('a Pod created through the API server is injected by the installed webhook over HTTPS; trellis and a down injector are left alone', async (t) => {
  const kube = new FakeKubeServer();
  await kube.start();
  t.after(() => kube.close());
  const install = await runCli(['install', '--image', 'registry.test/trellis:3']);
  assert.equal(install.code, 0, install.stderr);
  kube.applyYaml(install.stdout);
  kube.applyYaml(`
apiVersion: v1
kind: Namespace
metadata: { name: shop, annotations: { trellis.dev/inject: enabled } }
---
apiVersion: v1
kind: Namespace
metadata: { name: plain }
`);
  const objects = parseAllDocuments(install.stdout).map((d) => d.toJS() as Json);
  const { address, dir } = await startInstalledInjector(t, kube.url, objects);
  let injector: string | undefined = address;
  const sent: string[] = [];
  kube.serviceAddress = (namespace, name, port) => {
    sent.push(`${namespace}/${name}:${port}`);
    return injector;
  };

  const core = kubeConfigForServer(kube.url).makeApiClient(CoreV1Api);
  const create = (namespace: string, name: string) =>
    core.createNamespacedPod({
      namespace,
      body: {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name, labels: { app: name } },
        spec: { serviceAccountName: 'web', containers: [{ name: 'app', image: 'web:1' }] },
      },
    });
  const shop = await create('shop', 'web-1');
  assert.deepEqual(
    shop.spec!.initContainers!.map((c) => [c.name, c.image, c.restartPolicy]),
    [
      ['trellis-init', 'registry.test/trellis:3', undefined],
      ['trellis-proxy', 'registry.test/trellis:3', 'Always'],
    ],
  );
  assert.equal(shop.metadata!.annotations!['trellis.dev/proxy-injected'], 'true');
  assert.deepEqual(
    shop.spec!.containers.map((c) => c.name),
    ['app'],
  );
  // What the API server stored is the injected pod, the same `trellis inject` makes of it.
  const stored = kube.get('Pod', 'shop', 'web-1')!;
  assert.equal((stored['spec'] as Json)['initContainers'].length, 2);
  await writeFile(
    join(dir, 'pod.yaml'),
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'web-1', namespace: 'shop', labels: { app: 'web-1' } },
      spec: { serviceAccountName: 'web', containers: [{ name: 'app', image: 'web:1' }] },
    }),
  );
  const cli = await runCli(['inject', '-f', join(dir, 'pod.yaml'), '--config', join(dir, 'config.yaml')]);
  assert.equal(cli.code, 0, cli.stderr);
  const injected = parseAllDocuments(cli.stdout)[0]!.toJS() as Json;
  assert.deepEqual(injected['spec'], stored['spec']);
  assert.deepEqual(injected['metadata']['annotations'], stored.metadata.annotations);
  assert.deepEqual(sent, ['trellis/trellis-injector:443']);

  const plain = await create('plain', 'web-2');
  assert.equal(plain.spec!.initContainers, undefined);
  // The control plane's namespace is outside the selector: the injector is not even asked.
  const before = kube.admissionCalls.length;
  await create('trellis', 'debug');
  assert.equal(kube.admissionCalls.length, before);
  assert.deepEqual(
    kube.admissionCalls.map((c) => c.outcome),
    ['patched', 'unchanged'],
  );

  // The injector goes away: failurePolicy Ignore lets pods in unchanged.
  injector = undefined;
  const down = await create('shop', 'web-3');
  assert.equal(down.spec!.initContainers, undefined);
  assert.deepEqual(kube.admissionCalls.at(-1), {
    webhook: 'inject.trellis.dev',
    outcome: 'failed',
    detail: 'no endpoints for the service',
  });
});
