// HPACK (RFC 7541), the header compression of the project's own HTTP/2 codec on the mesh hop.
//
// The decoder is complete, because the peer may be node:http2 (nghttp2), which uses the dynamic
// table and Huffman coding: every representation, table size updates, eviction (4.4), and strict
// rejection of malformed input as HpackError (COMPRESSION_ERROR, the connection is torn down).
//
// The encoder (hpack-encoder.ts, re-exported here) is deliberately minimal.

import { TrellisError } from '../../core/errors.ts';
import { STATIC_NAMES, STATIC_TABLE_LENGTH, STATIC_VALUES } from './hpack-tables.ts';
import { HUFFMAN_ERR_EOS, huffmanDecode, huffmanMaxDecodedLength } from './huffman.ts';

/** Thrown for any malformed header block (COMPRESSION_ERROR in HTTP/2 terms). */
export class HpackError extends TrellisError {
  constructor(message: string) {
    super('TRELLIS_ERR_HPACK', message);
    this.name = 'HpackError';
  }
}

/** The decoded header list went over the decoder's limit (a limit, not a coding error). */
export class HpackListSizeError extends HpackError {
  constructor(message: string) {
    super(message);
    this.name = 'HpackListSizeError';
  }
}

/** RFC 9113's initial SETTINGS_HEADER_TABLE_SIZE. */
export const DEFAULT_HEADER_TABLE_SIZE = 4096;
/** The decoder's header list limit when none is given (name + value + 32 per field). */
export const DEFAULT_MAX_HEADER_LIST_SIZE = 64 * 1024;

const ENTRY_OVERHEAD = 32; // per field, in table sizes (4.1) and header list sizes (RFC 9113 6.5.2)
const MAX_INTEGER = 0x7fff_ffff; // no size or index we accept comes close; bigger is an attack
const MAX_CONTINUATION_BYTES = 5; // 5 x 7 bits already exceed 2^31 with any prefix
const EMPTY = Buffer.alloc(0);

function checkSize(field: string, value: number): number {
  if (!Number.isInteger(value) || value < 0 || value > MAX_INTEGER) {
    throw new RangeError(`${field} must be an integer from 0 to ${MAX_INTEGER}, got ${value}`);
  }
  return value;
}

export class HpackDecoder {
  private readonly maxTableSize: number;
  private readonly maxListSize: number;
  /** The dynamic table's current maximum size: maxTableSize until the peer sends an update. */
  private capacity: number;
  /** The dynamic table's size in RFC 7541 terms (sum of name + value + 32). */
  private size = 0;
  // The dynamic table, oldest entry first from `oldest`: inserts push at the end and eviction
  // advances `oldest`, so neither moves the other entries; the arrays are compacted now and then.
  private names: string[] = [];
  private values: string[] = [];
  private oldest = 0;
  // The block being decoded and the read position in it (instance fields, so that the readers
  // can return a value and advance the position without allocating).
  private buf: Buffer = EMPTY;
  private pos = 0;
  /** Scratch output of the Huffman decoder, grown on demand, reused across strings. */
  private huffmanOut: Buffer = Buffer.allocUnsafe(256);
  /** The last decoded block's header list size (name + value + 32 per field). */
  lastListSize = 0;

  /**
   * maxTableSize: the SETTINGS_HEADER_TABLE_SIZE we announced; the table starts at that size (as in
   * Appendix C.5), so announce less than 4096 only if the peer cannot encode before seeing it.
   * maxListSize: the decoded list's limit, in RFC 9113 sizes (name + value + 32 per field).
   */
  constructor(maxTableSize = DEFAULT_HEADER_TABLE_SIZE, maxListSize = DEFAULT_MAX_HEADER_LIST_SIZE) {
    this.maxTableSize = checkSize('maxTableSize', maxTableSize);
    this.maxListSize = checkSize('maxListSize', maxListSize);
    this.capacity = maxTableSize;
  }

  /**
   * Decodes one complete header block into [name0, value0, name1, value1, ...] (latin1 strings,
   * in order). The dynamic table persists across calls; after an HpackError the decoder is dead.
   */
  decode(block: Buffer): string[] {
    const fields: string[] = [];
    const end = block.length;
    this.buf = block;
    this.pos = 0;
    let listSize = 0;
    while (this.pos < end) {
      const first = block[this.pos]!;
      let name: string;
      let value: string;
      if (first & 0x80) {
        // Indexed field (6.1).
        const index = this.readInteger(7);
        if (index <= STATIC_TABLE_LENGTH) {
          if (index === 0) throw new HpackError('indexed field with index 0');
          name = STATIC_NAMES[index]!;
          value = STATIC_VALUES[index]!;
        } else {
          const slot = this.dynamicSlot(index);
          name = this.names[slot]!;
          value = this.values[slot]!;
        }
      } else if (first & 0x40) {
        // Literal with incremental indexing (6.2.1): the field is then inserted into the table.
        name = this.readName(6);
        value = this.readString();
        this.insert(name, value);
      } else if (first & 0x20) {
        // Dynamic table size update (6.3): only before the block's first field (4.2).
        if (fields.length > 0) throw new HpackError('dynamic table size update after a header field');
        const size = this.readInteger(5);
        if (size > this.maxTableSize) {
          throw new HpackError(
            `dynamic table size update to ${size} exceeds the maximum ${this.maxTableSize}`,
          );
        }
        this.capacity = size;
        this.evictTo(size);
        continue;
      } else {
        // Literal without indexing (0000) or never indexed (0001) (6.2.2, 6.2.3): not inserted.
        name = this.readName(4);
        value = this.readString();
      }
      listSize += name.length + value.length + ENTRY_OVERHEAD;
      // RFC 9113 6.5.2 sizes: name + value + 32 per field.
      if (listSize > this.maxListSize)
        throw new HpackListSizeError(`header list size over ${this.maxListSize} bytes`);
      fields.push(name, value);
    }
    this.buf = EMPTY; // do not keep the caller's buffer alive
    this.lastListSize = listSize;
    return fields;
  }

  /** Entries in the dynamic table (for tests and diagnostics). */
  get tableLength(): number {
    return this.names.length - this.oldest;
  }

  /** The dynamic table's size in RFC 7541 terms (for tests and diagnostics). */
  get tableSize(): number {
    return this.size;
  }

  /** An integer with an N-bit prefix (5.1); the prefix byte is at this.pos. */
  private readInteger(prefixBits: number): number {
    const buf = this.buf;
    let pos = this.pos;
    const mask = (1 << prefixBits) - 1;
    let value = buf[pos++]! & mask;
    if (value < mask) {
      this.pos = pos;
      return value;
    }
    let scale = 1;
    for (let i = 0; i < MAX_CONTINUATION_BYTES; i++) {
      if (pos >= buf.length) throw new HpackError('header block ends inside an integer');
      const b = buf[pos++]!;
      value += (b & 0x7f) * scale;
      if (value > MAX_INTEGER) throw new HpackError(`integer in header block exceeds ${MAX_INTEGER}`);
      if ((b & 0x80) === 0) {
        this.pos = pos;
        return value;
      }
      scale *= 128;
    }
    throw new HpackError(`integer in header block longer than ${MAX_CONTINUATION_BYTES} continuation bytes`);
  }

  /** A literal field's name: an index with an N-bit prefix, or 0 and a string literal. */
  private readName(prefixBits: number): string {
    const index = this.readInteger(prefixBits);
    if (index === 0) return this.readString();
    if (index <= STATIC_TABLE_LENGTH) return STATIC_NAMES[index]!;
    return this.names[this.dynamicSlot(index)]!;
  }

  /** A string literal (5.2): H flag, 7-bit-prefix length, raw or Huffman-coded octets. */
  private readString(): string {
    const buf = this.buf;
    if (this.pos >= buf.length) throw new HpackError('header block ends where a string literal should start');
    const huffman = (buf[this.pos]! & 0x80) !== 0;
    const length = this.readInteger(7);
    const start = this.pos;
    const end = start + length;
    if (end > buf.length) {
      throw new HpackError(`string literal of ${length} bytes runs past the end of the header block`);
    }
    this.pos = end;
    if (!huffman) return buf.latin1Slice(start, end);
    const need = huffmanMaxDecodedLength(length);
    if (this.huffmanOut.length < need)
      this.huffmanOut = Buffer.allocUnsafe(Math.max(need, 2 * this.huffmanOut.length));
    const n = huffmanDecode(buf, start, end, this.huffmanOut);
    if (n === HUFFMAN_ERR_EOS) throw new HpackError('Huffman-coded string contains the EOS symbol');
    if (n < 0) throw new HpackError('Huffman-coded string padding is longer than 7 bits or not all ones');
    return this.huffmanOut.latin1Slice(0, n);
  }

  /** The array slot of dynamic index `index` (62 is the newest entry). */
  private dynamicSlot(index: number): number {
    const fromNewest = index - STATIC_TABLE_LENGTH - 1;
    const count = this.names.length - this.oldest;
    if (fromNewest >= count) {
      throw new HpackError(`header index ${index} out of range (61 static + ${count} dynamic entries)`);
    }
    return this.names.length - 1 - fromNewest;
  }

  /** Inserts a field as the newest entry, evicting the oldest ones to make room (4.4). */
  private insert(name: string, value: string): void {
    const entrySize = name.length + value.length + ENTRY_OVERHEAD;
    if (entrySize > this.capacity) {
      // An entry larger than the whole table empties it and is not inserted (4.4).
      this.evictTo(0);
      return;
    }
    this.evictTo(this.capacity - entrySize);
    this.names.push(name);
    this.values.push(value);
    this.size += entrySize;
  }

  /** Evicts the oldest entries until the table's size is at most `limit`. */
  private evictTo(limit: number): void {
    const names = this.names;
    const values = this.values;
    while (this.size > limit) {
      const i = this.oldest++;
      this.size -= names[i]!.length + values[i]!.length + ENTRY_OVERHEAD;
      names[i] = values[i] = ''; // release the strings now rather than at compaction
    }
    // Compact once the evicted prefix is at least half the arrays: amortised O(1) per entry.
    if (this.oldest >= 32 && this.oldest * 2 >= names.length) {
      this.names = names.slice(this.oldest);
      this.values = values.slice(this.oldest);
      this.oldest = 0;
    }
  }
}

export { HpackEncoder } from './hpack-encoder.ts';
