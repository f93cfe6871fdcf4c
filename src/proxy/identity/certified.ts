// Turns the control plane's answer to Identity.Certify into the proxy's credentials, after
// checking that they are the ones it asked for. A CA bug or a misrouted answer must not become a
// certificate the proxy then presents (to every peer, until the next renewal): the leaf must name
// exactly our identity, hold our public key, be valid now, and lead through the intermediates to
// one of the trust anchors sent with it. Anything else is an error, and the caller keeps its
// current credentials and retries.
import { X509Certificate } from 'node:crypto';
import type { ApiCertifyResponseOutput } from '../../api/client.ts';
import { TrellisError } from '../../core/errors.ts';
import { uriSans } from '../../core/spiffe.ts';
import type { CertifiedKey } from './provider.ts';

/** The code of the error thrown for an answer the proxy cannot use. */
export const BAD_CERTIFY_RESPONSE = 'TRELLIS_ERR_IDENTITY_RESPONSE';

export interface Expected {
  /** The SPIFFE ID asked for. */
  readonly id: string;
  /** Our public key, SPKI DER. */
  readonly publicKeyDer: Buffer;
  /** Our private key, PKCS#8 PEM (copied into the result). */
  readonly keyPem: string;
  /** Wall-clock time, ms since the epoch. */
  readonly nowMs: number;
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g;

function fail(message: string): never {
  throw new TrellisError(BAD_CERTIFY_RESPONSE, `Certify response: ${message}`);
}

function parseDer(der: Buffer, what: string): X509Certificate {
  try {
    return new X509Certificate(der);
  } catch (err) {
    return fail(`${what} is not a DER X.509 certificate (${(err as Error).message})`);
  }
}

/** The trust anchors of a PEM bundle (one or more certificates). */
export function parsePemBundle(pem: string, what: string): X509Certificate[] {
  const blocks = pem.match(PEM_CERTIFICATE) ?? [];
  if (blocks.length === 0) fail(`${what} holds no PEM certificate`);
  return blocks.map((block, i) => {
    try {
      return new X509Certificate(block);
    } catch (err) {
      return fail(`${what}: certificate ${i + 1} does not parse (${(err as Error).message})`);
    }
  });
}

/** Whether `issuer` issued and signed `cert`. */
function signedBy(cert: X509Certificate, issuer: X509Certificate): boolean {
  return cert.checkIssued(issuer) && cert.verify(issuer.publicKey);
}

/** The credentials in `response`, or a TrellisError (BAD_CERTIFY_RESPONSE) saying what is wrong. */
export function certifiedKeyFromResponse(
  response: ApiCertifyResponseOutput,
  expected: Expected,
): CertifiedKey {
  if (response.leafCertificate.length === 0) fail('leaf_certificate is empty');
  const leaf = parseDer(response.leafCertificate, 'leaf_certificate');
  const intermediates = response.intermediateCertificates.map((der, i) =>
    parseDer(der, `intermediate_certificates[${i}]`),
  );
  const anchors = parsePemBundle(response.trustAnchorsPem, 'trust_anchors_pem');

  const sans = uriSans(leaf.subjectAltName);
  if (sans.length !== 1 || sans[0] !== expected.id) {
    fail(`the leaf names ${sans.length === 0 ? 'no URI' : sans.join(', ')}, not ${expected.id}`);
  }
  const leafKey = leaf.publicKey.export({ type: 'spki', format: 'der' });
  if (!leafKey.equals(expected.publicKeyDer)) fail('the leaf is for another public key than ours');

  const notBeforeMs = leaf.validFromDate.getTime();
  const expiresAtMs = leaf.validToDate.getTime();
  if (!(expiresAtMs > expected.nowMs)) fail(`the leaf expired at ${leaf.validToDate.toISOString()}`);
  if (!(notBeforeMs < expiresAtMs)) fail('the leaf has an empty validity period');

  const chain = [leaf, ...intermediates];
  for (let i = 0; i + 1 < chain.length; i++) {
    if (!signedBy(chain[i] as X509Certificate, chain[i + 1] as X509Certificate)) {
      fail(`certificate ${i} of the chain (0 = leaf) was not issued by certificate ${i + 1}`);
    }
  }
  const top = chain[chain.length - 1] as X509Certificate;
  if (!anchors.some((anchor) => signedBy(top, anchor))) {
    fail('the chain does not lead to any of the trust anchors sent with it');
  }

  return {
    keyPem: expected.keyPem,
    chainPem: chain.map((cert) => cert.toString()).join(''),
    trustAnchorsPem: anchors.map((anchor) => anchor.toString()).join(''),
    notBeforeMs,
    expiresAtMs,
  };
}
