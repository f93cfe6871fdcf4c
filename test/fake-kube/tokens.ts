// ServiceAccount tokens of the fake API server: what the kubelet asks the real one for to fill a
// projected `serviceAccountToken` volume (TokenRequest), and the TokenReview that authenticates
// them. A token issued here for NS/SA and some audiences is reviewed as the user
// `system:serviceaccount:NS:SA` with those audiences (only those: a review that asks for another
// audience is not authenticated, as the real server answers); any other token is not
// authenticated. Random opaque strings, not JWTs: nothing reads inside them.
import { randomBytes } from 'node:crypto';
import type { FakeKubeServer } from './server.ts';

const TOKEN_REVIEWS = '/apis/authentication.k8s.io/v1/tokenreviews';

interface Issued {
  readonly username: string;
  readonly audiences: readonly string[];
}

interface ReviewBody {
  spec?: { token?: string; audiences?: string[] };
}

export interface ServiceAccountTokens {
  /** A token the fake server's TokenReview authenticates as NS/SA for `audiences`. */
  issue(namespace: string, serviceAccount: string, audiences: readonly string[]): string;
  /** How many TokenReviews authenticated a token. */
  readonly authenticated: () => number;
}

/** Makes `kube` answer TokenReviews for the tokens the returned issuer hands out. */
export function serveServiceAccountTokens(kube: FakeKubeServer): ServiceAccountTokens {
  const issued = new Map<string, Issued>();
  let authenticated = 0;
  kube.postHandlers.set(TOKEN_REVIEWS, (body) => {
    const spec = (body as ReviewBody).spec ?? {};
    const token = issued.get(spec.token ?? '');
    const wanted = spec.audiences ?? [];
    const audiences =
      wanted.length === 0 ? token?.audiences : wanted.filter((a) => token?.audiences.includes(a));
    const status =
      token === undefined || audiences === undefined || audiences.length === 0
        ? { authenticated: false, error: 'invalid bearer token' }
        : { authenticated: true, user: { username: token.username }, audiences };
    if (status.authenticated) authenticated += 1;
    return {
      status: 201,
      body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec, status },
    };
  });
  return {
    issue(namespace, serviceAccount, audiences) {
      const token = `fake-sa-token.${randomBytes(18).toString('base64url')}`;
      issued.set(token, { username: `system:serviceaccount:${namespace}:${serviceAccount}`, audiences });
      return token;
    },
    authenticated: () => authenticated,
  };
}
