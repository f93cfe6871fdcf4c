// The pod runner's pure parts (test/helpers/pod-runner.ts): Kubernetes' `$(VAR)` expansion in
// commands, args and env, the EndpointSlices it writes for the Services that select a pod, and
// the projected ServiceAccount tokens the fake API server issues and reviews (fake-kube/tokens.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { kubeConfigForServer } from '../../src/control/discovery/kubernetes.ts';
import { TOKEN_AUDIENCE, TokenReviewVerifier } from '../../src/control/identity/token-review.ts';
import { FakeKubeServer } from '../fake-kube/server.ts';
import { serveServiceAccountTokens } from '../fake-kube/tokens.ts';
import { expandVariables, syncEndpointSlices } from '../helpers/pod-runner.ts';

test('$(VAR) is expanded from the env as Kubernetes does; $$ is a literal $; unknown ones stay', () => {
  const env = new Map([
    ['TRELLIS_POD_NAME', 'web-1'],
    ['A', '$(B)'],
  ]);
  assert.equal(expandVariables('--workload=$(TRELLIS_POD_NAME)', env), '--workload=web-1');
  assert.equal(
    expandVariables('$$(TRELLIS_POD_NAME) $$ $(NOPE) $(A)', env),
    '$(TRELLIS_POD_NAME) $ $(NOPE) $(B)',
  );
  assert.equal(expandVariables('$(TRELLIS_POD_NAME', env), '$(TRELLIS_POD_NAME');
});

test('a Service gets one EndpointSlice of the pods it selects, with their readiness and the named target port', () => {
  const kube = new FakeKubeServer();
  const pod = (name: string, app: string, ready: boolean) =>
    kube.apply({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, namespace: 'shop', labels: { app } },
      spec: { containers: [{ name: 'app', ports: [{ name: 'http', containerPort: 8080 }] }] },
      status: {
        podIP: `198.18.0.${name.length}`,
        conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }],
      },
    });
  pod('web-1', 'web', true);
  pod('web-22', 'web', false);
  pod('db-1', 'db', true);
  kube.apply({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'web', namespace: 'shop' },
    spec: { selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 'http' }] },
  });
  syncEndpointSlices(kube, 'shop');
  const [slice, ...others] = kube.list('EndpointSlice');
  assert.equal(others.length, 0);
  assert.equal(slice!.metadata.labels!['kubernetes.io/service-name'], 'web');
  assert.deepEqual(slice!['endpoints'], [
    {
      addresses: ['198.18.0.5'],
      conditions: { ready: true },
      targetRef: { kind: 'Pod', name: 'web-1', namespace: 'shop' },
    },
    {
      addresses: ['198.18.0.6'],
      conditions: { ready: false },
      targetRef: { kind: 'Pod', name: 'web-22', namespace: 'shop' },
    },
  ]);
  assert.deepEqual(slice!['ports'], [{ name: 'http', protocol: 'TCP', port: 8080 }]);
});

test('an issued token is reviewed as its ServiceAccount, for its audience only', async (t) => {
  const kube = new FakeKubeServer();
  await kube.start();
  t.after(() => kube.close());
  const tokens = serveServiceAccountTokens(kube);
  const verifier = (audience: string) =>
    new TokenReviewVerifier({
      kubeConfig: kubeConfigForServer(kube.url),
      trustDomain: 'cluster.local',
      audience,
    });
  const token = tokens.issue('shop', 'web', [TOKEN_AUDIENCE]);
  await verifier(TOKEN_AUDIENCE).authorize(token, 'spiffe://cluster.local/ns/shop/sa/web');
  assert.equal(tokens.authenticated(), 1);
  await assert.rejects(
    verifier(TOKEN_AUDIENCE).authorize(token, 'spiffe://cluster.local/ns/shop/sa/db'),
    /grants spiffe:\/\/cluster.local\/ns\/shop\/sa\/web, not/,
  );
  await assert.rejects(
    verifier('https://kubernetes.default.svc').authorize(token, 'spiffe://cluster.local/ns/shop/sa/web'),
    /did not authenticate the token: invalid bearer token/,
  );
  await assert.rejects(
    verifier(TOKEN_AUDIENCE).authorize('made-up', 'spiffe://cluster.local/ns/shop/sa/web'),
    /did not authenticate/,
  );
});
