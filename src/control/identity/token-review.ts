// Workload tokens on Kubernetes: the proxy sends its pod's ServiceAccount token, projected with
// the audience `trellis-identity`, and the control plane asks the API server about it with a
// TokenReview (authentication.k8s.io/v1), as Linkerd's identity controller does. The token is
// accepted only when the API server says it is authenticated for that audience, and it grants
// only the identity of its own service account (`system:serviceaccount:NS:SA`).
//
// Loaded only by `trellis control` (the Kubernetes client takes about a second to import).
import { AuthenticationV1Api, type KubeConfig } from '@kubernetes/client-node';
import { spiffeId } from '../../core/spiffe.ts';
import { IdentityError } from './errors.ts';
import { TOKEN_AUDIENCE, type TokenVerifier } from './tokens.ts';

export { TOKEN_AUDIENCE };
const SERVICE_ACCOUNT_USER = /^system:serviceaccount:([a-z0-9][-a-z0-9.]*):([a-z0-9][-a-z0-9.]*)$/;

export class TokenReviewVerifier implements TokenVerifier {
  readonly #api: AuthenticationV1Api;
  readonly #trustDomain: string;
  readonly #audience: string;

  constructor(options: { kubeConfig: KubeConfig; trustDomain: string; audience?: string }) {
    this.#api = options.kubeConfig.makeApiClient(AuthenticationV1Api);
    this.#trustDomain = options.trustDomain;
    this.#audience = options.audience ?? TOKEN_AUDIENCE;
  }

  async authorize(token: string, identity: string): Promise<void> {
    const trimmed = token.trim();
    if (trimmed === '') throw new IdentityError('UNAUTHENTICATED', 'no token');
    let review;
    try {
      review = await this.#api.createTokenReview({
        body: {
          apiVersion: 'authentication.k8s.io/v1',
          kind: 'TokenReview',
          spec: { token: trimmed, audiences: [this.#audience] },
        },
      });
    } catch (error) {
      throw new IdentityError('UNAVAILABLE', `the TokenReview failed: ${(error as Error).message}`, {
        cause: error,
      });
    }
    const status = review.status;
    if (status?.authenticated !== true) {
      const why = status?.error ? `: ${status.error}` : '';
      throw new IdentityError('UNAUTHENTICATED', `the Kubernetes API did not authenticate the token${why}`);
    }
    // An API server that does not support audiences may ignore them; then the answer must not count.
    if (!(status.audiences ?? []).includes(this.#audience)) {
      throw new IdentityError('UNAUTHENTICATED', `the token is not for the audience ${this.#audience}`);
    }
    const username = status.user?.username ?? '';
    const match = SERVICE_ACCOUNT_USER.exec(username);
    if (match === null) {
      throw new IdentityError(
        'PERMISSION_DENIED',
        `the token belongs to ${JSON.stringify(username)}, not a service account`,
      );
    }
    const granted = spiffeId(this.#trustDomain, match[1]!, match[2]!);
    if (identity !== granted)
      throw new IdentityError('PERMISSION_DENIED', `the token grants ${granted}, not ${identity}`);
  }
}
