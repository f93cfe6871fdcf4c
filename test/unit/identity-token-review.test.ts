// Kubernetes workload tokens (src/control/identity/token-review.ts) against the fake API server:
// the real @kubernetes/client-node posts a TokenReview with the audience trellis-identity; an
// authenticated ServiceAccount token grants only its own identity; unauthenticated, wrong
// audience, a non-ServiceAccount user and an unreachable API are refused with the right status.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { kubeConfigForServer } from '../../src/control/discovery/kubernetes.ts';
import { IdentityError } from '../../src/control/identity/errors.ts';
import { TOKEN_AUDIENCE, TokenReviewVerifier } from '../../src/control/identity/token-review.ts';
import { FakeKubeServer } from '../fake-kube/server.ts';

const PATH = '/apis/authentication.k8s.io/v1/tokenreviews';

interface ReviewBody {
  apiVersion?: string;
  kind?: string;
  spec?: { token?: string; audiences?: string[] };
}

async function refusal(promise: Promise<void>): Promise<IdentityError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof IdentityError, `expected an IdentityError, got ${String(error)}`);
    return error;
  }
  assert.fail('expected a refusal');
}

test('TokenReview: the token of a ServiceAccount grants that account identity and no other', async (t) => {
  const kube = new FakeKubeServer();
  const url = await kube.start();
  t.after(() => kube.close());
  const seen: ReviewBody[] = [];
  // The fake API server's idea of the cluster's tokens.
  const users: Record<string, { username: string; audiences: string[] } | undefined> = {
    'token-web': { username: 'system:serviceaccount:shop:web', audiences: [TOKEN_AUDIENCE] },
    'token-other-audience': {
      username: 'system:serviceaccount:shop:web',
      audiences: ['https://kubernetes.default.svc'],
    },
    'token-person': { username: 'alice@example.com', audiences: [TOKEN_AUDIENCE] },
  };
  kube.postHandlers.set(PATH, (body) => {
    const review = body as ReviewBody;
    seen.push(review);
    const user = users[review.spec?.token ?? ''];
    const status =
      user === undefined
        ? { authenticated: false, error: 'invalid bearer token' }
        : { authenticated: true, user: { username: user.username }, audiences: user.audiences };
    return {
      status: 201,
      body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: review.spec, status },
    };
  });
  const verifier = new TokenReviewVerifier({
    kubeConfig: kubeConfigForServer(url),
    trustDomain: 'cluster.local',
  });

  await verifier.authorize('token-web\n', 'spiffe://cluster.local/ns/shop/sa/web');
  assert.deepEqual(seen[0], {
    apiVersion: 'authentication.k8s.io/v1',
    kind: 'TokenReview',
    spec: { token: 'token-web', audiences: [TOKEN_AUDIENCE] },
  });

  let error = await refusal(verifier.authorize('token-web', 'spiffe://cluster.local/ns/shop/sa/db'));
  assert.equal(error.status, 'PERMISSION_DENIED');
  assert.match(error.message, /grants spiffe:\/\/cluster.local\/ns\/shop\/sa\/web, not/);

  error = await refusal(verifier.authorize('forged', 'spiffe://cluster.local/ns/shop/sa/web'));
  assert.equal(error.status, 'UNAUTHENTICATED');
  assert.match(error.message, /did not authenticate the token: invalid bearer token/);

  error = await refusal(verifier.authorize('token-other-audience', 'spiffe://cluster.local/ns/shop/sa/web'));
  assert.equal(error.status, 'UNAUTHENTICATED');
  assert.match(error.message, /audience trellis-identity/);

  error = await refusal(verifier.authorize('token-person', 'spiffe://cluster.local/ns/shop/sa/web'));
  assert.equal(error.status, 'PERMISSION_DENIED');
  assert.match(error.message, /not a service account/);

  error = await refusal(verifier.authorize('  ', 'spiffe://cluster.local/ns/shop/sa/web'));
  assert.equal(error.status, 'UNAUTHENTICATED');

  // The API server answers an error: UNAVAILABLE (the proxy retries), not a verdict on the token.
  kube.postHandlers.set(PATH, () => ({
    status: 500,
    body: { kind: 'Status', status: 'Failure', message: 'etcd down' },
  }));
  error = await refusal(verifier.authorize('token-web', 'spiffe://cluster.local/ns/shop/sa/web'));
  assert.equal(error.status, 'UNAVAILABLE');
  assert.match(error.message, /TokenReview failed/);
});
