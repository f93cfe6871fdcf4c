// The authority's own certificates: making trust anchors (self-signed roots) and issuers
// (intermediates, path length 0) with @peculiar/x509, and loading either kind from PEM with the
// checks an operator-supplied file needs (a CA certificate, an EC P-256 key that matches it).
import {
  createHash,
  createPrivateKey,
  randomBytes,
  webcrypto,
  X509Certificate,
  type KeyObject,
} from 'node:crypto';
import { childrenOf, DerError, readTlv, TAG } from './der.ts';
import type { PemPair } from './files.ts';
import { EC_P256, pemBlocks, toPem, x509 } from './x509.ts';

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
  const parsed = new x509.X509Certificate(der);
  const ski = parsed.getExtension(x509.SubjectKeyIdentifierExtension);
  const spkiBits = cert.publicKey.export({ format: 'der', type: 'spki' }).subarray(-65);
  return {
    der,
    pem: toPem(der),
    x509: cert,
    fingerprint: createHash('sha256').update(der).digest('hex'),
    subject: cert.subject.replace(/\n/g, ', '),
    notBeforeMs: cert.validFromDate.getTime(),
    notAfterMs: cert.validToDate.getTime(),
    subjectDer: subjectDerOf(der, what),
    keyId: ski ? Buffer.from(ski.keyId, 'hex') : createHash('sha1').update(spkiBits).digest(),
  };
}

/** The subject Name of a DER certificate, exactly as encoded. */
function subjectDerOf(der: Buffer, what: string): Buffer {
  try {
    const cert = readTlv(der, 0);
    const tbs = readTlv(der, cert.contentStart, cert.end);
    if (cert.tag !== TAG.SEQUENCE || tbs.tag !== TAG.SEQUENCE) throw new DerError('not a certificate');
    const parts = childrenOf(der, tbs, 10);
    // version [0] is optional: subject is the 6th element with it, the 5th without.
    const subject = parts[parts[0]?.tag === 0xa0 ? 5 : 4];
    if (subject?.tag !== TAG.SEQUENCE) throw new DerError('no subject');
    return Buffer.from(der.subarray(subject.start, subject.end));
  } catch (error) {
    throw new Error(`${what}: cannot read the subject (${(error as Error).message})`);
  }
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

async function newKeys(): Promise<{ keys: webcrypto.CryptoKeyPair; keyPem: string }> {
  const keys = (await webcrypto.subtle.generateKey(EC_P256, true, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
  return { keys, keyPem: toPem(new Uint8Array(pkcs8), 'PRIVATE KEY') };
}

/** A short random tag that makes each CA's subject unique (chains are built by name first). */
const tag = (): string => randomBytes(4).toString('hex');

/** A new self-signed trust anchor for `trustDomain`, valid `lifetimeMs` from `nowMs`. */
export async function makeAnchor(trustDomain: string, lifetimeMs: number, nowMs: number): Promise<PemPair> {
  const { keys, keyPem } = await newKeys();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=root.${trustDomain} ${tag()}, O=Trellis`,
    notBefore: new Date(nowMs - CLOCK_SKEW_MS),
    notAfter: new Date(nowMs + lifetimeMs),
    keys,
    signingAlgorithm: EC_P256,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: cert.toString('pem') + '\n', keyPem };
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
  const { keys, keyPem } = await newKeys();
  const anchorKey = await webcrypto.subtle.importKey(
    'pkcs8',
    anchor.key.export({ format: 'der', type: 'pkcs8' }),
    EC_P256,
    false,
    ['sign'],
  );
  const anchorCert = new x509.X509Certificate(anchor.cert.der);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=identity.${trustDomain} ${tag()}, O=Trellis`,
    issuer: anchorCert.subject,
    notBefore: new Date(Math.max(nowMs - CLOCK_SKEW_MS, anchor.cert.notBeforeMs)),
    notAfter: new Date(Math.min(nowMs + lifetimeMs, anchor.cert.notAfterMs)),
    publicKey: keys.publicKey,
    signingKey: anchorKey,
    signingAlgorithm: EC_P256,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      new x509.AuthorityKeyIdentifierExtension(anchor.cert.keyId.toString('hex')),
    ],
  });
  return { certPem: cert.toString('pem') + '\n', keyPem };
}

/** A positive random 128-bit serial in hex. */
function serial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x3f) | 0x40;
  return bytes.toString('hex');
}

export const DEFAULT_ANCHOR_LIFETIME_MS = 3650 * DAY_MS;
export const DEFAULT_ISSUER_LIFETIME_MS = 30 * DAY_MS;
export const DEFAULT_LEAF_LIFETIME_MS = DAY_MS;
