// The project's own minimal HTTP/2 connection (RFC 9113), client or server side, for the hop
// between two Trellis proxies (ALPN trellis-h2h1/1, src/proxy/mesh/protocol.ts): HTTP/1 requests
// as HTTP/2 streams. Why our own and not node:http2: see frames.ts. What it does: the preface and
// SETTINGS exchange, HEADERS/CONTINUATION with HPACK (hpack.ts), DATA with flow control both ways,
// RST_STREAM, PING, GOAWAY, WINDOW_UPDATE; PRIORITY and unknown frame types are ignored, server
// push is refused. What it leaves out: priorities, the dynamic table on the sending side (hpack.ts
// says why), and SETTINGS timeouts (the peer is a proxy that passed mTLS).
//
// Everything written in one event-loop turn leaves in one socket write (setImmediate), so a
// burst of requests from many HTTP/1 clients shares one TLS record instead of paying one each.
// Frame handling, per-type checks and connection errors live in connection-frames.ts.
//
// What a peer can make it hold is bounded (limits.ts): header blocks (bytes, CONTINUATION frames),
// header bytes per stream and per connection, resets, and what is queued towards the peer: DATA
// waits while the socket holds DATA_HIGH_WATER, and the queue counts in the process's budget
// (queue-budget.ts), which cuts off the connection that queues most when a peer or the process
// queues too much. Every limit hit is reported (onLimit) for the caller to count and log.

import type net from 'node:net';
import { HpackDecoder, HpackEncoder } from './hpack.ts';
import { ErrorCode, FrameReader, FrameWriter, H2ConnectionError, Setting, DEFAULT_WINDOW } from './frames.ts';
import { CLIENT_PREFACE, DEFAULT_MAX_FRAME_SIZE, MAX_WINDOW } from './frames.ts';
import { handleFrame } from './connection-frames.ts';
import {
  CONNECTION_WINDOW,
  DATA_HIGH_WATER,
  H2LimitError,
  MAX_CONCURRENT_STREAMS,
  MAX_HEADER_LIST,
  MAX_PEER_RESETS,
  MAX_PEER_SETTINGS,
  PerSecond,
  STREAM_WINDOW,
  type H2Limit,
} from './limits.ts';
import { processQueueBudget, type QueueBudget, type QueueEntry, type QueueMember } from './queue-budget.ts';
import { H2Stream, type StreamOwner } from './stream.ts';
import { StreamTable } from './stream-table.ts';

export interface H2ConnectionOptions {
  readonly role: 'client' | 'server';
  /** Server: a new stream from the peer with its request header block. */
  onStream?(stream: H2Stream, fields: string[], endStream: boolean): void;
  /** The peer's first SETTINGS arrived: streams may be opened (client). */
  onReady?(): void;
  /** A stream closed or the peer changed its limits: room for new streams may have appeared. */
  onRoom?(): void;
  /** The peer sent GOAWAY: no new streams on this connection. */
  onGoaway?(code: number): void;
  /** The connection is gone (socket closed); `err` when it failed. */
  onClose?(err: Error | null): void;
  /** A limit of limits.ts was hit (the connection then fails, or resets or refuses a stream). */
  onLimit?(limit: H2Limit, message: string): void;
  /** Who the peer is for the queue limits: its mTLS identity, else (default) its address. */
  peer?: string;
  /** The queue budget the connection counts in (default: the process's, queue-budget.ts). */
  budget?: QueueBudget;
  /** Bytes queued towards the peer before it is cut off (default QUEUE_LIMITS.perConnection). */
  maxUnreadBytes?: number;
}

export class H2Connection implements StreamOwner, QueueMember {
  readonly socket: net.Socket;
  readonly role: 'client' | 'server';
  readonly opts: H2ConnectionOptions;
  readonly streams = new StreamTable<H2Stream>();
  readonly reader = new FrameReader();
  readonly writer = new FrameWriter();
  readonly decoder = new HpackDecoder(4096, MAX_HEADER_LIST);
  readonly encoder = new HpackEncoder();
  /** The peer's settings. */
  peerMaxStreams = Infinity;
  peerInitialWindow = DEFAULT_WINDOW;
  peerMaxFrameSize = DEFAULT_MAX_FRAME_SIZE;
  sendWindow = DEFAULT_WINDOW;
  recvWindow = CONNECTION_WINDOW;
  recvUnacked = 0;
  /** Streams waiting for the connection's window or for the socket (not for their own window). */
  readonly blocked = new Set<H2Stream>();
  /** The highest stream id the peer opened (server) / we opened (client). */
  lastStreamId = 0;
  /** Client: the lowest last stream id of the peer's GOAWAYs (streams above it were refused). */
  peerGoawayLast = Infinity;
  /** Streams opened so far (the pool's idle check compares it over time). */
  streamsOpened = 0;
  private nextStreamId = 1;
  /** A header block in progress (HEADERS without END_HEADERS, then CONTINUATION). */
  continuation: { streamId: number; flags: number; parts: Buffer[]; size: number; frames: number } | null =
    null;
  /** Decoded header bytes the open streams hold (their headerBytes), for the header limits. */
  headerBytesHeld = 0;
  /** Stream data waiting for window or for the socket (the streams' pending queues). */
  private pendingBytes = 0;
  private readonly budget: QueueBudget;
  private readonly budgetEntry: QueueEntry;
  private readonly maxUnread: number;
  ready = false;
  goingAway = false;
  closed = false;
  private prefaceLeft: number;
  private readonly peerResets = new PerSecond(MAX_PEER_RESETS);
  private readonly peerSettings = new PerSecond(MAX_PEER_SETTINGS);
  private flushScheduled = false;
  private readonly flushNow = (): void => this.flush();
  private readonly onFrame = (type: number, flags: number, id: number, payload: Buffer): void =>
    handleFrame(this, type, flags, id, payload);

  constructor(socket: net.Socket, opts: H2ConnectionOptions) {
    this.socket = socket;
    this.role = opts.role;
    this.opts = opts;
    this.prefaceLeft = opts.role === 'server' ? CLIENT_PREFACE.length : 0;
    if (opts.role === 'client') this.writer.bytes(CLIENT_PREFACE);
    this.writer.settings([
      [Setting.ENABLE_PUSH, 0],
      [Setting.MAX_CONCURRENT_STREAMS, MAX_CONCURRENT_STREAMS],
      [Setting.INITIAL_WINDOW_SIZE, STREAM_WINDOW],
      [Setting.MAX_HEADER_LIST_SIZE, MAX_HEADER_LIST],
    ]);
    this.writer.windowUpdate(0, CONNECTION_WINDOW - DEFAULT_WINDOW);
    this.scheduleFlush();
    this.budget = opts.budget ?? processQueueBudget;
    this.maxUnread = opts.maxUnreadBytes ?? this.budget.limits.perConnection;
    this.budgetEntry = this.budget.join(this, opts.peer ?? socket.remoteAddress ?? '');
    socket.on('data', (chunk: Buffer) => this.onBytes(chunk));
    socket.on('drain', () => {
      if (this.checkQueue()) this.unblock();
    });
    socket.on('error', (err) => this.destroy(err));
    socket.once('close', () => this.destroy(null));
    socket.once('end', () => this.destroy(null));
  }

  /** Streams open now. */
  get active(): number {
    return this.streams.size;
  }

  /** Whether a new stream may be opened now (client). */
  hasRoom(): boolean {
    return this.ready && !this.goingAway && !this.closed && this.streams.size < this.peerMaxStreams;
  }

  /** Opens a stream with its request headers (client); null when there is no room. */
  request(fields: readonly string[], endStream: boolean, handler: H2Stream['handler']): H2Stream | null {
    if (!this.hasRoom()) return null;
    const id = this.nextStreamId;
    if (id > MAX_WINDOW) {
      this.goingAway = true; // stream ids are spent: a new connection takes over
      return null;
    }
    this.nextStreamId += 2;
    this.lastStreamId = id;
    this.streamsOpened++;
    const stream = new H2Stream(this, id, this.peerInitialWindow, STREAM_WINDOW);
    stream.handler = handler;
    this.streams.set(id, stream);
    stream.sendHeaders(fields, endStream);
    return stream;
  }

  /** Server: a stream the peer opened. */
  acceptStream(id: number): H2Stream {
    const stream = new H2Stream(this, id, this.peerInitialWindow, STREAM_WINDOW);
    this.streams.set(id, stream);
    return stream;
  }

  // ---- StreamOwner ----------------------------------------------------------------------

  sendHeaders(stream: H2Stream, fields: readonly string[], endStream: boolean): void {
    this.writer.headers(stream.id, this.encoder.encode(fields), endStream, this.peerMaxFrameSize);
    this.scheduleFlush();
  }

  sendData(stream: H2Stream, data: Buffer, endStream: boolean): number {
    if (data.length > 0 && this.overHighWater()) {
      this.blocked.add(stream); // the socket's 'drain' sends on (unblock)
      return 0;
    }
    const n = Math.min(data.length, stream.sendWindow, this.sendWindow);
    if (n < data.length) {
      // Short of the connection's window: it waits in `blocked` for unblock(). Short of its own
      // only: its WINDOW_UPDATE (or a larger INITIAL_WINDOW_SIZE) sends on, and unblock() need not
      // visit it (each WINDOW_UPDATE on the connection retried every such stream for nothing).
      if (stream.sendWindow > Math.max(n, 0)) this.blocked.add(stream);
      if (n <= 0) return 0;
      this.writer.data(stream.id, data.subarray(0, n), false, this.peerMaxFrameSize);
    } else this.writer.data(stream.id, data, endStream, this.peerMaxFrameSize);
    stream.sendWindow -= n;
    this.sendWindow -= n;
    this.scheduleFlush();
    return n;
  }

  sendReset(stream: H2Stream, code: number): void {
    if (this.closed) return;
    this.writer.rstStream(stream.id, code);
    this.scheduleFlush();
  }

  creditStream(stream: H2Stream): void {
    if (stream.remoteEnded || stream.closed || stream.unacked === 0) return;
    this.writer.windowUpdate(stream.id, stream.unacked);
    stream.recvWindow += stream.unacked;
    stream.unacked = 0;
    this.scheduleFlush();
  }

  creditConnection(bytes: number): void {
    if (this.closed) return;
    this.recvUnacked += bytes;
    if (this.recvUnacked < CONNECTION_WINDOW / 4) return;
    this.writer.windowUpdate(0, this.recvUnacked);
    this.recvWindow += this.recvUnacked;
    this.recvUnacked = 0;
    this.scheduleFlush();
  }

  pendingChanged(delta: number): void {
    this.pendingBytes += delta;
  }

  streamClosed(stream: H2Stream): void {
    if (this.closed) return;
    this.headerBytesHeld -= stream.headerBytes;
    this.streams.delete(stream.id);
    this.blocked.delete(stream);
    if (this.goingAway && this.streams.size === 0) this.finish();
    else this.opts.onRoom?.();
  }

  // ---- input ------------------------------------------------------------------------------

  private onBytes(chunk: Buffer): void {
    if (this.closed) return;
    // A peer that keeps sending (PINGs, SETTINGS, requests) but does not read what we answer
    // would make the answers pile up: past the queue limits it is cut off.
    if (!this.checkQueue()) return;
    try {
      if (this.prefaceLeft > 0) {
        const n = Math.min(this.prefaceLeft, chunk.length);
        const at = CLIENT_PREFACE.length - this.prefaceLeft;
        if (!chunk.subarray(0, n).equals(CLIENT_PREFACE.subarray(at, at + n)))
          throw new H2ConnectionError(ErrorCode.PROTOCOL_ERROR, 'not the HTTP/2 connection preface');
        this.prefaceLeft -= n;
        chunk = chunk.subarray(n);
        if (chunk.length === 0) return;
      }
      this.reader.push(chunk, this.onFrame);
    } catch (err) {
      this.fail(err);
    }
  }

  // ---- what is queued towards the peer (QueueMember) ---------------------------------------

  /** Bytes queued towards the peer: in the socket, in frames not yet written, in stream queues. */
  queuedBytes(): number {
    return this.socket.writableLength + this.writer.length + this.pendingBytes;
  }

  shed(limit: H2Limit, message: string): void {
    this.fail(new H2LimitError(limit, message), true);
  }

  /** Reports the queue to the budget; false when the connection was cut off for it. */
  private checkQueue(): boolean {
    if (this.closed) return false;
    const bytes = this.queuedBytes();
    if (bytes > this.maxUnread) {
      this.shed('unread-bytes', `the peer does not read what it asks for (${bytes} bytes queued)`);
      return false;
    }
    this.budget.update(this.budgetEntry, bytes);
    return !this.closed;
  }

  /** Enough waits for the socket: DATA stops until it drains. */
  private overHighWater(): boolean {
    return this.socket.writableLength + this.writer.length >= DATA_HIGH_WATER;
  }

  /**
   * Window opened or the socket drained: the streams that wait send what they can, in turn, until
   * the window or the socket is full again. Each stream visited sends something (it has window of
   * its own), so a small WINDOW_UPDATE costs a visit or two, not one per waiting stream; one that
   * is still short goes back to the end of the set, and no stream is visited twice in one call.
   */
  unblock(): void {
    let left = this.blocked.size;
    for (const s of this.blocked) {
      if (left-- === 0 || this.sendWindow <= 0 || this.overHighWater() || this.closed) return;
      this.blocked.delete(s);
      s.flushPending(); // (re-adds the stream when it is still short of the connection's window)
    }
  }

  /** Reports a stream-level limit (the caller resets or refuses the stream). */
  limitHit(limit: H2Limit, message: string): void {
    this.opts.onLimit?.(limit, message);
  }

  /** Counts a stream the peer reset before its response; true when it has done so too often. */
  countPeerReset(): boolean {
    return this.peerResets.count(Date.now());
  }

  /** Counts a SETTINGS frame from the peer; true when it has sent too many (MAX_PEER_SETTINGS). */
  countPeerSettings(): boolean {
    return this.peerSettings.count(Date.now());
  }

  /** The peer's SETTINGS (first one: the connection is ready). */
  settingsApplied(): void {
    if (this.ready) {
      this.opts.onRoom?.();
      return;
    }
    this.ready = true;
    this.opts.onReady?.();
  }

  /**
   * A connection error: GOAWAY with its code, then the socket closes (at once when `now`: what is
   * queued for a peer that does not read must not stay in memory).
   */
  fail(err: unknown, now = false): void {
    const e = err instanceof Error ? err : new Error(String(err));
    const code = e instanceof H2ConnectionError ? e.code : ErrorCode.INTERNAL_ERROR;
    if (this.closed) return;
    if (e instanceof H2LimitError) this.opts.onLimit?.(e.limit, e.message);
    this.writer.goaway(this.role === 'server' ? this.lastStreamId : 0, code, e.message);
    this.writeOut();
    if (!now) this.endSocket();
    this.destroy(e);
  }

  // ---- output and lifecycle ----------------------------------------------------------------

  scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(this.flushNow);
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.writeOut()) this.checkQueue();
  }

  /** Writes what the frame writer holds; true when it wrote anything. */
  private writeOut(): boolean {
    if (this.closed) return false;
    const out = this.writer.take();
    if (out === null) return false;
    this.socket.write(out);
    return true;
  }

  /**
   * No new streams: the server tells the peer which streams it will still answer; the
   * connection closes once the open ones are done.
   */
  shutdown(): void {
    if (this.closed) return;
    if (!this.goingAway) {
      this.goingAway = true;
      this.writer.goaway(this.role === 'server' ? this.lastStreamId : 0, ErrorCode.NO_ERROR, '');
      this.scheduleFlush();
    }
    if (this.streams.size === 0) this.finish();
  }

  /** Flushes and closes the socket (after GOAWAY, with nothing open). */
  private finish(): void {
    this.writeOut();
    this.endSocket();
    this.destroy(null);
  }

  /** Ends the socket after what is queued (the peer closes its side; if not, it is cut). */
  private endSocket(): void {
    const socket = this.socket;
    socket.end();
    setTimeout(() => socket.destroy(), 5_000).unref();
  }

  destroy(err: Error | null): void {
    if (this.closed) return;
    this.closed = true;
    this.goingAway = true;
    if (!this.socket.writableEnded) this.socket.destroy();
    this.budget.leave(this.budgetEntry);
    for (const stream of this.streams.values()) stream.close(ErrorCode.CANCEL);
    this.streams.clear();
    this.blocked.clear();
    this.headerBytesHeld = 0;
    this.opts.onClose?.(err);
  }
}
