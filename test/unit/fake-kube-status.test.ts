// The fake API server's status subresource and writes (test/fake-kube/server.ts) on the wire, as
// a CRD with `subresources.status` behaves: POST creates (generation 1, status dropped), a merge
// PATCH of /status changes only the status (resourceVersion bumped, generation kept, a MODIFIED
// watch event), a stale resourceVersion precondition is 409 Conflict, other patch types 415, a
// write of the main resource keeps the status and counts a spec change in the generation; and the
// official client's patchNamespacedCustomObjectStatus with the merge-patch header gets through.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { kubeConfigForServer } from '../../src/control/discovery/kubernetes.ts';
import { FakeKubeServer } from '../fake-kube/server.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const PATH = '/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes';

async function send(
  server: FakeKubeServer,
  method: string,
  path: string,
  body: unknown,
  type = 'application/merge-patch+json',
) {
  const res = await fetch(server.url + path, {
    method,
    headers: { 'content-type': type },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Json };
}

test('fake-kube: the status subresource of HTTPRoutes, over the wire and through the official client', async (t) => {
  const kube = new FakeKubeServer();
  await kube.start();
  t.after(() => kube.close());
  const route = {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: { name: 'r' },
    spec: { parentRefs: [{ name: 'web' }] },
    status: { parents: ['ignored on create'] },
  };
  const created = await send(kube, 'POST', PATH, route, 'application/json');
  assert.equal(created.status, 201);
  assert.equal(created.body['metadata']['generation'], 1);
  assert.equal(created.body['status'], undefined, 'status is not written on create');
  assert.equal((await send(kube, 'POST', PATH, route, 'application/json')).status, 409);

  const events: Json[] = [];
  const watch = await fetch(
    `${kube.url}${PATH}?watch=true&resourceVersion=${created.body['metadata']['resourceVersion']}`,
  );
  const reader = watch.body!.getReader();
  void (async () => {
    let text = '';
    for (;;) {
      const { value, done } = await reader.read().catch(() => ({ value: undefined, done: true }));
      if (done) return;
      text += Buffer.from(value!).toString();
      const lines = text.split('\n');
      text = lines.pop()!;
      for (const line of lines) if (line) events.push(JSON.parse(line) as Json);
    }
  })();
  t.after(() => reader.cancel());

  const status = { parents: [{ parentRef: { name: 'web' }, controllerName: 'x/y', conditions: [] }] };
  const patched = await send(kube, 'PATCH', `${PATH}/r/status`, {
    metadata: { resourceVersion: created.body['metadata']['resourceVersion'] },
    spec: { parentRefs: [] },
    status,
  });
  assert.equal(patched.status, 200);
  assert.deepEqual(patched.body['status'], status);
  assert.deepEqual(patched.body['spec'], route.spec, 'the status subresource changes only the status');
  assert.equal(patched.body['metadata']['generation'], 1);
  assert.ok(
    Number(patched.body['metadata']['resourceVersion']) > Number(created.body['metadata']['resourceVersion']),
  );

  const stale = await send(kube, 'PATCH', `${PATH}/r/status`, {
    metadata: { resourceVersion: created.body['metadata']['resourceVersion'] },
    status: { parents: [] },
  });
  assert.deepEqual([stale.status, stale.body['reason']], [409, 'Conflict']);
  const jsonPatch = await send(kube, 'PATCH', `${PATH}/r/status`, [], 'application/json-patch+json');
  assert.equal(jsonPatch.status, 415);
  assert.equal((await send(kube, 'PATCH', `${PATH}/nope/status`, { status: {} })).status, 404);
  assert.equal(
    (await send(kube, 'PATCH', '/api/v1/namespaces/shop/services/x/status', { status: {} })).status,
    404,
  );

  // The main resource: the status stays, a spec change is a new generation.
  const main = await send(kube, 'PATCH', `${PATH}/r`, { spec: { hostnames: ['a.example'] }, status: null });
  assert.equal(main.status, 200);
  assert.deepEqual(main.body['status'], status);
  assert.equal(main.body['metadata']['generation'], 2);

  // The official client, with the merge-patch content type.
  const custom = kubeConfigForServer(kube.url).makeApiClient(CustomObjectsApi);
  await custom.patchNamespacedCustomObjectStatus(
    {
      group: 'gateway.networking.k8s.io',
      version: 'v1',
      namespace: 'shop',
      plural: 'httproutes',
      name: 'r',
      body: { status: { parents: [] } },
    },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
  );
  assert.deepEqual(kube.get('HTTPRoute', 'shop', 'r')!['status'], { parents: [] });
  assert.equal(kube.requests.filter((r) => r.subresource === 'status' && r.verb === 'patch').length, 5);

  const deadline = Date.now() + 5000;
  while (events.length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(
    events.map((e) => [e['type'], e['object']['metadata']['generation']]),
    [
      ['MODIFIED', 1],
      ['MODIFIED', 2],
      ['MODIFIED', 2],
    ],
  );
});
