// The authority's folder (`<state>/identity/` for `trellis up`, `--identity-dir` for
// `trellis control`): PEM files an operator can read, supply or back up.
//
//   trust-anchors.pem        every trusted anchor (the bundle proxies get), one or more
//   anchor.pem, anchor.key.pem            the anchor the authority signs issuers with (optional:
//                                         absent when the operator supplies the issuer)
//   issuer.pem, issuer.key.pem            the issuer that signs leaves
//   next-anchor.pem, next-anchor.key.pem  the incoming anchor during a rotation
//   rotation.json            {phase, startedAtMs, nextStepAtMs} while a rotation runs
//   token-key                the HMAC key of one-machine workload tokens (tokens.ts)
//
// Every file is written 0600 (keys, and the certificates too: the folder is its owner's, as the
// whole state folder is, src/control/discovery/state-permissions.ts) and atomically (a temporary
// file renamed into place: the state folder's writeAtomically, ../discovery/state-file-io.ts), so
// a reader never sees half a file. A pair (cert + key) is two renames; the key goes first, and
// loading checks that they match, so a crash between them is reported rather than used.
import { randomBytes } from 'node:crypto';
import { link, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { makeStateDir, writeAtomically } from '../discovery/state-file-io.ts';

export const FILES = {
  bundle: 'trust-anchors.pem',
  anchor: 'anchor.pem',
  anchorKey: 'anchor.key.pem',
  issuer: 'issuer.pem',
  issuerKey: 'issuer.key.pem',
  nextAnchor: 'next-anchor.pem',
  nextAnchorKey: 'next-anchor.key.pem',
  rotation: 'rotation.json',
} as const;

/**
 * Creates `path` with `text` (0600) unless it exists. Atomic: a temporary file is linked into
 * place, so when two processes race, both end up reading the winner's.
 */
export async function createSecretOnce(path: string, text: string): Promise<void> {
  await makeStateDir(dirname(path));
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(tmp, text, { mode: 0o600 });
  try {
    await link(tmp, path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  } finally {
    await rm(tmp, { force: true });
  }
}

/** The text of `dir/name`, or null when it does not exist. */
export async function readOptional(dir: string, name: string): Promise<string | null> {
  try {
    return await readFile(join(dir, name), 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
}

/** A certificate and its key as PEM. */
export interface PemPair {
  readonly certPem: string;
  readonly keyPem: string;
}

/** Reads `cert` + `key` of `dir`: null when neither exists; an Error naming the one missing. */
export async function readPair(dir: string, cert: string, key: string): Promise<PemPair | null> {
  const [certPem, keyPem] = await Promise.all([readOptional(dir, cert), readOptional(dir, key)]);
  if (certPem === null && keyPem === null) return null;
  if (certPem === null) throw new Error(`${join(dir, key)} exists but ${cert} does not`);
  if (keyPem === null) throw new Error(`${join(dir, cert)} exists but ${key} does not`);
  return { certPem, keyPem };
}

export async function writePair(dir: string, cert: string, key: string, pair: PemPair): Promise<void> {
  await writeAtomically(join(dir, key), pair.keyPem);
  await writeAtomically(join(dir, cert), pair.certPem);
}

export async function removeFiles(dir: string, ...names: string[]): Promise<void> {
  await Promise.all(names.map((n) => rm(join(dir, n), { force: true })));
}
