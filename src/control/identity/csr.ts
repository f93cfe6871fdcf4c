// Reads and checks a PKCS#10 certificate signing request (RFC 2986) for the authority: DER only,
// signed with ECDSA P-256 / SHA-256 by the key it carries, whose only subject alternative name is
// the URI asked for. Everything else in the request (subject, other attributes, other requested
// extensions) is ignored: the leaf is built from the identity and the key alone (leaf.ts).
//
// Hand-written over der.ts rather than with @peculiar/x509 because this runs for every
// certificate: the library's parse + WebCrypto verify costs ~0.8 ms, this ~0.1 ms (bench/ca.ts).
// The tests cross-check it against the library's requests and property-test it with garbage.
import { createPublicKey, verify } from 'node:crypto';
import {
  bytesEqual,
  childrenOf,
  contentOf,
  DerError,
  expectTlv,
  oid,
  readTlv,
  TAG,
  type Tlv,
} from './der.ts';

/** Why a request was refused; the message names what is wrong. */
export class CsrError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CsrError';
  }
}

export interface CheckedCsr {
  /** The DER SubjectPublicKeyInfo of the requester's key (copied into the leaf). */
  readonly spki: Buffer;
  /** The public key bits (the uncompressed point), for the subject key identifier. */
  readonly publicKey: Buffer;
}

const OID_CONTENT = (dotted: string): Buffer => oid(dotted).subarray(2);
const EC_PUBLIC_KEY = OID_CONTENT('1.2.840.10045.2.1');
const PRIME256V1 = OID_CONTENT('1.2.840.10045.3.1.7');
const ECDSA_WITH_SHA256 = OID_CONTENT('1.2.840.10045.4.3.2');
const EXTENSION_REQUEST = OID_CONTENT('1.2.840.113549.1.9.14');
const SUBJECT_ALT_NAME = OID_CONTENT('2.5.29.17');
/** GeneralName uniformResourceIdentifier: [6] IMPLICIT IA5String. */
const URI_NAME_TAG = 0x86;
const MAX_CSR_BYTES = 16 * 1024;

/**
 * Checks `der` as a request for `identity` and returns its key. Throws CsrError: malformed DER,
 * a key that is not EC P-256, a signature that does not verify, or SANs other than exactly `identity`.
 */
export function checkCsr(der: Uint8Array, identity: string): CheckedCsr {
  if (der.length === 0) throw new CsrError('certificate_signing_request is empty');
  if (der.length > MAX_CSR_BYTES)
    throw new CsrError(`certificate_signing_request over ${MAX_CSR_BYTES} bytes`);
  let parsed;
  try {
    parsed = parseCsr(der);
  } catch (error) {
    if (error instanceof DerError)
      throw new CsrError(`malformed certificate_signing_request: ${error.message}`);
    throw error;
  }
  const { info, signature, spkiTlv, publicKey, sans } = parsed;
  let key;
  try {
    key = createPublicKey({
      key: Buffer.from(der.subarray(spkiTlv.start, spkiTlv.end)),
      format: 'der',
      type: 'spki',
    });
  } catch {
    throw new CsrError('the request public key is not a valid EC P-256 point');
  }
  let valid = false;
  try {
    valid = verify('sha256', der.subarray(info.start, info.end), key, signature);
  } catch {
    valid = false;
  }
  if (!valid) throw new CsrError('the request signature does not verify with its public key');
  if (sans.length === 0)
    throw new CsrError(`the request has no subject alternative name (expected URI ${identity})`);
  if (sans.length > 1) {
    throw new CsrError(
      `the request has ${sans.length} subject alternative names; expected only URI ${identity}`,
    );
  }
  const only = sans[0]!;
  if (only.tag !== URI_NAME_TAG)
    throw new CsrError(`the request's subject alternative name is not a URI (expected ${identity})`);
  const uri = Buffer.from(only.value).toString('latin1');
  if (uri !== identity) throw new CsrError(`the request names ${JSON.stringify(uri)}, not ${identity}`);
  return { spki: Buffer.from(der.subarray(spkiTlv.start, spkiTlv.end)), publicKey: Buffer.from(publicKey) };
}

interface ParsedCsr {
  readonly info: Tlv;
  readonly signature: Uint8Array;
  readonly spkiTlv: Tlv;
  readonly publicKey: Uint8Array;
  readonly sans: { tag: number; value: Uint8Array }[];
}

/** The structure of a request; throws DerError or CsrError. */
function parseCsr(der: Uint8Array): ParsedCsr {
  const outer = expectTlv(der, 0, der.length, TAG.SEQUENCE, 'CertificationRequest');
  if (outer.end !== der.length) throw new DerError('bytes after the CertificationRequest');
  const [info, algorithm, signatureBits, ...extra] = childrenOf(der, outer, 3);
  if (info === undefined || algorithm === undefined || signatureBits === undefined || extra.length > 0) {
    throw new DerError('CertificationRequest: expected info, algorithm and signature');
  }
  if (info.tag !== TAG.SEQUENCE) throw new DerError('certificationRequestInfo: expected a SEQUENCE');

  // signatureAlgorithm: ecdsa-with-SHA256, parameters absent (RFC 5758 3.2).
  const algParts = childrenOf(
    der,
    expectTlv(der, algorithm.start, outer.end, TAG.SEQUENCE, 'signatureAlgorithm'),
  );
  if (
    algParts.length !== 1 ||
    algParts[0]!.tag !== TAG.OID ||
    !bytesEqual(contentOf(der, algParts[0]!), ECDSA_WITH_SHA256)
  ) {
    throw new CsrError('the request is not signed with ECDSA P-256 and SHA-256 (ecdsa-with-SHA256)');
  }
  if (signatureBits.tag !== TAG.BIT_STRING) throw new DerError('signature: expected a BIT STRING');
  const sigContent = contentOf(der, signatureBits);
  if (sigContent.length < 2 || sigContent[0] !== 0) throw new DerError('signature: bad BIT STRING');

  const [version, subject, spki, attributes, ...rest] = childrenOf(der, info, 4);
  if (version === undefined || subject === undefined || spki === undefined || rest.length > 0) {
    throw new DerError('certificationRequestInfo: expected version, subject, key and attributes');
  }
  const versionContent = contentOf(der, version);
  if (version.tag !== TAG.INTEGER || versionContent.length !== 1 || versionContent[0] !== 0) {
    throw new CsrError('the request version is not 1 (0)');
  }
  if (subject.tag !== TAG.SEQUENCE) throw new DerError('subject: expected a SEQUENCE');
  const publicKey = checkKey(der, spki);
  const sans = attributes === undefined ? [] : requestedSans(der, attributes);
  return { info, signature: sigContent.subarray(1), spkiTlv: spki, publicKey, sans };
}

/** The EC point of a P-256 SubjectPublicKeyInfo; CsrError for any other key. */
function checkKey(der: Uint8Array, spki: Tlv): Uint8Array {
  if (spki.tag !== TAG.SEQUENCE) throw new DerError('subjectPKInfo: expected a SEQUENCE');
  const [alg, bits, ...rest] = childrenOf(der, spki, 2);
  if (alg === undefined || bits === undefined || rest.length > 0 || alg.tag !== TAG.SEQUENCE) {
    throw new DerError('subjectPKInfo: expected algorithm and key');
  }
  const [keyType, curve, ...more] = childrenOf(der, alg, 2);
  if (keyType?.tag !== TAG.OID || !bytesEqual(contentOf(der, keyType), EC_PUBLIC_KEY)) {
    throw new CsrError('the request key is not an EC key (ECDSA P-256 required)');
  }
  if (curve?.tag !== TAG.OID || more.length > 0 || !bytesEqual(contentOf(der, curve), PRIME256V1)) {
    throw new CsrError('the request key is not on curve P-256 (ECDSA P-256 required)');
  }
  if (bits.tag !== TAG.BIT_STRING) throw new DerError('subjectPublicKey: expected a BIT STRING');
  const content = contentOf(der, bits);
  // An uncompressed point: 0x04 || X (32) || Y (32), no unused bits.
  if (content.length !== 66 || content[0] !== 0 || content[1] !== 0x04) {
    throw new CsrError('the request key is not an uncompressed P-256 point');
  }
  return content.subarray(1);
}

/** The GeneralNames of the subjectAltName extension the request asks for ([] when none). */
function requestedSans(der: Uint8Array, attributes: Tlv): { tag: number; value: Uint8Array }[] {
  if (attributes.tag !== 0xa0) throw new DerError('attributes: expected [0]');
  let sans: { tag: number; value: Uint8Array }[] | null = null;
  let sawExtensionRequest = false;
  for (const attribute of childrenOf(der, attributes)) {
    if (attribute.tag !== TAG.SEQUENCE) throw new DerError('attribute: expected a SEQUENCE');
    const [type, values, ...rest] = childrenOf(der, attribute, 2);
    if (type?.tag !== TAG.OID || values?.tag !== TAG.SET || rest.length > 0) {
      throw new DerError('attribute: expected type and values');
    }
    if (!bytesEqual(contentOf(der, type), EXTENSION_REQUEST)) continue;
    if (sawExtensionRequest) throw new CsrError('the request has two extensionRequest attributes');
    sawExtensionRequest = true;
    const [extensions, ...others] = childrenOf(der, values, 1);
    if (extensions?.tag !== TAG.SEQUENCE || others.length > 0)
      throw new DerError('extensionRequest: expected one Extensions');
    for (const extension of childrenOf(der, extensions)) {
      if (extension.tag !== TAG.SEQUENCE) throw new DerError('extension: expected a SEQUENCE');
      const parts = childrenOf(der, extension, 3);
      const id = parts[0];
      const value = parts[parts.length - 1];
      if (id?.tag !== TAG.OID || value?.tag !== TAG.OCTET_STRING || parts.length < 2) {
        throw new DerError('extension: expected id and value');
      }
      if (!bytesEqual(contentOf(der, id), SUBJECT_ALT_NAME)) continue;
      if (sans !== null) throw new CsrError('the request has two subjectAltName extensions');
      const names = readTlv(der, value.contentStart, value.end);
      if (names.tag !== TAG.SEQUENCE || names.end !== value.end)
        throw new DerError('subjectAltName: expected GeneralNames');
      sans = childrenOf(der, names).map((n) => ({ tag: n.tag, value: contentOf(der, n) }));
    }
  }
  return sans ?? [];
}
