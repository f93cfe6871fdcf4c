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

/**
 * Anyone who reaches the gRPC port may call Certify, and each call with a token asked the API
 * server a TokenReview: without a bound, a caller with made-up tokens (each up to the 1 MiB a
 * message may hold) had the control plane send the API server as many reviews at once as it
 * liked, each held in memory until answered. A projected ServiceAccount token is a JWT of a
 * kilobyte or two; past MAX_REVIEWS_IN_FLIGHT reviews waiting for their answer a request is
 * refused with UNAVAILABLE (a proxy retries with backoff).
 */
export const MAX_REVIEW_TOKEN_BYTES = 16 * 1024;
export const MAX_REVIEWS_IN_FLIGHT = 64;
const SERVICE_ACCOUNT_USER = /^system:serviceaccount:([a-z0-9][-a-z0-9.]*):([a-z0-9][-a-z0-9.]*)$/;

export class TokenReviewVerifier implements TokenVerifier {
  readonly #api: AuthenticationV1Api;
  readonly #trustDomain: string;
  readonly #audience: string;
  readonly #maxInFlight: number;
  #inFlight = 0;

  constructor(options: {
    kubeConfig: KubeConfig;
    trustDomain: string;
    audience?: string;
    /** Reviews waiting for the API server at once (default MAX_REVIEWS_IN_FLIGHT). */
    maxInFlight?: number;
  }) {
    this.#api = options.kubeConfig.makeApiClient(AuthenticationV1Api);
    this.#trustDomain = options.trustDomain;
    this.#audience = options.audience ?? TOKEN_AUDIENCE;
    this.#maxInFlight = options.maxInFlight ?? MAX_REVIEWS_IN_FLIGHT;
  }

  async authorize(token: string, identity: string): Promise<void> {
    const trimmed = token.trim();
    if (trimmed === '') throw new IdentityError('UNAUTHENTICATED', 'no token');
    if (trimmed.length > MAX_REVIEW_TOKEN_BYTES)
      throw new IdentityError('UNAUTHENTICATED', `token over ${MAX_REVIEW_TOKEN_BYTES} bytes`);
    if (this.#inFlight >= this.#maxInFlight)
      throw new IdentityError('UNAVAILABLE', 'too many token reviews in flight; try again later');
    let review;
    this.#inFlight++;
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
    } finally {
      this.#inFlight--;
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
