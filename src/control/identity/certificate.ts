// An X.509 v3 certificate (RFC 5280) written with the DER writer (der.ts) and signed with
// node:crypto, ECDSA P-256 with SHA-256: the parts every certificate of the authority shares.
// Workload leaves (leaf.ts) and the authority's own anchors and issuers (ca-certs.ts) are built
// on it. What varies (names, key, validity, extensions) is the caller's; this module only puts
// the fields in their order and signs them.
import { randomBytes, sign, type KeyObject } from 'node:crypto';
import {
  bitString,
  BOOLEAN_TRUE,
  certificateTime,
  octetString,
  oid,
  seq,
  TAG,
  tlv,
  unsignedInteger,
} from './der.ts';

/** AlgorithmIdentifier ecdsa-with-SHA256 (no parameters, RFC 5758 3.2). */
export const ECDSA_WITH_SHA256 = seq(oid('1.2.840.10045.4.3.2'));

const VERSION_3 = tlv(0xa0, Buffer.from([0x02, 0x01, 0x02]));

/** One extension: its OID, `critical` written only when true (DER omits defaults), its DER value. */
export function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return critical ? seq(oid(id), BOOLEAN_TRUE, octetString(value)) : seq(oid(id), octetString(value));
}

/** A positive random serial of 126 bits, already minimal (RFC 5280 4.1.2.2: at most 20 bytes). */
export function randomSerial(): Buffer {
  const serial = randomBytes(16);
  // Positive, non-zero and already minimal: clear the top bit, set the next one.
  serial[0] = (serial[0]! & 0x3f) | 0x40;
  return serial;
}

/**
 * A Name of one RDN per attribute, in the order given: `[['2.5.4.3', 'root.example']]` is
 * CN=root.example. Values are PrintableStrings when they can be, else UTF8Strings.
 */
export function distinguishedName(attributes: readonly (readonly [string, string])[]): Buffer {
  return seq(
    ...attributes.map(([type, value]) =>
      tlv(
        TAG.SET,
        seq(
          oid(type),
          tlv(
            /^[A-Za-z0-9 '()+,\-./:=?]*$/.test(value) ? TAG.PRINTABLE_STRING : TAG.UTF8_STRING,
            Buffer.from(value, 'utf8'),
          ),
        ),
      ),
    ),
  );
}

export interface CertificateFields {
  readonly serial: Buffer;
  /** DER Name of the issuer (its certificate's subject, byte for byte). */
  readonly issuerName: Buffer;
  readonly notBeforeMs: number;
  readonly notAfterMs: number;
  /** DER Name of the subject (an empty SEQUENCE for a leaf). */
  readonly subjectName: Buffer;
  /** DER SubjectPublicKeyInfo. */
  readonly spki: Buffer;
  /** DER extensions, in order (see `extension`). */
  readonly extensions: readonly Buffer[];
}

/** The DER certificate of `fields`, signed with the issuer's private key. */
export function signCertificate(fields: CertificateFields, issuerKey: KeyObject): Buffer {
  const tbs = seq(
    VERSION_3,
    unsignedInteger(fields.serial),
    ECDSA_WITH_SHA256,
    fields.issuerName,
    seq(certificateTime(fields.notBeforeMs), certificateTime(fields.notAfterMs)),
    fields.subjectName,
    fields.spki,
    tlv(0xa3, seq(...fields.extensions)),
  );
  const signature = sign('sha256', tbs, issuerKey); // DER ECDSA-Sig-Value
  return seq(tbs, ECDSA_WITH_SHA256, bitString(signature));
}
