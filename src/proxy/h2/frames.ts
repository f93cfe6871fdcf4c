// HTTP/2 framing (RFC 9113 section 4 and 6) for the project's own minimal HTTP/2 connection
// (connection.ts), which carries HTTP/1 requests between two Trellis proxies. node:http2 gives
// every stream a Duplex and runs every frame through nghttp2 and back into JavaScript; on the
// proxy-to-proxy hop, where both ends are ours and a stream is one small request, that machinery
// was most of the cost (docs/benchmark.md). Here a frame is a 9-byte header and a payload slice.
//
// FrameReader cuts a byte stream into frames without copying a frame that arrived whole; a frame
// split across reads is joined once. FrameWriter packs frame headers and small payloads into one
// buffer per flush (a large DATA payload goes out as its own slice), so the many frames of one
// event-loop turn leave in one TLS write.

export const FRAME_HEADER_BYTES = 9;
export const CLIENT_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
export const DEFAULT_MAX_FRAME_SIZE = 16_384;
export const DEFAULT_WINDOW = 65_535;
export const MAX_WINDOW = 0x7fff_ffff;

export const FrameType = {
  DATA: 0x0,
  HEADERS: 0x1,
  PRIORITY: 0x2,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PUSH_PROMISE: 0x5,
  PING: 0x6,
  GOAWAY: 0x7,
  WINDOW_UPDATE: 0x8,
  CONTINUATION: 0x9,
} as const;

export const Flag = {
  END_STREAM: 0x1,
  ACK: 0x1,
  END_HEADERS: 0x4,
  PADDED: 0x8,
  PRIORITY: 0x20,
} as const;

export const ErrorCode = {
  NO_ERROR: 0x0,
  PROTOCOL_ERROR: 0x1,
  INTERNAL_ERROR: 0x2,
  FLOW_CONTROL_ERROR: 0x3,
  SETTINGS_TIMEOUT: 0x4,
  STREAM_CLOSED: 0x5,
  FRAME_SIZE_ERROR: 0x6,
  REFUSED_STREAM: 0x7,
  CANCEL: 0x8,
  COMPRESSION_ERROR: 0x9,
  ENHANCE_YOUR_CALM: 0xb,
} as const;

export const Setting = {
  HEADER_TABLE_SIZE: 0x1,
  ENABLE_PUSH: 0x2,
  MAX_CONCURRENT_STREAMS: 0x3,
  INITIAL_WINDOW_SIZE: 0x4,
  MAX_FRAME_SIZE: 0x5,
  MAX_HEADER_LIST_SIZE: 0x6,
} as const;

/** A connection error: the connection ends with GOAWAY carrying `code`. */
export class H2ConnectionError extends Error {
  readonly code: number;
  constructor(code: number, message: string) {
    super(message);
    this.code = code;
  }
}

export type FrameHandler = (type: number, flags: number, streamId: number, payload: Buffer) => void;

/** Cuts bytes into frames; a frame longer than `maxFrameSize` is a FRAME_SIZE_ERROR (thrown). */
export class FrameReader {
  private pending: Buffer | null = null;
  maxFrameSize = DEFAULT_MAX_FRAME_SIZE;

  /** Feeds bytes; calls `onFrame` for every whole frame, in order. Throws H2ConnectionError. */
  push(chunk: Buffer, onFrame: FrameHandler): void {
    let buf = chunk;
    if (this.pending !== null) {
      buf = Buffer.concat([this.pending, chunk]);
      this.pending = null;
    }
    let off = 0;
    const end = buf.length;
    while (end - off >= FRAME_HEADER_BYTES) {
      const length = (buf[off]! << 16) | (buf[off + 1]! << 8) | buf[off + 2]!;
      if (length > this.maxFrameSize) {
        throw new H2ConnectionError(
          ErrorCode.FRAME_SIZE_ERROR,
          `frame of ${length} bytes exceeds the maximum frame size ${this.maxFrameSize}`,
        );
      }
      if (end - off - FRAME_HEADER_BYTES < length) break;
      const type = buf[off + 3]!;
      const flags = buf[off + 4]!;
      const streamId = buf.readUInt32BE(off + 5) & 0x7fff_ffff;
      const start = off + FRAME_HEADER_BYTES;
      off = start + length;
      onFrame(type, flags, streamId, buf.subarray(start, off));
    }
    if (off < end) this.pending = off === 0 ? buf : Buffer.from(buf.subarray(off));
  }
}

const SCRATCH_BYTES = 16 * 1024;

/**
 * Collects outgoing frames. Small frames are written into a scratch buffer; large payloads are
 * queued as slices; take() returns everything queued since the last take, in order.
 */
export class FrameWriter {
  private scratch = Buffer.allocUnsafe(SCRATCH_BYTES);
  private start = 0;
  private pos = 0;
  private readonly parts: Buffer[] = [];
  private queued = 0;

  /** Bytes queued and not yet taken. */
  get length(): number {
    return this.queued + this.pos - this.start;
  }

  private room(n: number): void {
    if (this.scratch.length - this.pos >= n) return;
    this.cut();
    this.scratch = Buffer.allocUnsafe(Math.max(SCRATCH_BYTES, n));
    this.start = 0;
    this.pos = 0;
  }

  /** Moves what the scratch buffer holds into the parts list. */
  private cut(): void {
    if (this.pos > this.start) {
      this.parts.push(this.scratch.subarray(this.start, this.pos));
      this.queued += this.pos - this.start;
      this.start = this.pos;
    }
  }

  header(length: number, type: number, flags: number, streamId: number): void {
    this.room(FRAME_HEADER_BYTES);
    const b = this.scratch;
    const p = this.pos;
    b[p] = length >>> 16;
    b[p + 1] = (length >>> 8) & 0xff;
    b[p + 2] = length & 0xff;
    b[p + 3] = type;
    b[p + 4] = flags;
    b.writeUInt32BE(streamId, p + 5);
    this.pos = p + FRAME_HEADER_BYTES;
  }

  /** Payload bytes: copied when small, queued as they are when large (not to be changed after). */
  bytes(payload: Buffer): void {
    const n = payload.length;
    if (n === 0) return;
    if (n <= 1024) {
      this.room(n);
      payload.copy(this.scratch, this.pos);
      this.pos += n;
      return;
    }
    this.cut();
    this.parts.push(payload);
    this.queued += n;
  }

  uint32(value: number): void {
    this.room(4);
    this.scratch.writeUInt32BE(value >>> 0, this.pos);
    this.pos += 4;
  }

  uint16(value: number): void {
    this.room(2);
    this.scratch.writeUInt16BE(value, this.pos);
    this.pos += 2;
  }

  frame(type: number, flags: number, streamId: number, payload: Buffer | null): void {
    this.header(payload === null ? 0 : payload.length, type, flags, streamId);
    if (payload !== null) this.bytes(payload);
  }

  settings(values: ReadonlyArray<readonly [number, number]>): void {
    this.header(values.length * 6, FrameType.SETTINGS, 0, 0);
    for (const [id, value] of values) {
      this.uint16(id);
      this.uint32(value);
    }
  }

  windowUpdate(streamId: number, increment: number): void {
    this.header(4, FrameType.WINDOW_UPDATE, 0, streamId);
    this.uint32(increment);
  }

  rstStream(streamId: number, code: number): void {
    this.header(4, FrameType.RST_STREAM, 0, streamId);
    this.uint32(code);
  }

  goaway(lastStreamId: number, code: number, debug: string): void {
    const data = Buffer.from(debug.slice(0, 256), 'latin1');
    this.header(8 + data.length, FrameType.GOAWAY, 0, 0);
    this.uint32(lastStreamId);
    this.uint32(code);
    this.bytes(data);
  }

  /**
   * A header block as HEADERS (+ CONTINUATION when it exceeds the peer's maximum frame size).
   */
  headers(streamId: number, block: Buffer, endStream: boolean, maxFrameSize: number): void {
    const es = endStream ? Flag.END_STREAM : 0;
    if (block.length <= maxFrameSize) {
      this.header(block.length, FrameType.HEADERS, es | Flag.END_HEADERS, streamId);
      this.bytes(block);
      return;
    }
    let off = 0;
    let type: number = FrameType.HEADERS;
    while (off < block.length) {
      const n = Math.min(maxFrameSize, block.length - off);
      const last = off + n === block.length;
      this.header(n, type, (type === FrameType.HEADERS ? es : 0) | (last ? Flag.END_HEADERS : 0), streamId);
      this.bytes(block.subarray(off, off + n));
      off += n;
      type = FrameType.CONTINUATION;
    }
  }

  /** DATA frames for `data` (already within the flow-control windows), split by `maxFrameSize`. */
  data(streamId: number, data: Buffer, endStream: boolean, maxFrameSize: number): void {
    if (data.length <= maxFrameSize) {
      this.header(data.length, FrameType.DATA, endStream ? Flag.END_STREAM : 0, streamId);
      this.bytes(data);
      return;
    }
    let off = 0;
    while (off < data.length) {
      const n = Math.min(maxFrameSize, data.length - off);
      const last = off + n === data.length;
      this.header(n, FrameType.DATA, last && endStream ? Flag.END_STREAM : 0, streamId);
      this.bytes(data.subarray(off, off + n));
      off += n;
    }
  }

  /** Everything queued, as one buffer (or null when nothing is). */
  take(): Buffer | null {
    this.cut();
    const parts = this.parts;
    if (parts.length === 0) return null;
    const out = parts.length === 1 ? parts[0]! : Buffer.concat(parts, this.queued);
    parts.length = 0;
    this.queued = 0;
    // The scratch buffer's taken region must not be overwritten while the socket holds it.
    if (this.scratch.length - this.pos < 512) {
      this.scratch = Buffer.allocUnsafe(SCRATCH_BYTES);
      this.pos = 0;
    }
    this.start = this.pos;
    return out;
  }
}
