// The proxy's certificate signing request: a DER PKCS#10 CertificationRequest (RFC 2986) for the
// proxy's in-memory ECDSA P-256 key, asking for exactly one identity, the workload's SPIFFE ID as
// a URI subject alternative name. The control plane's Identity.Certify checks it and issues the
// leaf (src/api/identity.proto). Encoded with the small DER writer in src/core/der.ts (see there
// for why the proxy does not load an X.509 library).
//
// The shape, field by field:
//   CertificationRequest ::= SEQUENCE {
//     certificationRequestInfo SEQUENCE {
//       version       INTEGER 0
//       subject       Name: an empty SEQUENCE (see below)
//       subjectPKInfo SubjectPublicKeyInfo (node:crypto's SPKI DER, as is)
//       attributes    [0] IMPLICIT SET OF Attribute: one extensionRequest (1.2.840.113549.1.9.14)
//                     whose value is Extensions: one subjectAltName (2.5.29.17), critical,
//                     GeneralNames = [ uniformResourceIdentifier [6] IA5String uri ] }
//     signatureAlgorithm SEQUENCE { ecdsa-with-SHA256 (1.2.840.10045.4.3.2) } (no parameters,
//                        RFC 5758 3.2)
//     signature          BIT STRING: the DER ECDSA signature over certificationRequestInfo }
//
// The subject is empty on purpose: the identity is the URI SAN alone (as in SPIFFE X.509-SVIDs),
// so there is no second name that could disagree with it. RFC 5280 4.2.1.6 requires the SAN
// extension to be critical when the subject is empty, hence `critical TRUE`.
import { sign, type KeyObject } from 'node:crypto';
import { TrellisError } from '../../core/errors.ts';
import {
  bitString,
  boolean,
  contextConstructed,
  contextPrimitive,
  integer,
  octetString,
  oid,
  sequence,
  setOf,
  tlv,
} from '../../core/der.ts';

const OID_EXTENSION_REQUEST = '1.2.840.113549.1.9.14';
const OID_SUBJECT_ALT_NAME = '2.5.29.17';
const OID_ECDSA_WITH_SHA256 = '1.2.840.10045.4.3.2';
/** GeneralName's uniformResourceIdentifier choice: [6] IMPLICIT IA5String. */
const GENERAL_NAME_URI = 6;

export interface CsrKeyPair {
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
}

/** The error createCsr throws for a key or URI it cannot put in a request. */
export const CSR_ERROR = 'TRELLIS_ERR_CSR';

/**
 * A DER PKCS#10 request for `keyPair` (ECDSA P-256; signed ecdsa-with-SHA256) whose only
 * SAN is the URI `uri` (printable ASCII: IA5String, no spaces or control characters).
 */
export function createCsr(keyPair: CsrKeyPair, uri: string): Buffer {
  // The control plane accepts P-256 only (every key of the mesh is ECDSA P-256 with SHA-256).
  const curve = keyPair.publicKey.asymmetricKeyDetails?.namedCurve;
  if (keyPair.privateKey.asymmetricKeyType !== 'ec' || keyPair.publicKey.asymmetricKeyType !== 'ec') {
    throw new TrellisError(
      CSR_ERROR,
      `CSR: the key must be an ECDSA P-256 key, not ${keyPair.privateKey.asymmetricKeyType ?? 'a secret key'}`,
    );
  }
  if (curve !== 'prime256v1') {
    throw new TrellisError(CSR_ERROR, `CSR: the key must be on curve P-256 (prime256v1), not ${curve}`);
  }
  // IA5String holds ASCII; a URI (RFC 3986) is printable ASCII without spaces.
  if (!/^[\x21-\x7e]+$/.test(uri)) {
    throw new TrellisError(CSR_ERROR, `CSR: the URI SAN ${JSON.stringify(uri)} is not a printable ASCII URI`);
  }

  const generalNames = sequence(tlv(contextPrimitive(GENERAL_NAME_URI), Buffer.from(uri, 'ascii')));
  const subjectAltName = sequence(oid(OID_SUBJECT_ALT_NAME), boolean(true), octetString(generalNames));
  const extensionRequest = sequence(oid(OID_EXTENSION_REQUEST), setOf(sequence(subjectAltName)));
  const info = sequence(
    integer(0),
    sequence(), // the empty subject
    keyPair.publicKey.export({ type: 'spki', format: 'der' }),
    // attributes [0] IMPLICIT SET OF Attribute: a set of one, so no DER sorting to do.
    tlv(contextConstructed(0), extensionRequest),
  );
  // node:crypto signs EC keys with a DER ECDSA-Sig-Value by default, which is what X.509 wants.
  const signature = sign('sha256', info, keyPair.privateKey);
  return sequence(info, sequence(oid(OID_ECDSA_WITH_SHA256)), bitString(signature));
}
