// A minimal DER (ASN.1 Distinguished Encoding Rules) encoder: just the few types a PKCS#10
// certificate signing request needs (SEQUENCE, SET, INTEGER, OBJECT IDENTIFIER, BOOLEAN,
// OCTET STRING, BIT STRING, context-specific tags).
//
// Why hand-written: the proxy's memory budget is 60 MB, and an X.509 library (@peculiar/x509 and
// its asn1js/asn1-schema machinery) would be loaded into every proxy just to build one small
// structure once a day; the proxy only *writes* a fixed shape, which needs about a hundred lines.
// (The control plane does without the library too: see src/control/identity/ca-certs.ts.)
//
// It lives in src/core because both sides write DER with it: the proxy's CSR
// (src/proxy/identity/csr.ts) and the control plane's certificate writer
// (src/control/identity/der.ts), whose reader of untrusted CSRs lives there. Everything here
// builds Buffers; nothing parses. DER rules that matter for us: lengths use the
// short form below 128 and otherwise the minimal long form; an INTEGER has no redundant leading
// byte; SET OF elements are sorted (we only ever write sets of one element).
import { TrellisError } from './errors.ts';

/** Universal tags (X.680), and the helpers that build context-specific ones. */
export const TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  OID: 0x06,
  IA5_STRING: 0x16,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

/** A context-specific tag [n], constructed (`[n] IMPLICIT SET OF ...`, `[n] EXPLICIT ...`). */
export function contextConstructed(n: number): number {
  return 0xa0 | checkTagNumber(n);
}

/** A context-specific tag [n], primitive (`[6] IMPLICIT IA5String` in GeneralName, ...). */
export function contextPrimitive(n: number): number {
  return 0x80 | checkTagNumber(n);
}

function checkTagNumber(n: number): number {
  // Tag numbers above 30 need the multi-byte form, which nothing we write uses.
  if (!Number.isInteger(n) || n < 0 || n > 30) throw new RangeError(`DER: tag number ${n} out of 0..30`);
  return n;
}

/** The DER length octets for a content of `length` bytes. */
export function encodeLength(length: number): Buffer {
  if (!Number.isSafeInteger(length) || length < 0) throw new RangeError(`DER: bad length ${length}`);
  if (length < 0x80) return Buffer.from([length]);
  const bytes: number[] = [];
  // Division rather than bit shifts: a shift would truncate lengths above 2^31.
  for (let n = length; n > 0; n = Math.floor(n / 256)) bytes.unshift(n % 256);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

/** One TLV: a tag byte, the length, then the contents (concatenated; one copy). */
export function tlv(tag: number, ...contents: Uint8Array[]): Buffer {
  let size = 0;
  for (const c of contents) size += c.length;
  return Buffer.concat([Buffer.from([tag]), encodeLength(size), ...contents]);
}

export const sequence = (...items: Buffer[]): Buffer => tlv(TAG.SEQUENCE, ...items);

/** A SET OF with its elements in DER order (sorted by their encodings, X.690 11.6). */
export function setOf(...items: Buffer[]): Buffer {
  return tlv(TAG.SET, ...[...items].sort(Buffer.compare));
}

export const octetString = (bytes: Uint8Array): Buffer => tlv(TAG.OCTET_STRING, bytes);

/** A BIT STRING of whole bytes (no unused bits: the leading octet is 0). */
export const bitString = (bytes: Uint8Array): Buffer => tlv(TAG.BIT_STRING, Buffer.from([0]), bytes);

export const boolean = (value: boolean): Buffer => tlv(TAG.BOOLEAN, Buffer.from([value ? 0xff : 0x00]));

/** A non-negative INTEGER (small: versions and the like). */
export function integer(value: number): Buffer {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`DER: bad integer ${value}`);
  const bytes: number[] = [];
  for (let n = value; n > 0; n = Math.floor(n / 256)) bytes.unshift(n % 256);
  // Two's complement: a leading byte with the high bit set needs a 0x00 in front; zero is one 0x00.
  if (bytes.length === 0 || (bytes[0] as number) >= 0x80) bytes.unshift(0);
  return tlv(TAG.INTEGER, Buffer.from(bytes));
}

/** An OBJECT IDENTIFIER from its dotted form ("1.2.840.10045.4.3.2"). */
export function oid(dotted: string): Buffer {
  if (!/^[0-2](\.(0|[1-9][0-9]*))+$/.test(dotted)) {
    throw new TrellisError('TRELLIS_ERR_DER', `DER: "${dotted}" is not a dotted object identifier`);
  }
  const arcs = dotted.split('.').map(Number);
  const [first, second, ...rest] = arcs as [number, number, ...number[]];
  if (first < 2 && second > 39) throw new TrellisError('TRELLIS_ERR_DER', `DER: bad OID ${dotted}`);
  const out: number[] = [];
  for (const arc of [first * 40 + second, ...rest]) {
    if (!Number.isSafeInteger(arc))
      throw new TrellisError('TRELLIS_ERR_DER', `DER: OID arc too big in ${dotted}`);
    // Base 128, most significant group first, the high bit set on every byte but the last.
    const groups: number[] = [arc % 128];
    for (let n = Math.floor(arc / 128); n > 0; n = Math.floor(n / 128)) groups.unshift(0x80 | (n % 128));
    out.push(...groups);
  }
  return tlv(TAG.OID, Buffer.from(out));
}
