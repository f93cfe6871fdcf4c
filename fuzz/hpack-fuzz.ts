// An HPACK encoder (RFC 7541) that uses every representation, unlike the proxy's (which sends only
// raw literals): static and dynamic indexed fields, literals with incremental indexing (it keeps a
// copy of the peer's dynamic table, so later blocks can name earlier fields by index), without
// indexing and never indexed, raw or Huffman strings, and table size updates; and, when asked,
// broken ones (index 0 or past the table, integers that overflow, bad Huffman padding, lengths
// past the end, a size update after a field or above the limit).
import { STATIC_NAMES, STATIC_TABLE_LENGTH, STATIC_VALUES } from '../src/proxy/h2/hpack-tables.ts';
import { huffmanEncode, huffmanEncodedLength } from '../src/proxy/h2/huffman.ts';
import type { Rng } from './rng.ts';

const ENTRY_OVERHEAD = 32;
export const DEFAULT_TABLE_SIZE = 4096;

function integer(value: number, prefixBits: number, pattern: number): number[] {
  const mask = (1 << prefixBits) - 1;
  if (value < mask) return [pattern | value];
  const out = [pattern | mask];
  let rest = value - mask;
  while (rest >= 128) {
    out.push((rest & 0x7f) | 0x80);
    rest = Math.floor(rest / 128);
  }
  out.push(rest);
  return out;
}

function stringLiteral(s: string, huffman: boolean): Buffer {
  const raw = Buffer.from(s, 'latin1');
  if (!huffman) return Buffer.concat([Buffer.from(integer(raw.length, 7, 0x00)), raw]);
  const out = Buffer.alloc(huffmanEncodedLength(raw));
  huffmanEncode(raw, out, 0);
  return Buffer.concat([Buffer.from(integer(out.length, 7, 0x80)), out]);
}

/** Static-table indexes of exact (name, value) pairs and of names. */
const STATIC_PAIR = new Map<string, number>();
const STATIC_NAME = new Map<string, number>();
for (let i = STATIC_TABLE_LENGTH; i >= 1; i--) {
  STATIC_PAIR.set(`${STATIC_NAMES[i]}\x00${STATIC_VALUES[i]}`, i);
  STATIC_NAME.set(STATIC_NAMES[i]!, i);
}

export class FuzzHpackEncoder {
  /** The peer decoder's dynamic table as we believe it is, newest first. */
  private table: [string, string][] = [];
  private size = 0;
  private capacity = DEFAULT_TABLE_SIZE;

  /** Encodes one header block; `broken` adds one invalid representation somewhere. */
  encode(rng: Rng, fields: readonly (readonly [string, string])[], broken = false): Buffer {
    const parts: Buffer[] = [];
    if (rng.chance(0.05)) {
      const size = rng.pick([0, 256, 1024, DEFAULT_TABLE_SIZE]);
      parts.push(Buffer.from(integer(size, 5, 0x20)));
      this.capacity = size;
      this.evictTo(size);
    }
    for (const [name, value] of fields) parts.push(this.field(rng, name, value));
    if (broken) parts.splice(rng.int(parts.length + 1), 0, brokenRepresentation(rng, this.table.length));
    return Buffer.concat(parts);
  }

  private field(rng: Rng, name: string, value: string): Buffer {
    const pair = STATIC_PAIR.get(`${name}\x00${value}`);
    if (pair !== undefined && rng.chance(0.8)) return Buffer.from(integer(pair, 7, 0x80));
    const dyn = this.table.findIndex(([n, v]) => n === name && v === value);
    if (dyn !== -1 && rng.chance(0.8)) return Buffer.from(integer(STATIC_TABLE_LENGTH + 1 + dyn, 7, 0x80));
    const kind = rng.weighted([
      [4, 'incremental'],
      [4, 'without'],
      [1, 'never'],
    ]);
    const [prefixBits, pattern] =
      kind === 'incremental' ? [6, 0x40] : kind === 'never' ? [4, 0x10] : [4, 0x00];
    const nameIndex = this.nameIndex(name);
    const huffman = rng.chance(0.4);
    const head =
      nameIndex !== 0 && rng.chance(0.8)
        ? Buffer.from(integer(nameIndex, prefixBits, pattern))
        : Buffer.concat([Buffer.from(integer(0, prefixBits, pattern)), stringLiteral(name, rng.chance(0.4))]);
    if (kind === 'incremental') this.insert(name, value);
    return Buffer.concat([head, stringLiteral(value, huffman)]);
  }

  private nameIndex(name: string): number {
    const s = STATIC_NAME.get(name);
    if (s !== undefined) return s;
    const d = this.table.findIndex(([n]) => n === name);
    return d === -1 ? 0 : STATIC_TABLE_LENGTH + 1 + d;
  }

  private insert(name: string, value: string): void {
    const entry = name.length + value.length + ENTRY_OVERHEAD;
    if (entry > this.capacity) {
      this.evictTo(0);
      return;
    }
    this.evictTo(this.capacity - entry);
    this.table.unshift([name, value]);
    this.size += entry;
  }

  private evictTo(limit: number): void {
    while (this.size > limit && this.table.length > 0) {
      const [n, v] = this.table.pop()!;
      this.size -= n.length + v.length + ENTRY_OVERHEAD;
    }
  }
}

function brokenRepresentation(rng: Rng, dynamicEntries: number): Buffer {
  switch (rng.int(8)) {
    case 0:
      return Buffer.from([0x80]); // indexed field 0
    case 1:
      return Buffer.from(integer(STATIC_TABLE_LENGTH + dynamicEntries + 1 + rng.int(100), 7, 0x80));
    case 2:
      return Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]); // integer overflow
    case 3:
      return Buffer.from([0x00, 0x83, 0xff, 0xff, 0xff, 0x01, 0x61]); // Huffman: EOS / bad padding
    case 4:
      return Buffer.from([0x00, 0x7f, 0x80, 0x01, 0x61]); // a string longer than the block
    case 5:
      return Buffer.from(integer(DEFAULT_TABLE_SIZE + 1 + rng.int(1 << 20), 5, 0x20)); // size update too big
    case 6:
      return Buffer.from([0x20]); // a size update (valid alone, invalid after a field)
    default:
      return Buffer.from([0x40, 0x81]); // truncated literal
  }
}
