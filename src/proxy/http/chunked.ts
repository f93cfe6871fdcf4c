// A strict incremental decoder for the chunked transfer coding (RFC 9112 7.1). The proxy never
// forwards chunk framing as received: it decodes it here and re-encodes the data with its own
// framing (encodeChunkHeader), so chunk extensions and odd-but-legal spellings never reach the
// upstream and both sides always agree on where the body ends.

import type { H1Limits } from './h1-parser.ts';

const enum_ = {
  SIZE: 0,
  EXT: 1,
  SIZE_LF: 2,
  DATA: 3,
  DATA_CR: 4,
  DATA_LF: 5,
  TRAILERS: 6,
  DONE: 7,
} as const;

const HEX = new Int8Array(256).fill(-1);
for (let c = 0; c < 10; c++) HEX[0x30 + c] = c;
for (let c = 0; c < 6; c++) {
  HEX[0x41 + c] = 10 + c;
  HEX[0x61 + c] = 10 + c;
}

export interface ChunkSink {
  /** A slice of body data (a view into the input buffer: copy it if kept). */
  data(chunk: Buffer): void;
  /** The terminal chunk and its trailer section were read; `trailers` is the raw trailer block (may be empty). */
  end(trailers: Buffer): void;
}

const MAX_SIZE_DIGITS = 12; // 2^48 bytes: larger sizes are refused rather than risking overflow
const MAX_EXT_BYTES = 1024;

export class ChunkedDecoder {
  private state: number = enum_.SIZE;
  private size = 0;
  private digits = 0;
  private extBytes = 0;
  private remaining = 0;
  private trailerBuf: Buffer[] = [];
  private trailerBytes = 0;
  private readonly maxTrailerBytes: number;
  /** Set when the input was not valid chunked coding. */
  error: string | null = null;

  constructor(limits: H1Limits) {
    this.maxTrailerBytes = limits.maxHeaderBytes;
  }

  get done(): boolean {
    return this.state === enum_.DONE;
  }

  /**
   * Feeds bytes; returns how many were consumed (fewer than given only after the body ended: the
   * rest belongs to the next message), or -1 on a framing error (see `error`).
   */
  write(buf: Buffer, sink: ChunkSink): number {
    let i = 0;
    const n = buf.length;
    while (i < n) {
      switch (this.state) {
        case enum_.SIZE: {
          const c = buf[i]!;
          const h = HEX[c]!;
          if (h >= 0) {
            if (++this.digits > MAX_SIZE_DIGITS) return this.fail('chunk size too large');
            this.size = this.size * 16 + h;
            i++;
          } else if (this.digits === 0) {
            return this.fail('invalid chunk size');
          } else if (c === 0x0d) {
            this.state = enum_.SIZE_LF;
            i++;
          } else if (c === 0x3b) {
            this.state = enum_.EXT;
            this.extBytes = 0;
            i++;
          } else {
            return this.fail('invalid chunk size');
          }
          break;
        }
        case enum_.EXT: {
          const c = buf[i]!;
          if (c === 0x0d) this.state = enum_.SIZE_LF;
          else if ((c < 0x20 && c !== 0x09) || c === 0x7f) return this.fail('invalid chunk extension');
          else if (++this.extBytes > MAX_EXT_BYTES) return this.fail('chunk extension too long');
          i++;
          break;
        }
        case enum_.SIZE_LF: {
          if (buf[i] !== 0x0a) return this.fail('bare CR in chunk size line');
          i++;
          if (this.size === 0) {
            this.state = enum_.TRAILERS;
          } else {
            this.remaining = this.size;
            this.state = enum_.DATA;
          }
          this.size = 0;
          this.digits = 0;
          break;
        }
        case enum_.DATA: {
          const take = Math.min(this.remaining, n - i);
          sink.data(buf.subarray(i, i + take));
          i += take;
          this.remaining -= take;
          if (this.remaining === 0) this.state = enum_.DATA_CR;
          break;
        }
        case enum_.DATA_CR:
          if (buf[i] !== 0x0d) return this.fail('chunk data longer than its size');
          this.state = enum_.DATA_LF;
          i++;
          break;
        case enum_.DATA_LF:
          if (buf[i] !== 0x0a) return this.fail('bare CR after chunk data');
          this.state = enum_.SIZE;
          i++;
          break;
        case enum_.TRAILERS: {
          const r = this.readTrailers(buf, i, sink);
          if (r < 0) return -1;
          i = r;
          if ((this.state as number) === enum_.DONE) return i;
          break;
        }
        case enum_.DONE:
          return i;
      }
    }
    return i;
  }

  /** Collects the trailer section up to and including its blank line. */
  private readTrailers(buf: Buffer, i: number, sink: ChunkSink): number {
    const prev = this.trailerBytes === 0 ? null : Buffer.concat(this.trailerBuf);
    const all = prev === null ? buf.subarray(i) : Buffer.concat([prev, buf.subarray(i)]);
    const base = prev === null ? 0 : prev.length;
    // The section ends at an empty line: either immediately (CRLF) or after fields (CRLFCRLF).
    let endAt = -1;
    if (all.length >= 2 && all[0] === 0x0d && all[1] === 0x0a) endAt = 2;
    else {
      const k = all.indexOf('\r\n\r\n', 0, 'latin1');
      if (k !== -1) endAt = k + 4;
    }
    if (endAt === -1) {
      for (let j = 0; j < all.length; j++) {
        const c = all[j]!;
        if (c === 0x0a && (j === 0 || all[j - 1] !== 0x0d)) return this.fail('bare LF in trailers');
        if (c === 0x0d && j + 1 < all.length && all[j + 1] !== 0x0a) return this.fail('bare CR in trailers');
      }
      if (all.length > this.maxTrailerBytes) return this.fail('trailers too large');
      this.trailerBuf = [Buffer.from(all)];
      this.trailerBytes = all.length;
      return buf.length;
    }
    if (endAt > this.maxTrailerBytes) return this.fail('trailers too large');
    const block = all.subarray(0, endAt - 2);
    const bad = validateFieldBlock(block);
    if (bad !== null) return this.fail(bad);
    this.state = enum_.DONE;
    this.trailerBuf = [];
    sink.end(Buffer.from(block));
    return i + (endAt - base);
  }

  private fail(message: string): number {
    this.error = message;
    return -1;
  }
}

/** Checks a block of "name: value\r\n" lines; returns an error message or null. */
export function validateFieldBlock(block: Buffer): string | null {
  const lines = block.latin1Slice(0, block.length).split('\r\n');
  for (const line of lines) {
    if (line === '') continue;
    if (!/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*$/.test(line)) return 'invalid trailer field';
  }
  return null;
}

const CRLF = Buffer.from('\r\n', 'latin1');
export const LAST_CHUNK = Buffer.from('0\r\n\r\n', 'latin1');

export function encodeChunkHeader(size: number): Buffer {
  return Buffer.from(size.toString(16) + '\r\n', 'latin1');
}

export { CRLF };
