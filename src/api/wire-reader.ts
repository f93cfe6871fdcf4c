// Protobuf wire format, reading: the half of src/api/wire.ts that decodes. Defensive, since
// the bytes come from the network: every read is bounded by the end of the enclosing message, a
// varint may be at most 10 bytes, and malformed input (truncated, invalid wire type, a length
// past the end) throws a WireError naming what was wrong; nothing else is thrown, and every loop
// advances, so decoding cannot hang.

/** Malformed protobuf bytes. */
export class WireError extends Error {
  override name = 'WireError';
}

export const VARINT = 0;
export const FIXED64 = 1;
export const LENGTH_DELIMITED = 2;
export const FIXED32 = 5;

const TWO_32 = 4294967296;

/** Reads one message (and the messages nested in it) from a buffer. */
export class Reader {
  readonly buf: Uint8Array;
  pos = 0;
  /** The end of the message being read: the buffer's end, or a nested message's. */
  end: number;

  constructor(buf: Uint8Array) {
    this.buf = buf;
    this.end = buf.length;
  }

  #need(n: number, what: string): void {
    if (this.pos + n > this.end) throw new WireError(`truncated ${what} at byte ${this.pos}`);
  }

  /** A varint as its low and high 32 bits (both unsigned). */
  varint64(): [number, number] {
    let lo = 0;
    let hi = 0;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new WireError(`truncated varint at byte ${this.pos}`);
      const b = this.buf[this.pos++]!;
      if (i < 4) lo |= (b & 0x7f) << (7 * i);
      else if (i === 4) {
        lo |= (b & 0x0f) << 28;
        hi |= (b & 0x7f) >> 4;
      } else hi |= (b & 0x7f) << (7 * i - 32);
      if (b < 0x80) return [lo >>> 0, hi >>> 0];
    }
    throw new WireError(`varint longer than 10 bytes before byte ${this.pos}`);
  }

  /** A varint's low 32 bits, unsigned (uint32, and tags and lengths). */
  uint32(): number {
    // Fast path for the common one-byte case.
    if (this.pos < this.end && this.buf[this.pos]! < 0x80) return this.buf[this.pos++]!;
    return this.varint64()[0];
  }

  int32(): number {
    return this.uint32() | 0;
  }

  sint32(): number {
    const n = this.uint32();
    return (n >>> 1) ^ -(n & 1);
  }

  bool(): boolean {
    const [lo, hi] = this.varint64();
    return lo !== 0 || hi !== 0;
  }

  uint64(): number {
    const [lo, hi] = this.varint64();
    return toNumber(lo, hi, true);
  }

  int64(): number {
    const [lo, hi] = this.varint64();
    return toNumber(lo, hi, false);
  }

  sint64(): number {
    const [lo, hi] = this.varint64();
    // Zigzag: (n >>> 1) ^ -(n & 1) over 64 bits.
    const mask = -(lo & 1);
    const zlo = (((lo >>> 1) | (hi << 31)) ^ mask) >>> 0;
    const zhi = ((hi >>> 1) ^ mask) >>> 0;
    return toNumber(zlo, zhi, false);
  }

  #fixed32(): number {
    this.#need(4, 'fixed32');
    const b = this.buf;
    const p = this.pos;
    this.pos += 4;
    return (b[p]! | (b[p + 1]! << 8) | (b[p + 2]! << 16) | (b[p + 3]! << 24)) >>> 0;
  }

  fixed32(): number {
    return this.#fixed32();
  }

  sfixed32(): number {
    return this.#fixed32() | 0;
  }

  fixed64(): number {
    const lo = this.#fixed32();
    return toNumber(lo, this.#fixed32(), true);
  }

  sfixed64(): number {
    const lo = this.#fixed32();
    return toNumber(lo, this.#fixed32(), false);
  }

  float(): number {
    this.#need(4, 'float');
    const v = new DataView(this.buf.buffer, this.buf.byteOffset + this.pos, 4).getFloat32(0, true);
    this.pos += 4;
    return v;
  }

  double(): number {
    this.#need(8, 'double');
    const v = new DataView(this.buf.buffer, this.buf.byteOffset + this.pos, 8).getFloat64(0, true);
    this.pos += 8;
    return v;
  }

  /** A length prefix, checked against what is left of the enclosing message. */
  length(): number {
    const len = this.uint32();
    if (len > this.end - this.pos) {
      throw new WireError(
        `length ${len} at byte ${this.pos} runs past the end (${this.end - this.pos} left)`,
      );
    }
    return len;
  }

  /** Bytes fields are copied: the decoded message must not pin (or see reuse of) the frame. */
  bytes(): Buffer {
    const len = this.length();
    const out = Buffer.from(this.buf.subarray(this.pos, this.pos + len));
    this.pos += len;
    return out;
  }

  string(): string {
    const len = this.length();
    const b = this.buf;
    const s = Buffer.from(b.buffer, b.byteOffset + this.pos, len).toString('utf8');
    this.pos += len;
    return s;
  }

  /** Reads a length-delimited nested message with `read`, bounded by its length. */
  message<T>(read: (r: Reader) => T): T {
    const len = this.length();
    const outer = this.end;
    this.end = this.pos + len;
    const value = read(this);
    this.pos = this.end;
    this.end = outer;
    return value;
  }

  /** Runs `each` over a packed run of scalars (or once, for an unpacked element). */
  repeated(wireType: number, each: () => void): void {
    if (wireType !== LENGTH_DELIMITED) return each();
    const len = this.length();
    const outer = this.end;
    this.end = this.pos + len;
    while (this.pos < this.end) each();
    this.end = outer;
  }

  /**
   * Skips a field this codec does not know (or whose wire type does not match its schema, as
   * protobuf's own libraries do). Groups (wire types 3 and 4, proto2 only) are refused rather
   * than skipped: skipping them needs nesting, which hostile input could make arbitrarily deep.
   */
  skip(wireType: number): void {
    switch (wireType) {
      case VARINT:
        this.varint64();
        return;
      case FIXED64:
        this.#need(8, 'fixed64 field');
        this.pos += 8;
        return;
      case LENGTH_DELIMITED: {
        // Not `this.pos += this.length()`: that reads pos before length() moves it past the prefix.
        const len = this.length();
        this.pos += len;
        return;
      }
      case FIXED32:
        this.#need(4, 'fixed32 field');
        this.pos += 4;
        return;
      default:
        throw new WireError(`invalid wire type ${wireType} before byte ${this.pos}`);
    }
  }

  /** A field's tag; field number 0 is invalid. */
  tag(): number {
    const tag = this.uint32();
    if (tag >>> 3 === 0) throw new WireError(`invalid field number 0 before byte ${this.pos}`);
    return tag;
  }
}

/** As protobufjs's LongBits.toNumber, so both decoders round values beyond 2^53 alike. */
function toNumber(lo: number, hi: number, unsigned: boolean): number {
  if (!unsigned && hi >>> 31) {
    let nlo = (~lo + 1) >>> 0;
    let nhi = ~hi >>> 0;
    if (nlo === 0) nhi = (nhi + 1) >>> 0;
    nlo = nlo >>> 0;
    return -(nlo + nhi * TWO_32);
  }
  return lo + hi * TWO_32;
}

/** An enum number as proto-loader gives it with `enums: String`: its name, or the number if unknown. */
export function enumName(n: number, names: Readonly<Record<number, string>>): string | number {
  return Object.hasOwn(names, n) ? names[n]! : n;
}

/** Sets a map entry; a "__proto__" key stays an ordinary own entry instead of changing the prototype. */
export function setEntry<V>(map: Record<string, V>, key: string, value: V): void {
  if (key === '__proto__') {
    Object.defineProperty(map, key, { value, enumerable: true, writable: true, configurable: true });
  } else map[key] = value;
}
