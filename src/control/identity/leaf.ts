// Builds and signs a workload's leaf certificate (RFC 5280) with node:crypto, synchronously: the
// authority's hot path. The parts that never change for one issuer (algorithm, issuer name,
// authority key identifier, extended key usage) are encoded once in a LeafTemplate.
//
// A leaf: version 3, a random 126-bit serial, empty subject, the requester's key, and
//   basicConstraints CA:false (critical), keyUsage digitalSignature (critical),
//   extKeyUsage serverAuth + clientAuth, subjectKeyIdentifier (SHA-1 of the key, RFC 5280
//   4.2.1.2 method 1), authorityKeyIdentifier (the issuer's SKI), and subjectAltName with the one
//   URI (critical, because the subject is empty: RFC 5280 4.2.1.6).
import { createHash, randomBytes, sign, type KeyObject } from 'node:crypto';
import {
  bitString,
  BOOLEAN_TRUE,
  certificateTime,
  octetString,
  oid,
  seq,
  tlv,
  unsignedInteger,
} from './der.ts';

export interface LeafTemplate {
  readonly issuerKey: KeyObject;
  /** DER: AlgorithmIdentifier ecdsa-with-SHA256. */
  readonly algorithm: Buffer;
  /** DER Name of the issuer (its certificate's subject, byte for byte). */
  readonly issuerName: Buffer;
  /** DER extensions that are the same in every leaf of this issuer. */
  readonly fixedExtensions: Buffer;
}

const ALGORITHM = seq(oid('1.2.840.10045.4.3.2'));
const VERSION_3 = tlv(0xa0, Buffer.from([0x02, 0x01, 0x02]));
const EMPTY_NAME = seq();

const extension = (id: string, critical: boolean, value: Buffer): Buffer =>
  critical ? seq(oid(id), BOOLEAN_TRUE, octetString(value)) : seq(oid(id), octetString(value));

const BASIC_CONSTRAINTS_LEAF = extension('2.5.29.19', true, seq()); // cA defaults to FALSE
// keyUsage digitalSignature: bit 0 -> 0x80, 7 unused bits.
const KEY_USAGE_LEAF = extension('2.5.29.15', true, Buffer.from([0x03, 0x02, 0x07, 0x80]));
const EXT_KEY_USAGE = extension('2.5.29.37', false, seq(oid('1.3.6.1.5.5.7.3.1'), oid('1.3.6.1.5.5.7.3.2')));
const SKI_OID = '2.5.29.14';
const SAN_OID = '2.5.29.17';

/** The template for leaves of one issuer: `issuerName` is its subject, `issuerKeyId` its SKI. */
export function leafTemplate(issuerKey: KeyObject, issuerName: Buffer, issuerKeyId: Buffer): LeafTemplate {
  const aki = extension('2.5.29.35', false, seq(tlv(0x80, issuerKeyId)));
  return {
    issuerKey,
    algorithm: ALGORITHM,
    issuerName,
    fixedExtensions: Buffer.concat([BASIC_CONSTRAINTS_LEAF, KEY_USAGE_LEAF, EXT_KEY_USAGE, aki]),
  };
}

export interface LeafRequest {
  /** DER SubjectPublicKeyInfo of the workload's key. */
  readonly spki: Buffer;
  /** The raw public key bits (for the subject key identifier). */
  readonly publicKey: Buffer;
  /** The URI SAN (the SPIFFE ID). */
  readonly uri: string;
  readonly notBeforeMs: number;
  readonly notAfterMs: number;
}

/** A DER certificate for `request`, signed by the template's issuer key. */
export function signLeaf(template: LeafTemplate, request: LeafRequest): Buffer {
  const serial = randomBytes(16);
  // Positive, non-zero and already minimal: clear the top bit, set the next one.
  serial[0] = (serial[0]! & 0x3f) | 0x40;
  const ski = createHash('sha1').update(request.publicKey).digest();
  const san = extension(SAN_OID, true, seq(tlv(0x86, Buffer.from(request.uri, 'latin1'))));
  const extensions = tlv(
    0xa3,
    seq(template.fixedExtensions, extension(SKI_OID, false, octetString(ski)), san),
  );
  const tbs = seq(
    VERSION_3,
    unsignedInteger(serial),
    template.algorithm,
    template.issuerName,
    seq(certificateTime(request.notBeforeMs), certificateTime(request.notAfterMs)),
    EMPTY_NAME,
    request.spki,
    extensions,
  );
  const signature = sign('sha256', tbs, template.issuerKey); // DER ECDSA-Sig-Value
  return seq(tbs, template.algorithm, bitString(signature));
}
