// Workload tokens of one-machine mode: what `trellis run` gives its proxy to prove, to the
// Identity API, which workload it speaks for. (On Kubernetes a ServiceAccount token checked with a
// TokenReview plays this part: token-review.ts.)
//
// A token is `tt1.<payload>.<mac>`: the payload is base64url JSON claims
// {namespace, serviceAccount, instance, iat, exp, jti} (times in ms since the epoch), the mac is
// base64url HMAC-SHA256 over "tt1.<payload>" with the key in `<state>/identity/token-key`
// (32 random bytes, hex, 0600; created on first use by whichever side comes first). Anyone who can
// read that key can mint tokens; that is the same person who can edit the state folder anyway.
//
// A valid token still grants nothing once its workload instance is no longer registered in the
// state folder (withdrawn, or its lease ran out): a copied token of a stopped workload is refused
// as revoked.
import { createHmac, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { silentLogger, type Logger } from '../../core/log.ts';
import { LruMap } from '../../core/lru-map.ts';
import { spiffeId } from '../../core/spiffe.ts';
import type { StateFileCache } from '../discovery/local-state.ts';
import { IdentityError } from './errors.ts';
import { createSecretOnce } from './files.ts';

/**
 * The audience of the projected ServiceAccount token a proxy sends on Kubernetes (token-review.ts
 * checks it; the injector projects it). Here so that the injector need not load the client.
 */
export const TOKEN_AUDIENCE = 'trellis-identity';

export interface WorkloadTokenClaims {
  readonly namespace: string;
  readonly serviceAccount: string;
  /** The workload instance: its registration file's name ("<name>-<id>"). */
  readonly instance: string;
  readonly iat: number;
  readonly exp: number;
  readonly jti: string;
}

/** Checks a workload token against the identity it asks for; throws IdentityError. */
export interface TokenVerifier {
  authorize(token: string, identity: string): Promise<void>;
}

const PREFIX = 'tt1.';
/** Instances remembered as once registered (tokens.ts LocalTokenVerifier): a refusal's log level only. */
const MAX_SEEN_INSTANCES = 10_000;
const MAX_TOKEN_LENGTH = 4096;
const NAME = /^[a-z0-9]([-a-z0-9]{0,251}[a-z0-9])?$/;

export function tokenKeyPath(root: string): string {
  return join(root, 'identity', 'token-key');
}

/** The token key of `root`, created (0600, atomically: link fails if another side won) when absent. */
export async function loadTokenKey(root: string): Promise<Buffer> {
  const path = tokenKeyPath(root);
  try {
    return parseKey(await readFile(path, 'utf8'), path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  await createSecretOnce(path, randomBytes(32).toString('hex') + '\n');
  return parseKey(await readFile(path, 'utf8'), path);
}

function parseKey(text: string, path: string): Buffer {
  const hex = text.trim();
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new Error(`${path}: expected 64 hex digits`);
  return Buffer.from(hex, 'hex');
}

const mac = (key: Buffer, signed: string): Buffer => createHmac('sha256', key).update(signed).digest();

/** Mints a token for a workload instance (called by `trellis run`, which can read the state folder). */
export async function mintWorkloadToken(
  root: string,
  claims: { namespace: string; serviceAccount: string; instance: string; ttlMs: number },
  now: number = Date.now(),
): Promise<string> {
  for (const field of ['namespace', 'serviceAccount', 'instance'] as const) {
    if (!NAME.test(claims[field])) throw new TypeError(`mintWorkloadToken: ${field} is not a DNS-style name`);
  }
  if (!(claims.ttlMs > 0)) throw new TypeError('mintWorkloadToken: ttlMs must be positive');
  const key = await loadTokenKey(root);
  const body: WorkloadTokenClaims = {
    namespace: claims.namespace,
    serviceAccount: claims.serviceAccount,
    instance: claims.instance,
    iat: now,
    exp: now + claims.ttlMs,
    jti: randomUUID(),
  };
  const signed = PREFIX + Buffer.from(JSON.stringify(body)).toString('base64url');
  return `${signed}.${mac(key, signed).toString('base64url')}`;
}

/** The claims of a token whose mac verifies with `key`; null for anything else. Never throws. */
export function readWorkloadToken(token: string, key: Buffer): WorkloadTokenClaims | null {
  if (token.length > MAX_TOKEN_LENGTH || !token.startsWith(PREFIX)) return null;
  const dot = token.lastIndexOf('.');
  if (dot <= PREFIX.length) return null;
  const signed = token.slice(0, dot);
  const given = token.slice(dot + 1);
  // Compared as text, not as decoded bytes: base64url decoding ignores the last character's spare
  // bits, so two spellings would otherwise pass for one mac.
  const expected = Buffer.from(mac(key, signed).toString('base64url'));
  const actual = Buffer.from(given);
  if (actual.length !== expected.length || !timingSafeEqual(actual, expected)) return null;
  let claims: Partial<WorkloadTokenClaims>;
  try {
    claims = JSON.parse(
      Buffer.from(signed.slice(PREFIX.length), 'base64url').toString('utf8'),
    ) as Partial<WorkloadTokenClaims>;
  } catch {
    return null;
  }
  if (typeof claims !== 'object' || claims === null) return null;
  const { namespace, serviceAccount, instance, iat, exp, jti } = claims;
  if (typeof namespace !== 'string' || typeof serviceAccount !== 'string' || typeof instance !== 'string')
    return null;
  if (typeof iat !== 'number' || typeof exp !== 'number' || typeof jti !== 'string') return null;
  return { namespace, serviceAccount, instance, iat, exp, jti };
}

/**
 * Verifies tokens minted for the state folder `root`: UNAUTHENTICATED for a forged, tampered,
 * garbled or expired token or one of a workload no longer registered; PERMISSION_DENIED when the
 * token does not grant the identity asked for.
 */
export class LocalTokenVerifier implements TokenVerifier {
  readonly #root: string;
  readonly #trustDomain: string;
  readonly #now: () => number;
  readonly #log: Logger;
  readonly #cache: StateFileCache = new Map();
  /** Instances seen registered (only a validly signed token names one), bounded. */
  readonly #seen = new LruMap<string, true>(MAX_SEEN_INSTANCES);
  #key: Promise<Buffer> | null = null;

  constructor(options: { root: string; trustDomain: string; now?: () => number; log?: Logger }) {
    this.#root = options.root;
    this.#trustDomain = options.trustDomain;
    this.#now = options.now ?? Date.now;
    this.#log = options.log ?? silentLogger;
  }

  async authorize(token: string, identity: string): Promise<void> {
    this.#key ??= loadTokenKey(this.#root).catch((error: unknown) => {
      this.#key = null;
      throw new IdentityError('UNAVAILABLE', `cannot read the token key: ${(error as Error).message}`);
    });
    const claims = readWorkloadToken(token.trim(), await this.#key);
    if (claims === null)
      throw new IdentityError('UNAUTHENTICATED', 'the token is not a valid workload token');
    if (this.#now() >= claims.exp) {
      throw new IdentityError(
        'UNAUTHENTICATED',
        `the token expired at ${new Date(claims.exp).toISOString()}`,
      );
    }
    // Loaded here: `trellis run` mints tokens and should not load the state folder's formats.
    const { readLocalState } = await import('../discovery/local-state.ts');
    const state = await readLocalState(this.#root, this.#cache, this.#log, this.#now());
    const registered = state.workloads.some(
      (w) => w.namespace === claims.namespace && w.name === claims.instance,
    );
    const instance = `${claims.namespace}/${claims.instance}`;
    if (!registered) {
      // `trellis run` registers an instance once its proxy is up (the registration names the
      // proxy's ports), and the proxy asks for its certificate as it starts: an instance never
      // seen registered is one starting, and its refusals are logged at debug, while a token
      // whose instance was registered and is gone (the workload stopped) is a replay, at info.
      if (!this.#seen.has(instance)) {
        throw new IdentityError(
          'UNAUTHENTICATED',
          `workload instance ${instance} is not registered (yet: its proxy asks as it starts)`,
          { expected: true },
        );
      }
      throw new IdentityError(
        'UNAUTHENTICATED',
        `the token is revoked: workload instance ${instance} is not registered`,
      );
    }
    this.#seen.set(instance, true);
    const granted = spiffeId(this.#trustDomain, claims.namespace, claims.serviceAccount);
    if (identity !== granted) {
      throw new IdentityError('PERMISSION_DENIED', `the token grants ${granted}, not ${identity}`);
    }
  }
}
