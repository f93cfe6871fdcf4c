// A strict incremental decoder for the chunked transfer coding (RFC 9112 7.1). The proxy never
// forwards chunk framing as received: it decodes it here and re-encodes the data with its own
// framing (encodeChunkHeader), so chunk extensions and odd-but-legal spellings (leading zeros,
// BWS in extensions) never reach the upstream and both sides always agree on where the body ends.
// Line ends are CRLF only (RFC 9112 2.2 lets a recipient accept a bare LF: refused here, as in
// the head parser); sizes of more than 12 significant hex digits, size lines of more than 64
// digits, extensions of more than 1 KiB and trailer sections over the head limits are refused.

import { TCHAR, type H1Limits } from './h1-parser.ts';

const enum_ = {
  SIZE: 0,
  EXT: 1, // after ";": an extension name must follow
  SIZE_LF: 2,
  DATA: 3,
  DATA_CR: 4,
  DATA_LF: 5,
  TRAILERS: 6,
  DONE: 7,
  EXT_NAME: 8,
  EXT_VALUE: 9, // after "="
  EXT_TOKEN: 10,
  EXT_QUOTED: 11,
  EXT_QUOTED_PAIR: 12, // after a backslash inside quotes
  EXT_AFTER_QUOTE: 13,
  EXT_NAME_BWS: 14, // whitespace after a name: "=" or ";" must follow
  EXT_BWS: 15, // whitespace after the size or a value: ";" must follow
} as const;

const isWs = (c: number) => c === 0x20 || c === 0x09;

/**
 * The state after byte c in a chunk extension, or -1. The grammar is RFC 9112 7.1.1:
 * *( BWS ";" BWS token [ BWS "=" BWS ( token / quoted-string ) ] ), where BWS = OWS that a
 * recipient MUST parse and remove (RFC 9110 5.6.3); BWS before the line's CRLF is not in it.
 * Extensions are rare; a switch per byte is fine.
 */
function nextExtState(state: number, c: number): number {
  const endsValue = c === 0x3b ? enum_.EXT : c === 0x0d ? enum_.SIZE_LF : isWs(c) ? enum_.EXT_BWS : -1;
  switch (state) {
    case enum_.EXT:
      return TCHAR[c] === 1 ? enum_.EXT_NAME : isWs(c) ? enum_.EXT : -1;
    case enum_.EXT_NAME:
      if (TCHAR[c] === 1) return enum_.EXT_NAME;
      if (isWs(c)) return enum_.EXT_NAME_BWS;
      return c === 0x3d ? enum_.EXT_VALUE : endsValue;
    case enum_.EXT_NAME_BWS:
      return isWs(c) ? enum_.EXT_NAME_BWS : c === 0x3d ? enum_.EXT_VALUE : c === 0x3b ? enum_.EXT : -1;
    case enum_.EXT_BWS:
      return isWs(c) ? enum_.EXT_BWS : c === 0x3b ? enum_.EXT : -1;
    case enum_.EXT_VALUE:
      if (isWs(c)) return enum_.EXT_VALUE;
      return TCHAR[c] === 1 ? enum_.EXT_TOKEN : c === 0x22 ? enum_.EXT_QUOTED : -1;
    case enum_.EXT_TOKEN:
      return TCHAR[c] === 1 ? enum_.EXT_TOKEN : endsValue;
    case enum_.EXT_QUOTED: // qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
      if (c === 0x22) return enum_.EXT_AFTER_QUOTE;
      if (c === 0x5c) return enum_.EXT_QUOTED_PAIR;
      return c === 0x09 || (c >= 0x20 && c !== 0x7f) ? enum_.EXT_QUOTED : -1;
    case enum_.EXT_QUOTED_PAIR:
      return c === 0x09 || (c >= 0x20 && c !== 0x7f) ? enum_.EXT_QUOTED : -1;
    default: // EXT_AFTER_QUOTE
      return endsValue;
  }
}

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

/** Sizes from 2^48 bytes (13 significant hex digits) are refused rather than risking overflow. */
const MAX_SIZE = 2 ** 48;
/** chunk-size = 1*HEXDIG: leading zeros are legal, but a size line is bounded all the same. */
const MAX_SIZE_DIGITS = 64;
const MAX_EXT_BYTES = 1024;

export class ChunkedDecoder {
  private state: number = enum_.SIZE;
  private size = 0;
  private digits = 0;
  private extBytes = 0;
  private remaining = 0;
  private trailerBuf: Buffer[] = [];
  private trailerBytes = 0;
  private trailerLines = 0;
  /** Bytes of the current trailer line so far (0: at a line start), and whether a CR was just read. */
  private trailerLineBytes = 0;
  private trailerCR = false;
  private readonly maxTrailerBytes: number;
  private readonly maxTrailerLines: number;
  /** Set when the input was not valid chunked coding. */
  error: string | null = null;

  constructor(limits: H1Limits) {
    this.maxTrailerBytes = limits.maxHeaderBytes;
    this.maxTrailerLines = limits.maxHeaders;
  }

  get done(): boolean {
    return this.state === enum_.DONE;
  }

  /**
   * Feeds bytes; returns how many were consumed (fewer than given only after the body ended: the
   * rest belongs to the next message), or -1 on a framing error (see `error`).
   */
  write(buf: Buffer, sink: ChunkSink): number {
    if (this.error !== null) return -1; // a failed decoder stays failed
    let i = 0;
    const n = buf.length;
    while (i < n) {
      switch (this.state) {
        case enum_.SIZE: {
          const c = buf[i]!;
          const h = HEX[c]!;
          if (h >= 0) {
            if (++this.digits > MAX_SIZE_DIGITS) return this.fail('chunk size line too long');
            this.size = this.size * 16 + h;
            if (this.size >= MAX_SIZE) return this.fail('chunk size too large');
            i++;
          } else if (this.digits === 0) {
            return this.fail('invalid chunk size');
          } else if (c === 0x0d) {
            this.state = enum_.SIZE_LF;
            i++;
          } else if (c === 0x3b || isWs(c)) {
            this.state = c === 0x3b ? enum_.EXT : enum_.EXT_BWS;
            this.extBytes = 0;
            i++;
          } else {
            return this.fail('invalid chunk size');
          }
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
        case enum_.TRAILERS:
          return this.readTrailers(buf, i, sink);
        case enum_.DONE:
          return i;
        default: {
          // The extension states.
          if (++this.extBytes > MAX_EXT_BYTES) return this.fail('chunk extension too long');
          const next = nextExtState(this.state, buf[i]!);
          if (next < 0) return this.fail('invalid chunk extension');
          this.state = next;
          i++;
        }
      }
    }
    return i;
  }

  /**
   * Reads the trailer section up to and including its blank line, looking at each byte once
   * (a client that sends it a byte at a time must not make this quadratic); returns the index
   * after what was consumed, or -1.
   */
  private readTrailers(buf: Buffer, from: number, sink: ChunkSink): number {
    const n = buf.length;
    let i = from;
    let ended = false;
    while (i < n) {
      const c = buf[i++]!;
      if (this.trailerCR) {
        if (c !== 0x0a) return this.fail('bare CR in trailers');
        this.trailerCR = false;
        if (this.trailerLineBytes === 0) {
          ended = true;
          break;
        }
        if (++this.trailerLines > this.maxTrailerLines) return this.fail('too many trailer fields');
        this.trailerLineBytes = 0;
      } else if (c === 0x0d) this.trailerCR = true;
      else if (c === 0x0a) return this.fail('bare LF in trailers');
      else this.trailerLineBytes++;
    }
    this.trailerBytes += i - from;
    if (this.trailerBytes > this.maxTrailerBytes) return this.fail('trailers too large');
    const part = buf.subarray(from, i);
    if (!ended) {
      this.trailerBuf.push(Buffer.from(part)); // the caller may reuse its buffer
      return i;
    }
    const all = this.trailerBuf.length === 0 ? part : Buffer.concat([...this.trailerBuf, part]);
    const block = all.subarray(0, all.length - 2); // without the blank line
    const bad = validateFieldBlock(block);
    if (bad !== null) return this.fail(bad);
    this.state = enum_.DONE;
    this.trailerBuf = [];
    sink.end(Buffer.from(block));
    return i;
  }

  private fail(message: string): number {
    this.error = message;
    return -1;
  }
}

// Fields that frame or route a message are never accepted as trailers (RFC 9110 6.5.1): a
// recipient that merged them into the header section would see a different message.
const FORBIDDEN_TRAILERS = new Set(['content-length', 'transfer-encoding', 'host', 'trailer']);

/** Checks a block of "name: value\r\n" lines; returns an error message or null. */
export function validateFieldBlock(block: Buffer): string | null {
  const lines = block.latin1Slice(0, block.length).split('\r\n');
  for (const line of lines) {
    if (line === '') continue;
    if (!/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*$/.test(line)) return 'invalid trailer field';
    if (FORBIDDEN_TRAILERS.has(line.slice(0, line.indexOf(':')).toLowerCase()))
      return 'framing field in trailers';
  }
  return null;
}

const CRLF = Buffer.from('\r\n', 'latin1');
export const LAST_CHUNK = Buffer.from('0\r\n\r\n', 'latin1');

export function encodeChunkHeader(size: number): Buffer {
  return Buffer.from(size.toString(16) + '\r\n', 'latin1');
}

export { CRLF };
