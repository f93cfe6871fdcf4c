// Reads the authority's folder (layout in files.ts) and checks that its parts fit together before
// the authority uses them: keys match their certificates, the signing anchor is in the bundle, the
// issuer chains to an anchor of the bundle, a running rotation has its incoming anchor. Anything
// wrong is a TrellisError naming the folder and the file.
import { makeStateDir } from '../discovery/state-file-io.ts';
import { TrellisError } from '../../core/errors.ts';
import { loadBundle, loadCaKeyPair, type CaCert, type CaKeyPair } from './ca-certs.ts';
import { FILES, readOptional, readPair } from './files.ts';

export interface RotationState {
  readonly phase: 'anchor-added' | 'issuer-replaced';
  readonly startedAtMs: number;
  readonly nextStepAtMs: number;
  /** Fingerprint of the anchor that leaves the bundle at the last step. */
  readonly retiring: string;
}

export interface AuthorityFolder {
  readonly anchors: CaCert[];
  readonly anchor: CaKeyPair | null;
  readonly next: CaKeyPair | null;
  readonly issuer: CaKeyPair | null;
  readonly rotation: RotationState | null;
}

/** The folder's contents (all null/empty for a new folder, which it creates 0700). */
export async function readAuthorityFolder(dir: string): Promise<AuthorityFolder> {
  const fail = (message: string): never => {
    throw new TrellisError('TRELLIS_ERR_IDENTITY_FILES', `identity folder ${dir}: ${message}`);
  };
  try {
    await makeStateDir(dir);
    const [bundlePem, anchorPair, nextPair, issuerPair, rotationText] = await Promise.all([
      readOptional(dir, FILES.bundle),
      readPair(dir, FILES.anchor, FILES.anchorKey),
      readPair(dir, FILES.nextAnchor, FILES.nextAnchorKey),
      readPair(dir, FILES.issuer, FILES.issuerKey),
      readOptional(dir, FILES.rotation),
    ]);
    const anchor = anchorPair && loadCaKeyPair(anchorPair, FILES.anchor);
    const issuer = issuerPair && loadCaKeyPair(issuerPair, FILES.issuer);
    let next = nextPair && loadCaKeyPair(nextPair, FILES.nextAnchor);
    const anchors = bundlePem !== null ? loadBundle(bundlePem, FILES.bundle) : anchor ? [anchor.cert] : [];
    const inBundle = (c: CaCert) => anchors.some((a) => a.fingerprint === c.fingerprint);
    if (anchor && !inBundle(anchor.cert)) fail(`${FILES.anchor} is not one of ${FILES.bundle}`);
    if (issuer === null && anchor === null && anchors.length > 0) {
      fail(
        `${FILES.bundle} needs ${FILES.issuer} + ${FILES.issuerKey} (or ${FILES.anchor} + ${FILES.anchorKey})`,
      );
    }
    if (issuer && !anchors.some((a) => signedBy(issuer.cert, a))) {
      fail(`${FILES.issuer} is not signed by any anchor of ${FILES.bundle}`);
    }
    const rotation = rotationText === null ? null : parseRotation(rotationText, fail);
    if (rotation?.phase === 'anchor-added') {
      if (next === null) fail(`${FILES.rotation} says a rotation runs but ${FILES.nextAnchor} is missing`);
      if (!inBundle(next!.cert)) fail(`${FILES.nextAnchor} is not one of ${FILES.bundle}`);
      if (anchor === null) fail(`${FILES.rotation} says a rotation runs but ${FILES.anchor} is missing`);
    } else {
      next = null; // left over from an interrupted start or finished step: unused
    }
    return { anchors, anchor, next, issuer, rotation };
  } catch (error) {
    if (error instanceof TrellisError) throw error;
    return fail((error as Error).message);
  }
}

/** Whether `cert` was issued and signed by `by`. */
export function signedBy(cert: CaCert, by: CaCert): boolean {
  return cert.x509.checkIssued(by.x509) && cert.x509.verify(by.x509.publicKey);
}

function parseRotation(text: string, fail: (message: string) => never): RotationState {
  let raw: Partial<RotationState>;
  try {
    raw = JSON.parse(text) as Partial<RotationState>;
  } catch {
    return fail(`${FILES.rotation} is not JSON`);
  }
  const { phase, startedAtMs, nextStepAtMs, retiring } = raw ?? {};
  if (phase !== 'anchor-added' && phase !== 'issuer-replaced') {
    return fail(`${FILES.rotation}: phase must be anchor-added or issuer-replaced`);
  }
  if (typeof startedAtMs !== 'number' || typeof nextStepAtMs !== 'number' || typeof retiring !== 'string') {
    return fail(`${FILES.rotation}: expected numbers startedAtMs, nextStepAtMs and a string retiring`);
  }
  return { phase, startedAtMs, nextStepAtMs, retiring };
}
