// A guard in front of node:http2's server sessions: it reads the peer's bytes first, and a header
// block that node would refuse half-way never reaches node; the connection is closed instead.
//
// Why: node refuses a header block that is over its limits (maxHeaderListPairs,
// maxHeaderListSize) only after it has taken in the fields before the limit, and those fields stay
// with the stream until the stream is closed. Some sequence of a peer's frames (found by the fuzz
// campaign, not yet narrowed down: likely the session being freed before that stream's
// RST_STREAM went out) leaves such a stream in the session when the session is freed, and node
// aborts the whole process (Http2Session::~Http2Session, current_nghttp2_memory_ == 0), on every
// listener that runs node:http2 (docs/security.md, "Fuzzing"). Raising node's limits stops the
// reproducer, so the trigger is node refusing a block half-way.
// node cannot be told to check a block before decoding it, so this module does: it decodes every
// complete header block with the project's own HPACK decoder (its table kept in step with node's,
// both starting at the 4,096 bytes announced) and measures it as node will.
//
// What it refuses (the connection is closed, nothing of the block is passed on): a block over the
// pair or size limit, a block HPACK cannot decode, a header frame over the frame size, more
// CONTINUATION frames than nghttp2 accepts, a block interrupted by another frame, and more than
// MAX_UNREAD_ANSWERS PING or SETTINGS frames from a peer that does not read. Everything else passes
// unchanged, in order; of other frames only the header is looked at.
// The cost: node reads through a JavaScript stream instead of the socket's handle (about 0.7x the
// requests a second, docs/security.md; decoding each block twice is not what costs); this path
// carries the app's HTTP/2 and gRPC, not the mesh's own HTTP/2 (trellis-h2h1/1).
import { Duplex } from 'node:stream';
import type net from 'node:net';
import { HpackDecoder, HpackError, HpackListSizeError } from '../h2/hpack.ts';

const PREFACE_LENGTH = 24;
const FRAME_HEADER = 9;
const HEADERS = 0x1;
const CONTINUATION = 0x9;
const END_HEADERS = 0x4;
const PADDED = 0x8;
const PRIORITY = 0x20;
const SETTINGS = 0x4;
const PING = 0x6;
const ACK = 0x1;
/** nghttp2's own limit on CONTINUATION frames per block (it closes the session past it). */
const MAX_CONTINUATIONS = 8;
/** The frame size node announces (SETTINGS_MAX_FRAME_SIZE, its default). */
const MAX_FRAME = 16_384;
/**
 * PING and SETTINGS frames that ask for an answer, taken while the peer does not read (more than
 * BACKLOG_BYTES wait in the socket, beyond what the kernel holds), before the connection is cut
 * off. nghttp2 cuts off a peer that leaves 1,000 answers unread, but only while node reads, and
 * node stops reading the guard while a write of its is pending; so the guard counts them itself.
 * A peer that reads, however often it PINGs (gRPC's BDP probe, keepalives), is never counted.
 */
export const MAX_UNREAD_ANSWERS = 1000;
export const BACKLOG_BYTES = 512 * 1024;
/**
 * Node's writes count as done at once until this many bytes wait in the socket (so node keeps
 * reading, and its own flood checks keep running, while a peer is slow to read); past it they
 * wait for the socket to drain, as any stream's writes do.
 */
export const WRITE_AHEAD_BYTES = 1024 * 1024;

export interface HeaderGuardLimits {
  /** Fields a block may have (node's maxHeaderListPairs). */
  readonly maxPairs: number;
  /** A block's decoded size, name + value + 32 per field (node's maxHeaderListSize). */
  readonly maxListSize: number;
  /** The HPACK table size node announces (SETTINGS_HEADER_TABLE_SIZE). */
  readonly headerTableSize: number;
}

/**
 * Scans the client's side of an HTTP/2 connection, chunk by chunk: `feed` returns the bytes that
 * may go on (possibly none yet: a header block is held until it is complete), or a string saying
 * why the connection must be closed.
 */
export class HeaderBlockScanner {
  private readonly limits: HeaderGuardLimits;
  private readonly decoder: HpackDecoder;
  private prefaceLeft = PREFACE_LENGTH;
  /** Bytes of an incomplete frame header. */
  private head: Buffer | null = null;
  /** Payload bytes of the current frame still to come, passed on as they arrive. */
  private passLeft = 0;
  /** The header block being gathered: its frames as received, and its fragments. */
  private held: Buffer[] = [];
  private fragments: Buffer[] = [];
  private continuations = 0;
  private inBlock = false;
  /** Whether the peer leaves our answers unread (the guard: its socket's backlog). */
  private readonly backlogged: () => boolean;
  /** PING and SETTINGS frames taken since the peer last kept up. */
  private unreadAnswers = 0;
  /** The header frame being read: its header and payload so far. */
  private frame: { header: Buffer; flags: number; type: number; left: number; parts: Buffer[] } | null = null;

  constructor(limits: HeaderGuardLimits, backlogged: () => boolean = () => false) {
    this.limits = limits;
    this.backlogged = backlogged;
    // The decoder stops at the list limit (so a block of small references to one large table
    // entry is never spelled out in full); it counts as node does, empty names aside.
    this.decoder = new HpackDecoder(limits.headerTableSize, limits.maxListSize);
  }

  feed(chunk: Buffer): Buffer[] | string {
    const out: Buffer[] = [];
    let pos = 0;
    if (this.prefaceLeft > 0) {
      const n = Math.min(this.prefaceLeft, chunk.length);
      out.push(chunk.subarray(0, n));
      this.prefaceLeft -= n;
      pos = n;
    }
    while (pos < chunk.length) {
      if (this.passLeft > 0) {
        const n = Math.min(this.passLeft, chunk.length - pos);
        out.push(chunk.subarray(pos, pos + n));
        this.passLeft -= n;
        pos += n;
        continue;
      }
      if (this.frame !== null) {
        const f = this.frame;
        const n = Math.min(f.left, chunk.length - pos);
        f.parts.push(chunk.subarray(pos, pos + n));
        f.left -= n;
        pos += n;
        if (f.left === 0) {
          const refusal = this.headerFrame(f.type, f.flags, f.header, Buffer.concat(f.parts), out);
          if (refusal !== null) return refusal;
        }
        continue;
      }
      // A frame header, perhaps split across chunks.
      const need = FRAME_HEADER - (this.head?.length ?? 0);
      const take = chunk.subarray(pos, pos + Math.min(need, chunk.length - pos));
      pos += take.length;
      const header = this.head === null ? take : Buffer.concat([this.head, take]);
      if (header.length < FRAME_HEADER) {
        this.head = Buffer.from(header);
        continue;
      }
      this.head = null;
      const length = header.readUIntBE(0, 3);
      const type = header[3]!;
      const flags = header[4]!;
      if (type === HEADERS || type === CONTINUATION) {
        if (length > MAX_FRAME) return 'a header frame over the frame size';
        if (type === CONTINUATION ? !this.inBlock : this.inBlock) {
          return 'a header block interrupted by another frame';
        }
        this.frame = { header: Buffer.from(header), flags, type, left: length, parts: [] };
        if (length === 0) {
          this.frame = null;
          const refusal = this.headerFrame(type, flags, Buffer.from(header), Buffer.alloc(0), out);
          if (refusal !== null) return refusal;
        }
        continue;
      }
      if (this.inBlock) return 'a header block interrupted by another frame';
      if ((type === PING || type === SETTINGS) && (flags & ACK) === 0 && !this.answerOwed()) {
        return `more than ${MAX_UNREAD_ANSWERS} PING or SETTINGS frames while not reading the answers`;
      }
      out.push(header);
      this.passLeft = length;
    }
    return joinAdjacent(out);
  }

  /** A PING or SETTINGS to answer: false when the peer leaves too many answers unread. */
  private answerOwed(): boolean {
    if (!this.backlogged()) {
      this.unreadAnswers = 0;
      return true;
    }
    return ++this.unreadAnswers <= MAX_UNREAD_ANSWERS;
  }

  /** A whole HEADERS or CONTINUATION frame: held until its block is complete, then judged. */
  private headerFrame(
    type: number,
    flags: number,
    header: Buffer,
    payload: Buffer,
    out: Buffer[],
  ): string | null {
    this.frame = null;
    let fragment = payload;
    if (type === HEADERS) {
      let start = 0;
      let end = payload.length;
      if (flags & PADDED) {
        if (payload.length < 1) return 'a malformed HEADERS frame';
        end -= payload[0]!;
        start = 1;
      }
      if (flags & PRIORITY) start += 5;
      if (start > end) return 'a malformed HEADERS frame';
      fragment = payload.subarray(start, end);
      this.inBlock = true;
      this.continuations = 0;
    } else if (++this.continuations > MAX_CONTINUATIONS) {
      return 'too many CONTINUATION frames';
    }
    this.held.push(header, payload);
    this.fragments.push(fragment);
    if ((flags & END_HEADERS) === 0) return null;
    this.inBlock = false;
    const block = this.fragments.length === 1 ? this.fragments[0]! : Buffer.concat(this.fragments);
    this.fragments = [];
    let fields: string[];
    try {
      fields = this.decoder.decode(block);
    } catch (error) {
      if (error instanceof HpackListSizeError) return `a header block over ${this.limits.maxListSize} bytes`;
      if (error instanceof HpackError) return `a header block that cannot be decoded (${error.message})`;
      throw error;
    }
    let pairs = 0;
    let size = 0;
    for (let i = 0; i < fields.length; i += 2) {
      const name = fields[i]!;
      if (name.length === 0) continue; // node skips empty names
      pairs++;
      size += name.length + fields[i + 1]!.length + 32;
    }
    if (pairs > this.limits.maxPairs)
      return `a header block of ${pairs} fields (limit ${this.limits.maxPairs})`;
    if (size > this.limits.maxListSize) {
      return `a header block of ${size} bytes (limit ${this.limits.maxListSize})`;
    }
    out.push(...this.held);
    this.held = [];
    return null;
  }
}

/** Pieces that lie next to each other in one buffer (frames passed through) as one piece. */
function joinAdjacent(pieces: Buffer[]): Buffer[] {
  if (pieces.length < 2) return pieces;
  const joined: Buffer[] = [];
  let run = pieces[0]!;
  for (let i = 1; i < pieces.length; i++) {
    const next = pieces[i]!;
    if (next.buffer === run.buffer && run.byteOffset + run.length === next.byteOffset) {
      run = Buffer.from(run.buffer, run.byteOffset, run.length + next.length);
    } else {
      joined.push(run);
      run = next;
    }
  }
  joined.push(run);
  return joined;
}

/**
 * The socket as node:http2 will read it: the peer's bytes through a HeaderBlockScanner, everything
 * written straight to the socket. `onRefused` hears why, when the scanner closes the connection.
 */
export function guardHeaderBlocks(
  socket: net.Socket,
  initial: Buffer,
  limits: HeaderGuardLimits,
  onRefused: (why: string) => void,
): Duplex {
  const scanner = new HeaderBlockScanner(limits, () => socket.writableLength >= BACKLOG_BYTES);
  let refused = false;
  const take = (chunk: Buffer): void => {
    if (refused) return;
    let out: Buffer[] | string;
    try {
      out = scanner.feed(chunk);
    } catch (err) {
      // A fault of the scanner itself ends this connection, never the process.
      out = `the guard could not read the connection (${(err as Error).message})`;
    }
    if (typeof out === 'string') {
      refused = true;
      onRefused(out);
      socket.destroy();
      guard.destroy();
      return;
    }
    if (out.length === 0) return;
    // One push a chunk: node's JavaScript stream handles each push on its own (a PING flood in
    // one push per frame was read at a fifteenth of the speed).
    if (!guard.push(out.length === 1 ? out[0] : Buffer.concat(out))) socket.pause();
  };
  // Done at once while little waits in the socket: node stops reading the peer while a write of
  // its is pending, and its own checks run only as it reads. Past WRITE_AHEAD_BYTES the write
  // waits for the socket, so what a peer leaves unread stays bounded.
  const send = (data: Buffer, callback: (err?: Error | null) => void): void => {
    if (socket.destroyed) return callback();
    if (socket.write(data) || socket.writableLength < WRITE_AHEAD_BYTES) return callback();
    const done = (): void => {
      socket.off('drain', done);
      socket.off('close', done);
      callback();
    };
    socket.on('drain', done);
    socket.on('close', done);
  };
  const guard = new Duplex({
    read() {
      socket.resume();
    },
    write(chunk: Buffer, _encoding, callback) {
      send(chunk, callback);
    },
    // node writes a batch of frames as several buffers (corked): one socket write for them all.
    writev(chunks, callback) {
      send(
        chunks.length === 1 ? chunks[0]!.chunk : Buffer.concat(chunks.map((c) => c.chunk as Buffer)),
        callback,
      );
    },
    final(callback) {
      // Done at once: node must not write while its shutdown is pending (its JavaScript stream
      // asserts that it does not, and aborts the process), and a peer that does not read would
      // keep the shutdown pending; writes after this one fail as writes after end do.
      socket.end();
      callback();
    },
    destroy(err, callback) {
      socket.destroy();
      callback(err);
    },
  });
  socket.on('data', take);
  socket.once('end', () => guard.push(null));
  socket.once('close', () => guard.destroy());
  if (initial.length > 0) take(initial);
  return guard;
}
