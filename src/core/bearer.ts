// Bearer tokens (RFC 6750) checked in constant time: the admin token of a proxy and the operator
// token of the control plane. Both sides are hashed first, so the comparison takes the same time
// whatever the length or content of what was sent.
import { createHash, timingSafeEqual } from 'node:crypto';

const BEARER = /^Bearer +([\x21-\x7e]+) *$/i;

/** The token of an `Authorization: Bearer TOKEN` header, or null when it carries none. */
export function bearerToken(authorization: string | null | undefined): string | null {
  if (authorization === null || authorization === undefined) return null;
  return BEARER.exec(authorization)?.[1] ?? null;
}

/** The SHA-256 digest a secret is compared by (compute it once for a secret that is kept). */
export function secretDigest(secret: string): Buffer {
  return createHash('sha256').update(secret).digest();
}

/** Whether `sent` is the secret whose digest is `digest`, in constant time. */
export function matchesSecret(sent: string, digest: Buffer): boolean {
  return timingSafeEqual(secretDigest(sent), digest);
}
