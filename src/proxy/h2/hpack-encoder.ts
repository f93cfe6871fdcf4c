// The HPACK encoder (RFC 7541) of the project's own HTTP/2 on the mesh hop, deliberately minimal,
// chosen for CPU rather than bytes (both ends sit on a fast local link): exact static-table
// matches become one indexed byte, everything else is a literal without indexing, raw (no
// Huffman), with the static name index when there is one. It never inserts into the peer's dynamic
// table, so it keeps no table state (but see peerHeaderTableSizeChanged). A block is sized first,
// then written into one allocation. The decoder is in hpack.ts.

import { STATIC_BY_NAME } from './hpack-tables.ts';

/** Buffer.latin1Write exists since Node 0.x but @types/node does not declare it. */
type Latin1Writable = Buffer & { latin1Write(value: string, offset: number): number };

// Below this many characters a JavaScript copy loop beats the call into C++ of latin1Write.
const SHORT_STRING = 16;

/** Bytes taken by `value` as an integer with an N-bit prefix (5.1). */
function integerLength(value: number, prefixBits: number): number {
  const mask = (1 << prefixBits) - 1;
  if (value < mask) return 1;
  let rest = value - mask;
  let n = 2;
  while (rest >= 128) {
    rest >>>= 7;
    n++;
  }
  return n;
}

function writeInteger(buf: Buffer, pos: number, value: number, prefixBits: number, pattern: number): number {
  const mask = (1 << prefixBits) - 1;
  if (value < mask) {
    buf[pos] = pattern | value;
    return pos + 1;
  }
  buf[pos++] = pattern | mask;
  let rest = value - mask;
  while (rest >= 128) {
    buf[pos++] = (rest & 0x7f) | 0x80;
    rest >>>= 7;
  }
  buf[pos] = rest;
  return pos + 1;
}

/** A raw (not Huffman-coded) string literal: H = 0, length, latin1 bytes. */
function writeString(buf: Buffer, pos: number, s: string): number {
  const length = s.length;
  pos = writeInteger(buf, pos, length, 7, 0x00);
  if (length < SHORT_STRING) {
    for (let i = 0; i < length; i++) buf[pos + i] = s.charCodeAt(i);
  } else {
    (buf as Latin1Writable).latin1Write(s, pos);
  }
  return pos + length;
}

export class HpackEncoder {
  private sizeUpdatePending = false;
  // Per field of the block being encoded, what sizing decided: > 0 an indexed field (the index),
  // < 0 a literal with the static name -index, 0 a literal with a literal name.
  private plan = new Int32Array(64);

  /**
   * Call when a SETTINGS frame from the peer carries SETTINGS_HEADER_TABLE_SIZE (and ACK it before
   * the next block): the next block then starts with a dynamic table size update to 0. This
   * encoder never uses the table, so 0 is always right, but nghttp2 (node:http2) rejects the next
   * block with COMPRESSION_ERROR unless it starts with an update once it announced less than 4096.
   */
  peerHeaderTableSizeChanged(): void {
    this.sizeUpdatePending = true;
  }

  /** Encodes fields ([name, value, ...], names lowercase) as one header block. */
  encode(fields: readonly string[]): Buffer {
    if (fields.length % 2 !== 0) {
      throw new TypeError(`fields must be [name, value, ...] pairs, got an odd length ${fields.length}`);
    }
    const count = fields.length >>> 1;
    if (this.plan.length < count) this.plan = new Int32Array(Math.max(count, 2 * this.plan.length));
    const plan = this.plan;
    const sizeUpdate = this.sizeUpdatePending;
    this.sizeUpdatePending = false;
    let size = sizeUpdate ? 1 : 0;
    for (let f = 0; f < count; f++) {
      const name = fields[2 * f]!;
      const value = fields[2 * f + 1]!;
      const known = STATIC_BY_NAME.get(name);
      if (known === undefined) {
        plan[f] = 0;
        size += 1 + integerLength(name.length, 7) + name.length;
      } else {
        const index = known.byValue.get(value);
        if (index !== undefined) {
          plan[f] = index;
          size += integerLength(index, 7);
          continue;
        }
        plan[f] = -known.nameIndex;
        size += integerLength(known.nameIndex, 4);
      }
      size += integerLength(value.length, 7) + value.length;
    }

    const buf = Buffer.allocUnsafe(size);
    let pos = 0;
    if (sizeUpdate) buf[pos++] = 0x20; // dynamic table size update (6.3) to 0
    for (let f = 0; f < count; f++) {
      const step = plan[f]!;
      if (step > 0) {
        pos = writeInteger(buf, pos, step, 7, 0x80);
        continue;
      }
      if (step < 0) {
        pos = writeInteger(buf, pos, -step, 4, 0x00);
      } else {
        buf[pos++] = 0x00; // literal without indexing, literal name
        pos = writeString(buf, pos, fields[2 * f]!);
      }
      pos = writeString(buf, pos, fields[2 * f + 1]!);
    }
    return buf;
  }
}
