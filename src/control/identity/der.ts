// A small strict DER reader and writer: just what the authority's hot path needs to read a PKCS#10
// request and write a leaf certificate without a schema library (csr.ts, leaf.ts).
//
// The reader accepts DER only: single-byte tags (tag numbers below 31), definite lengths in their
// shortest form, at most 4 length bytes, and nothing past the enclosing element. Every violation
// is a DerError; it never reads outside the buffer and never throws anything else. Input comes
// from the network (a CSR), so it is property-tested in test/unit/ca-der.test.ts.

import { bitString, octetString, oid, TAG as WRITER_TAG, tlv } from '../../core/der.ts';

export class DerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DerError';
  }
}

/** One element: its tag byte and where its header and content are in the buffer. */
export interface Tlv {
  readonly tag: number;
  /** Offset of the tag byte. */
  readonly start: number;
  readonly contentStart: number;
  /** Offset just past the content. */
  readonly end: number;
}

/** The writer's universal tags and those only certificates and their reading need. */
export const TAG = {
  ...WRITER_TAG,
  NULL: 0x05,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
} as const;

/** The element at `offset`, which must end by `limit`. */
export function readTlv(buf: Uint8Array, offset: number, limit: number = buf.length): Tlv {
  if (offset + 2 > limit) throw new DerError(`truncated element at byte ${offset}`);
  const tag = buf[offset]!;
  if ((tag & 0x1f) === 0x1f) throw new DerError(`multi-byte tag at byte ${offset}`);
  let length = buf[offset + 1]!;
  let contentStart = offset + 2;
  if (length & 0x80) {
    const count = length & 0x7f;
    if (count === 0) throw new DerError(`indefinite length at byte ${offset}`);
    if (count > 4) throw new DerError(`length of ${count} bytes at byte ${offset}`);
    if (contentStart + count > limit) throw new DerError(`truncated length at byte ${offset}`);
    if (buf[contentStart] === 0) throw new DerError(`non-minimal length at byte ${offset}`);
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + buf[contentStart + i]!;
    if (length < 0x80) throw new DerError(`non-minimal length at byte ${offset}`);
    contentStart += count;
  }
  const end = contentStart + length;
  if (end > limit) throw new DerError(`element at byte ${offset} runs past its container`);
  return { tag, start: offset, contentStart, end };
}

/** The element at `offset` with tag `tag` (else a DerError naming `what`). */
export function expectTlv(buf: Uint8Array, offset: number, limit: number, tag: number, what: string): Tlv {
  const tlv = readTlv(buf, offset, limit);
  if (tlv.tag !== tag) {
    throw new DerError(`${what}: expected tag 0x${tag.toString(16)}, got 0x${tlv.tag.toString(16)}`);
  }
  return tlv;
}

/** The elements inside a constructed element, in order (at most `max`). */
export function childrenOf(buf: Uint8Array, parent: Tlv, max = 64): Tlv[] {
  const out: Tlv[] = [];
  for (let at = parent.contentStart; at < parent.end;) {
    if (out.length === max) throw new DerError(`more than ${max} elements in one container`);
    const child = readTlv(buf, at, parent.end);
    out.push(child);
    at = child.end;
  }
  return out;
}

export function contentOf(buf: Uint8Array, tlv: Tlv): Uint8Array {
  return buf.subarray(tlv.contentStart, tlv.end);
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}

// ---- writing ----

// The writer is the proxy's (one DER encoder in the project); the certificate parts are below.
export { bitString, octetString, oid, tlv };

export const seq = (...parts: Uint8Array[]): Buffer => tlv(TAG.SEQUENCE, ...parts);

/** A non-negative INTEGER from its big-endian magnitude (a 0x00 is added when the top bit is set). */
export function unsignedInteger(magnitude: Uint8Array): Buffer {
  let i = 0;
  while (i < magnitude.length - 1 && magnitude[i] === 0) i++;
  const trimmed = magnitude.subarray(i);
  return trimmed[0]! & 0x80 ? tlv(TAG.INTEGER, Buffer.from([0]), trimmed) : tlv(TAG.INTEGER, trimmed);
}

export const BOOLEAN_TRUE = Buffer.from([TAG.BOOLEAN, 1, 0xff]);

/** A certificate time: UTCTime through 2049, GeneralizedTime after (RFC 5280 4.1.2.5); whole seconds. */
export function certificateTime(ms: number): Buffer {
  const iso = new Date(Math.floor(ms / 1000) * 1000).toISOString(); // 2024-01-02T03:04:05.000Z
  const digits = iso.slice(0, 19).replace(/[-T:]/g, ''); // 20240102030405
  const year = Number(digits.slice(0, 4));
  if (year >= 1950 && year < 2050) return tlv(TAG.UTC_TIME, Buffer.from(`${digits.slice(2)}Z`, 'ascii'));
  return tlv(TAG.GENERALIZED_TIME, Buffer.from(`${digits}Z`, 'ascii'));
}
