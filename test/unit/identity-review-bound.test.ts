// Certify's TokenReviews (src/control/identity/token-review.ts) are bounded: anyone who reaches the
// gRPC port may send made-up tokens, and each one used to become a TokenReview to the API server at
// once, however many were already waiting (200 requests: 200 reviews in flight against a slow API
// server), with a token as large as a message may be. An API server of our own holds the reviews.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { kubeConfigForServer } from '../../src/control/discovery/kubernetes.ts';
import { IdentityError } from '../../src/control/identity/errors.ts';
import {
  MAX_REVIEW_TOKEN_BYTES,
  MAX_REVIEWS_IN_FLIGHT,
  TokenReviewVerifier,
} from '../../src/control/identity/token-review.ts';

const IDENTITY = 'spiffe://cluster.local/ns/shop/sa/web';

test('TokenReviews in flight are bounded; past the bound a request is refused UNAVAILABLE at once', async (t) => {
  const held: http.ServerResponse[] = [];
  let reviews = 0;
  const api = http.createServer((req, res) => {
    req.resume();
    reviews++;
    held.push(res); // the API server is slow: nothing is answered until the end
  });
  api.listen(0, '127.0.0.1');
  await once(api, 'listening');
  t.after(() => {
    api.closeAllConnections();
    api.close();
  });
  const verifier = new TokenReviewVerifier({
    kubeConfig: kubeConfigForServer(`http://127.0.0.1:${(api.address() as AddressInfo).port}`),
    trustDomain: 'cluster.local',
  });
  const outcomes = Array.from({ length: 200 }, (_, i) =>
    verifier.authorize(`made-up-${i}`, IDENTITY).then(
      () => 'granted',
      (e: unknown) => (e instanceof IdentityError ? e.status : String(e)),
    ),
  );
  const refused = await Promise.race([
    Promise.all(outcomes.slice(MAX_REVIEWS_IN_FLIGHT)),
    new Promise<string>((r) => setTimeout(() => r(`still waiting, ${reviews} reviews in flight`), 3000)),
  ]);
  assert.ok(Array.isArray(refused), String(refused));
  assert.deepEqual(new Set(refused), new Set(['UNAVAILABLE']), 'the ones past the bound, at once');
  for (let waited = 0; reviews < MAX_REVIEWS_IN_FLIGHT && waited < 3000; waited += 10)
    await new Promise((r) => setTimeout(r, 10));
  assert.equal(reviews, MAX_REVIEWS_IN_FLIGHT);
  for (const res of held.splice(0))
    res.writeHead(201, { 'content-type': 'application/json' }).end(
      JSON.stringify({
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenReview',
        status: { authenticated: false },
      }),
    );
  const answered = await Promise.all(outcomes.slice(0, MAX_REVIEWS_IN_FLIGHT));
  assert.deepEqual(new Set(answered), new Set(['UNAUTHENTICATED']));
  // Room again.
  const again = verifier.authorize('made-up-again', IDENTITY).catch((e: IdentityError) => e.status);
  for (let waited = 0; held.length === 0 && waited < 3000; waited += 10)
    await new Promise((r) => setTimeout(r, 10));
  held
    .shift()
    ?.writeHead(201, { 'content-type': 'application/json' })
    .end(JSON.stringify({ status: { authenticated: false } }));
  assert.equal(await again, 'UNAUTHENTICATED');

  // A token larger than any ServiceAccount token is refused without a review.
  const before = reviews;
  const big = await verifier
    .authorize('x'.repeat(MAX_REVIEW_TOKEN_BYTES + 1), IDENTITY)
    .catch((e: IdentityError) => e.status);
  assert.equal(big, 'UNAUTHENTICATED');
  assert.equal(reviews, before);
});
