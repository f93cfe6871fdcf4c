// Builds and signs a workload's leaf certificate (RFC 5280; written and signed by certificate.ts)
// synchronously: the authority's hot path. The parts that never change for one issuer (issuer
// name, authority key identifier, extended key usage) are encoded once in a LeafTemplate.
//
// A leaf: version 3, a random 126-bit serial, empty subject, the requester's key, and
//   basicConstraints CA:false (critical), keyUsage digitalSignature (critical),
//   extKeyUsage serverAuth + clientAuth, subjectKeyIdentifier (SHA-1 of the key, RFC 5280
//   4.2.1.2 method 1), authorityKeyIdentifier (the issuer's SKI), and subjectAltName with the one
//   URI and any DNS names (critical, because the subject is empty: RFC 5280 4.2.1.6).
import { createHash, type KeyObject } from 'node:crypto';
import { extension, randomSerial, signCertificate } from './certificate.ts';
import { octetString, oid, seq, tlv } from './der.ts';

export interface LeafTemplate {
  readonly issuerKey: KeyObject;
  /** DER Name of the issuer (its certificate's subject, byte for byte). */
  readonly issuerName: Buffer;
  /** DER extensions that are the same in every leaf of this issuer. */
  readonly fixedExtensions: Buffer;
}

const EMPTY_NAME = seq();

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
  /** DNS SANs besides it (the injector webhook's serving certificate; none for workloads). */
  readonly dnsNames?: readonly string[];
  readonly notBeforeMs: number;
  readonly notAfterMs: number;
}

/** A DER certificate for `request`, signed by the template's issuer key. */
export function signLeaf(template: LeafTemplate, request: LeafRequest): Buffer {
  const ski = createHash('sha1').update(request.publicKey).digest();
  const dns = (request.dnsNames ?? []).map((name) => tlv(0x82, Buffer.from(name, 'latin1')));
  const san = extension(SAN_OID, true, seq(tlv(0x86, Buffer.from(request.uri, 'latin1')), ...dns));
  return signCertificate(
    {
      serial: randomSerial(),
      issuerName: template.issuerName,
      notBeforeMs: request.notBeforeMs,
      notAfterMs: request.notAfterMs,
      subjectName: EMPTY_NAME,
      spki: request.spki,
      extensions: [template.fixedExtensions, extension(SKI_OID, false, octetString(ski)), san],
    },
    template.issuerKey,
  );
}
