// The authority's own certificates: making trust anchors (self-signed roots) and issuers
// (intermediates, path length 0), and loading either kind from PEM with the checks an
// operator-supplied file needs (a CA certificate, an EC P-256 key that matches it).
//
// Written with the project's DER writer and node:crypto (certificate.ts, as leaves are), not with
// an X.509 library. @peculiar/x509 did this until December 2026; it is kept for the tests and
// benchmarks as an independent reference (test/helpers/x509.ts), not loaded by the control plane:
// with its Reflect polyfill (reflect-metadata) and its ASN.1 schemas it cost every control plane
// about 8 MiB of memory and 100-150 ms of start-up, and made a global change to `Reflect`, for
// two certificates made on the first start and every few weeks. (No proxy ever loaded it: the
// proxy writes its CSR with src/core/der.ts. The CA's issuance rate is unchanged,
// since leaves never went through the library: see bench/ca.ts.)
import {
  createHash,
  createPrivateKey,
  generateKeyPair,
  randomBytes,
  X509Certificate,
  type KeyObject,
} from 'node:crypto';
import { promisify } from 'node:util';
import { distinguishedName, extension, randomSerial, signCertificate } from './certificate.ts';
import {
  BOOLEAN_TRUE,
  childrenOf,
  contentOf,
  DerError,
  octetString,
  oid,
  readTlv,
  seq,
  TAG,
  tlv,
  unsignedInteger,
  type Tlv,
} from './der.ts';
import type { PemPair } from './files.ts';
import { pemBlocks, toPem } from './pem.ts';

/** A CA certificate with what the authority needs from it, read once. */
export interface CaCert {
  readonly der: Buffer;
  readonly pem: string;
  readonly x509: X509Certificate;
  /** Lowercase hex SHA-256 of the DER (the metrics label and the status page's id). */
  readonly fingerprint: string;
  readonly subject: string;
  readonly notBeforeMs: number;
  readonly notAfterMs: number;
  /** The DER Name of the subject, byte for byte (leaves copy it as their issuer). */
  readonly subjectDer: Buffer;
  /** Its subject key identifier (or, without the extension, the SHA-1 of its key). */
  readonly keyId: Buffer;
}

/** A CA certificate with its private key. */
export interface CaKeyPair {
  readonly cert: CaCert;
  readonly key: KeyObject;
  readonly keyPem: string;
}

/** Reads one CA certificate (PEM); throws an Error naming `what` when it is not a usable CA. */
export function loadCaCert(pem: string, what: string): CaCert {
  const blocks = pemBlocks(pem);
  if (blocks.length !== 1) throw new Error(`${what}: expected one PEM certificate, found ${blocks.length}`);
  return caCertFromDer(blocks[0]!, what);
}

/** Every certificate of a PEM bundle (at least one), each a CA. */
export function loadBundle(pem: string, what: string): CaCert[] {
  const blocks = pemBlocks(pem);
  if (blocks.length === 0) throw new Error(`${what}: no PEM certificate found`);
  return blocks.map((der, i) => caCertFromDer(der, `${what} (certificate ${i + 1})`));
}

function caCertFromDer(der: Buffer, what: string): CaCert {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(der);
  } catch (error) {
    throw new Error(`${what}: not an X.509 certificate (${(error as Error).message})`);
  }
  if (!cert.ca) throw new Error(`${what}: not a CA certificate (basicConstraints CA is not true)`);
  const { subjectDer, keyId } = readCaFields(der, what);
  const spkiBits = cert.publicKey.export({ format: 'der', type: 'spki' }).subarray(-65);
  return {
    der,
    pem: toPem(der),
    x509: cert,
    fingerprint: createHash('sha256').update(der).digest('hex'),
    subject: cert.subject.replace(/\n/g, ', '),
    notBeforeMs: cert.validFromDate.getTime(),
    notAfterMs: cert.validToDate.getTime(),
    subjectDer,
    keyId: keyId ?? createHash('sha1').update(spkiBits).digest(),
  };
}

const SKI_OID = '2.5.29.14';
const SKI_OID_DER = oid(SKI_OID);

/**
 * The subject Name of a DER certificate, exactly as encoded, and its subject key identifier (null
 * without the extension).
 */
function readCaFields(der: Buffer, what: string): { subjectDer: Buffer; keyId: Buffer | null } {
  try {
    const cert = readTlv(der, 0);
    const tbs = readTlv(der, cert.contentStart, cert.end);
    if (cert.tag !== TAG.SEQUENCE || tbs.tag !== TAG.SEQUENCE) throw new DerError('not a certificate');
    const parts = childrenOf(der, tbs, 10);
    // version [0] is optional: subject is the 6th element with it, the 5th without.
    const subject = parts[parts[0]?.tag === 0xa0 ? 5 : 4];
    if (subject?.tag !== TAG.SEQUENCE) throw new DerError('no subject');
    const extensions = parts.find((part) => part.tag === 0xa3);
    return {
      subjectDer: Buffer.from(der.subarray(subject.start, subject.end)),
      keyId: extensions === undefined ? null : subjectKeyIdIn(der, extensions),
    };
  } catch (error) {
    throw new Error(`${what}: cannot read the subject (${(error as Error).message})`);
  }
}

/** The keyIdentifier of the SubjectKeyIdentifier extension in `[3] Extensions`, or null. */
function subjectKeyIdIn(der: Buffer, explicit: Tlv): Buffer | null {
  const list = readTlv(der, explicit.contentStart, explicit.end);
  if (list.tag !== TAG.SEQUENCE) throw new DerError('extensions: not a sequence');
  for (const ext of childrenOf(der, list, 64)) {
    const [id, ...rest] = childrenOf(der, ext, 3);
    const value = rest.at(-1);
    if (id?.tag !== TAG.OID || value?.tag !== TAG.OCTET_STRING) throw new DerError('a malformed extension');
    if (!SKI_OID_DER.equals(der.subarray(id.start, id.end))) continue;
    const keyId = readTlv(der, value.contentStart, value.end);
    if (keyId.tag !== TAG.OCTET_STRING || keyId.end !== value.end)
      throw new DerError('a malformed key identifier');
    return Buffer.from(contentOf(der, keyId));
  }
  return null;
}

/** Pairs a CA certificate with its key; throws naming `what` unless the key is P-256 and matches. */
export function loadCaKeyPair(pair: PemPair, what: string): CaKeyPair {
  const cert = loadCaCert(pair.certPem, what);
  let key: KeyObject;
  try {
    key = createPrivateKey(pair.keyPem);
  } catch (error) {
    throw new Error(`${what}: cannot read the private key (${(error as Error).message})`);
  }
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new Error(`${what}: the private key is not ECDSA P-256`);
  }
  if (!cert.x509.checkPrivateKey(key))
    throw new Error(`${what}: the private key does not match the certificate`);
  return { cert, key, keyPem: pair.keyPem };
}

const DAY_MS = 24 * 3600 * 1000;
/** Certificates start a minute in the past, for peers whose clocks run a little behind. */
export const CLOCK_SKEW_MS = 60_000;

const generateEcKeyPair = promisify(generateKeyPair);

/** A new P-256 key pair: the private key (and its PKCS#8 PEM) and the DER SubjectPublicKeyInfo. */
export async function newKeys(): Promise<{ key: KeyObject; keyPem: string; spki: Buffer }> {
  const { privateKey, publicKey } = await generateEcKeyPair('ec', { namedCurve: 'P-256' });
  return {
    key: privateKey,
    keyPem: privateKey.export({ format: 'pem', type: 'pkcs8' }) as string,
    spki: publicKey.export({ format: 'der', type: 'spki' }),
  };
}

/** A short random tag that makes each CA's subject unique (chains are built by name first). */
const tag = (): string => randomBytes(4).toString('hex');

/** `CN=<commonName>, O=Trellis`. */
const caName = (commonName: string): Buffer =>
  distinguishedName([
    ['2.5.4.3', commonName],
    ['2.5.4.10', 'Trellis'],
  ]);

/**
 * The extensions of a CA certificate: basicConstraints cA (critical; `pathLength` 0 for an issuer,
 * none for an anchor), keyUsage keyCertSign + cRLSign (critical), its subject key identifier
 * (SHA-1 of the key, RFC 5280 4.2.1.2 method 1) and, when another CA signs it, that CA's.
 */
function caExtensions(spki: Buffer, pathLength: number | null, authorityKeyId: Buffer | null): Buffer[] {
  const constraints =
    pathLength === null ? seq(BOOLEAN_TRUE) : seq(BOOLEAN_TRUE, unsignedInteger(Buffer.from([pathLength])));
  // keyCertSign is bit 5 and cRLSign bit 6 of the named bit list: 0x06, with 1 unused bit.
  const usages = Buffer.from([TAG.BIT_STRING, 0x02, 0x01, 0x06]);
  const keyId = createHash('sha1').update(spki.subarray(-65)).digest();
  return [
    extension('2.5.29.19', true, constraints),
    extension('2.5.29.15', true, usages),
    extension(SKI_OID, false, octetString(keyId)),
    ...(authorityKeyId === null ? [] : [extension('2.5.29.35', false, seq(tlv(0x80, authorityKeyId)))]),
  ];
}

/** A new self-signed trust anchor for `trustDomain`, valid `lifetimeMs` from `nowMs`. */
export async function makeAnchor(trustDomain: string, lifetimeMs: number, nowMs: number): Promise<PemPair> {
  const { key, keyPem, spki } = await newKeys();
  const name = caName(`root.${trustDomain} ${tag()}`);
  const der = signCertificate(
    {
      serial: randomSerial(),
      issuerName: name,
      notBeforeMs: nowMs - CLOCK_SKEW_MS,
      notAfterMs: nowMs + lifetimeMs,
      subjectName: name,
      spki,
      extensions: caExtensions(spki, null, null),
    },
    key,
  );
  return { certPem: toPem(der), keyPem };
}

/**
 * A new issuer signed by `anchor`, path length 0, valid `lifetimeMs` from `nowMs` but never past
 * the anchor's own expiry.
 */
export async function makeIssuer(
  anchor: CaKeyPair,
  trustDomain: string,
  lifetimeMs: number,
  nowMs: number,
): Promise<PemPair> {
  const { keyPem, spki } = await newKeys();
  const der = signCertificate(
    {
      serial: randomSerial(),
      issuerName: anchor.cert.subjectDer,
      notBeforeMs: Math.max(nowMs - CLOCK_SKEW_MS, anchor.cert.notBeforeMs),
      notAfterMs: Math.min(nowMs + lifetimeMs, anchor.cert.notAfterMs),
      subjectName: caName(`identity.${trustDomain} ${tag()}`),
      spki,
      extensions: caExtensions(spki, 0, anchor.cert.keyId),
    },
    anchor.key,
  );
  return { certPem: toPem(der), keyPem };
}

export const DEFAULT_ANCHOR_LIFETIME_MS = 3650 * DAY_MS;
export const DEFAULT_ISSUER_LIFETIME_MS = 30 * DAY_MS;
export const DEFAULT_LEAF_LIFETIME_MS = DAY_MS;
