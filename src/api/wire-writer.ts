// Protobuf wire format, writing: the half of src/api/wire.ts that encodes, into one growing
// buffer (nested messages get their length prefix patched in afterwards, no second pass).
import { FIXED32, FIXED64, LENGTH_DELIMITED, VARINT } from './wire-reader.ts';

/** A 64-bit input as proto-loader accepts it: a number, a decimal string or a Long-like. */
export type Int64Input = number | string | { low: number; high: number; unsigned?: boolean };

function toBigInt(value: Int64Input, field: string): bigint {
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new Error(`${field}: ${value} is not a 64-bit integer`);
    return BigInt(Math.trunc(value));
  }
  if (typeof value === 'string') {
    if (!/^\s*[-+]?\d+\s*$/.test(value)) throw new Error(`${field}: "${value}" is not a 64-bit integer`);
    return BigInt(value.trim());
  }
  if (typeof value === 'object' && value !== null && 'low' in value && 'high' in value) {
    return (BigInt(value.high >>> 0) << 32n) | BigInt(value.low >>> 0);
  }
  throw new Error(`${field}: expected a number, a decimal string or a Long`);
}

/** Builds one message's bytes in a growing buffer. */
export class Writer {
  buf: Buffer;
  pos = 0;

  /** `capacity`: the bytes to start with (the buffer doubles when they do not suffice). */
  constructor(capacity = 64) {
    this.buf = Buffer.allocUnsafe(capacity);
  }

  #ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  /** An unsigned varint of up to 32 bits. */
  varint32(n: number): void {
    this.#ensure(5);
    n >>>= 0;
    while (n > 0x7f) {
      this.buf[this.pos++] = (n & 0x7f) | 0x80;
      n >>>= 7;
    }
    this.buf[this.pos++] = n;
  }

  /** A varint of the low 64 bits of `n` (negative int32/int64 take all 10 bytes). */
  varint64(n: bigint): void {
    this.#ensure(10);
    let v = BigInt.asUintN(64, n);
    while (v > 0x7fn) {
      this.buf[this.pos++] = Number(v & 0x7fn) | 0x80;
      v >>= 7n;
    }
    this.buf[this.pos++] = Number(v);
  }

  tag(field: number, wireType: number): void {
    this.varint32(((field << 3) | wireType) >>> 0);
  }

  uint32(field: number, v: number): void {
    this.tag(field, VARINT);
    this.varint32(v);
  }

  int32(field: number, v: number): void {
    this.tag(field, VARINT);
    if ((v | 0) >= 0) this.varint32(v);
    else this.varint64(BigInt(v | 0));
  }

  sint32(field: number, v: number): void {
    this.tag(field, VARINT);
    v |= 0;
    this.varint32((v << 1) ^ (v >> 31));
  }

  bool(field: number, v: boolean): void {
    this.tag(field, VARINT);
    this.varint32(v ? 1 : 0);
  }

  int64(field: number, v: Int64Input, name: string): void {
    this.tag(field, VARINT);
    // The common small non-negative number without a BigInt.
    if (typeof v === 'number' && v >= 0 && v <= 0xffffffff && Number.isInteger(v)) this.varint32(v);
    else this.varint64(toBigInt(v, name));
  }

  uint64(field: number, v: Int64Input, name: string): void {
    this.int64(field, v, name);
  }

  sint64(field: number, v: Int64Input, name: string): void {
    const n = BigInt.asIntN(64, toBigInt(v, name));
    this.tag(field, VARINT);
    this.varint64((n << 1n) ^ (n >> 63n));
  }

  fixed32(field: number, v: number): void {
    this.tag(field, FIXED32);
    this.#ensure(4);
    this.#le32(v);
  }

  /**
   * The low 32 bits of `v`, little-endian, by byte stores: Buffer#writeUInt32LE checks its
   * arguments through wrappers that allocate, per call, on the span export's hot path.
   */
  #le32(v: number): void {
    const buf = this.buf;
    const at = this.pos;
    buf[at] = v;
    buf[at + 1] = v >>> 8;
    buf[at + 2] = v >>> 16;
    buf[at + 3] = v >>> 24;
    this.pos = at + 4;
  }

  sfixed32(field: number, v: number): void {
    this.fixed32(field, v | 0);
  }

  fixed64(field: number, v: Int64Input, name: string): void {
    this.tag(field, FIXED64);
    this.#ensure(8);
    this.buf.writeBigUInt64LE(BigInt.asUintN(64, toBigInt(v, name)), this.pos);
    this.pos += 8;
  }

  /** A fixed64 given as its low and high 32 bits (no BigInt: timestamps in hot paths). */
  fixed64Parts(field: number, low: number, high: number): void {
    this.tag(field, FIXED64);
    this.#ensure(8);
    this.#le32(low);
    this.#le32(high);
  }

  sfixed64(field: number, v: Int64Input, name: string): void {
    this.fixed64(field, v, name);
  }

  float(field: number, v: number): void {
    this.tag(field, FIXED32);
    this.#ensure(4);
    this.buf.writeFloatLE(v, this.pos);
    this.pos += 4;
  }

  double(field: number, v: number): void {
    this.tag(field, FIXED64);
    this.#ensure(8);
    this.buf.writeDoubleLE(v, this.pos);
    this.pos += 8;
  }

  #raw(bytes: Uint8Array): void {
    this.varint32(bytes.length);
    this.#ensure(bytes.length);
    this.buf.set(bytes, this.pos);
    this.pos += bytes.length;
  }

  /**
   * A string as UTF-8 (lone surrogates as U+FFFD, as Buffer.from writes them), written in place:
   * ASCII up to 127 characters by a loop, the rest by Buffer#write after its byte length.
   */
  string(field: number, v: string): void {
    this.tag(field, LENGTH_DELIMITED);
    const n = v.length;
    if (n < 0x80) {
      this.#ensure(n + 1);
      const buf = this.buf;
      const at = this.pos;
      let i = 0;
      for (; i < n; i++) {
        const c = v.charCodeAt(i);
        if (c >= 0x80) break;
        buf[at + 1 + i] = c;
      }
      if (i === n) {
        buf[at] = n;
        this.pos = at + 1 + n;
        return;
      }
    }
    const len = Buffer.byteLength(v, 'utf8');
    this.varint32(len);
    this.#ensure(len);
    this.pos += this.buf.write(v, this.pos, len, 'utf8');
  }

  /**
   * Bytes already encoded (a field with its tag), copied as they are (short ones by a loop); `n`:
   * only the first n of them (a buffer reused for encodings of several lengths).
   */
  raw(bytes: Uint8Array, n = bytes.length): void {
    this.#ensure(n);
    const buf = this.buf;
    const at = this.pos;
    if (n > 64) buf.set(bytes, at);
    else for (let i = 0; i < n; i++) buf[at + i] = bytes[i]!;
    this.pos = at + n;
  }

  /**
   * Bytes given as an even number of hex digits (trace and span ids), decoded in place by a loop
   * (Buffer#write with 'hex' allocated per call, three times per exported span).
   */
  hexBytes(field: number, hex: string): void {
    this.tag(field, LENGTH_DELIMITED);
    const len = hex.length >>> 1;
    this.varint32(len);
    this.#ensure(len);
    const buf = this.buf;
    const at = this.pos;
    for (let i = 0; i < len; i++) {
      const high = hexDigit(hex.charCodeAt(2 * i));
      const low = hexDigit(hex.charCodeAt(2 * i + 1));
      if ((high | low) < 0) throw new Error(`${field}: "${hex}" is not hex`);
      buf[at + i] = (high << 4) | low;
    }
    this.pos = at + len;
  }

  /** Bytes as proto-loader accepts them: a Buffer/Uint8Array, or a base64 string. */
  bytes(field: number, v: Uint8Array | string): void {
    this.tag(field, LENGTH_DELIMITED);
    this.#raw(typeof v === 'string' ? Buffer.from(v, 'base64') : v);
  }

  /**
   * A nested message written by `write`. Its length is not known beforehand: one byte is kept
   * for it (enough below 128 bytes) and the body moved along when the prefix needs more.
   */
  message<T>(field: number, value: T, write: (w: Writer, value: T) => void): void {
    const at = this.begin(field);
    write(this, value);
    this.end(at);
  }

  /**
   * The two halves of message() for a writer that has more than one value to write (no closure):
   * begin() writes the tag and keeps a byte (or `lengthBytes`) for the length, end() with its result
   * patches it in.
   */
  begin(field: number, lengthBytes: 1 | 2 = 1): number {
    this.tag(field, LENGTH_DELIMITED);
    this.#ensure(lengthBytes);
    const at = this.pos;
    this.pos = at + lengthBytes;
    return at;
  }

  /**
   * `lengthBytes`: as given to begin(); 2 for a message that is mostly 128 to 16383 bytes long (a
   * span), whose body then stays where it is. A length that takes another size moves the body.
   */
  end(at: number, lengthBytes: 1 | 2 = 1): void {
    const buf = this.buf;
    const len = this.pos - at - lengthBytes;
    if (lengthBytes === 1 && len < 0x80) {
      buf[at] = len;
      return;
    }
    let size = 1;
    for (let n = len; n > 0x7f; n >>>= 7) size++;
    if (size !== lengthBytes) {
      if (size > lengthBytes) this.#ensure(size - lengthBytes);
      this.buf.copyWithin(at + size, at + lengthBytes, this.pos);
      this.pos += size - lengthBytes;
    }
    // The varint, in the `size` bytes at `at`.
    const out = this.buf;
    let n = len;
    for (let i = 0; i < size - 1; i++) {
      out[at + i] = (n & 0x7f) | 0x80;
      n >>>= 7;
    }
    out[at + size - 1] = n;
  }

  finish(): Buffer {
    return Buffer.from(this.buf.subarray(0, this.pos));
  }
}

/** The value of each hex digit (either case) by character code below 128, -1 for the others. */
const HEX_VALUES = new Int8Array(128).fill(-1);
for (let i = 0; i < 16; i++) {
  HEX_VALUES[i.toString(16).charCodeAt(0)] = i;
  HEX_VALUES[i.toString(16).toUpperCase().charCodeAt(0)] = i;
}

/** The value of a hex digit (either case), -1 for any other character. */
function hexDigit(c: number): number {
  return c < 128 ? HEX_VALUES[c]! : -1;
}

/** An enum input (a name or a number) as its number; an unknown name is an error. */
export function enumNumber(value: unknown, numbers: Readonly<Record<string, number>>, field: string): number {
  if (typeof value === 'number') return value;
  if (typeof value === 'string' && Object.hasOwn(numbers, value)) return numbers[value]!;
  throw new Error(`${field}: unknown enum value ${JSON.stringify(value)}`);
}
