// `trellis apply` reports each resource as kubectl does: `created` the first time, `unchanged`
// when the state folder holds it as applied already (its file left alone: the control plane
// reads nothing new), `configured` when it changed; `--delete` says `deleted` or `not found`.
// One file of every folder's kinds (a Service, policy, a route and its fault, a backend policy),
// through the real CLI.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from '../helpers/cli.ts';
import { removeTempDir } from '../helpers/temp-dir.ts';

const resources = (weight: number) => `apiVersion: v1
kind: Service
metadata: { name: web, namespace: shop }
spec: { ports: [{ port: 80, targetPort: 8080 }] }
---
apiVersion: policy.trellis.dev/v1alpha1
kind: Server
metadata: { name: web-http, namespace: shop }
spec: { workload: web, port: 80 }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: web-split, namespace: shop }
spec:
  parentRefs: [{ kind: Service, group: '', name: web, port: 80 }]
  rules:
    - backendRefs: [{ name: web, port: 80, weight: ${weight} }]
      filters: [{ type: ExtensionRef, extensionRef: { group: traffic.trellis.dev, kind: HTTPFault, name: slow } }]
---
apiVersion: traffic.trellis.dev/v1alpha1
kind: HTTPFault
metadata: { name: slow, namespace: shop }
spec: { delay: { fixedDelay: 10ms, percentage: 1 } }
`;

const NAMES = ['service/web.shop', 'server/web-http.shop', 'httproute/web-split.shop', 'httpfault/slow.shop'];

/** The output lines of an apply that gave each resource `outcomes[i]`. */
const lines = (outcomes: string[]) => NAMES.map((name, i) => `${name} ${outcomes[i]}\n`).join('');

test('trellis apply says created, unchanged or configured per resource; --delete says deleted or not found', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'trellis-apply-outcomes-'));
  t.after(() => removeTempDir(root));
  const state = join(root, 'state');
  const file = join(root, 'web.yaml');
  const apply = async (...extra: string[]) => {
    const r = await runCli(['apply', '-f', file, '--state', state, ...extra]);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout;
  };

  await writeFile(file, resources(1));
  assert.equal(await apply(), lines(['created', 'created', 'created', 'created']));
  const routeFile = join(state, 'routes/shop/httproute-web-split.yaml');
  const before = await stat(routeFile);

  assert.equal(await apply(), lines(['unchanged', 'unchanged', 'unchanged', 'unchanged']));
  assert.equal((await stat(routeFile)).mtimeMs, before.mtimeMs, 'an unchanged resource is not written');

  await writeFile(file, resources(2));
  assert.equal(await apply(), lines(['unchanged', 'unchanged', 'configured', 'unchanged']));

  assert.equal(await apply('--delete'), lines(['deleted', 'deleted', 'deleted', 'deleted']));
  assert.equal(await apply('--delete'), lines(['not found', 'not found', 'not found', 'not found']));
  assert.equal(await apply(), lines(['created', 'created', 'created', 'created']));
});
