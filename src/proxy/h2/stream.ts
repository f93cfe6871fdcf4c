// One HTTP/2 stream of the project's own connection (connection.ts): state, flow control and the
// calls its user makes. A stream is a plain object with one handler, not a Duplex: the mesh's
// HTTP/1 paths (src/proxy/mesh/h1-over-h2.ts, h1-from-h2.ts) already hold the state of their
// exchange and want frames, not a byte stream.
//
// Sending: write() sends what the windows allow at once and queues the rest; it returns false
// while anything is queued, and the handler's onDrain runs when the queue is empty again.
// Receiving: DATA is handed to the handler as it arrives; its window is given back to the peer
// at once unless the stream is paused (the handler's own output is full), so at most one window
// (limits.ts: STREAM_WINDOW) waits in the proxy per paused stream. What arrives while the stream
// is paused is also held from the connection's window until the stream resumes (or closes), so
// the paused streams of one connection hold at most CONNECTION_WINDOW together.

import { ErrorCode } from './frames.ts';

const EMPTY = Buffer.alloc(0);

export interface H2StreamHandler {
  /** A header block: the response (or an interim 1xx) on the client, trailers on either side. */
  onHeaders(fields: string[], endStream: boolean): void;
  onData(chunk: Buffer, endStream: boolean): void;
  /** The stream is over: `code` null when both sides ended it, else the RST_STREAM code. */
  onClose(code: number | null): void;
  /** Everything written was sent (after a write() that returned false). */
  onDrain(): void;
}

/** What a stream needs from its connection. */
export interface StreamOwner {
  sendHeaders(stream: H2Stream, fields: readonly string[], endStream: boolean): void;
  /** Sends what the windows allow of `data`; returns how many bytes it sent. */
  sendData(stream: H2Stream, data: Buffer, endStream: boolean): number;
  sendReset(stream: H2Stream, code: number): void;
  creditStream(stream: H2Stream): void;
  /** Gives `bytes` of the connection's receive window back (held while the stream was paused). */
  creditConnection(bytes: number): void;
  /** Stream data waiting for window or for the socket grew (or shrank) by `delta` bytes. */
  pendingChanged(delta: number): void;
  streamClosed(stream: H2Stream, code: number | null): void;
}

export class H2Stream {
  readonly id: number;
  handler: H2StreamHandler | null = null;
  /** How many bytes we may send (the peer's window for this stream). */
  sendWindow: number;
  /** How many bytes the peer may still send before we give window back. */
  recvWindow: number;
  /** Received bytes not yet given back. */
  unacked = 0;
  /** Received while paused: not yet given back to the connection's window either. */
  held = 0;
  /** Decoded header bytes received on this stream (all blocks), for the header limits. */
  headerBytes = 0;
  localEnded = false;
  remoteEnded = false;
  closed = false;
  /** Headers were sent (the first block: a request on the client, a response on the server). */
  headersSent = false;
  paused = false;
  private pending: Buffer[] | null = null;
  private pendingEnd = false;
  /** Bytes in `pending`. */
  private pendingBytes = 0;
  private readonly owner: StreamOwner;

  constructor(owner: StreamOwner, id: number, sendWindow: number, recvWindow: number) {
    this.owner = owner;
    this.id = id;
    this.sendWindow = sendWindow;
    this.recvWindow = recvWindow;
  }

  /** Sends a header block (request, response, interim response or trailers). */
  sendHeaders(fields: readonly string[], endStream: boolean): void {
    if (this.closed || this.localEnded) return;
    this.headersSent = true;
    if (endStream) this.localEnded = true;
    this.owner.sendHeaders(this, fields, endStream);
    if (endStream) this.maybeClose();
  }

  /** Sends body bytes; false when some wait for window (onDrain follows). */
  write(data: Buffer, endStream = false): boolean {
    if (this.closed || this.localEnded) return true;
    if (this.pending !== null) {
      if (data.length > 0) {
        this.pending.push(data);
        this.queue(data.length);
      }
      if (endStream) this.pendingEnd = true;
      return false;
    }
    const sent = this.owner.sendData(this, data, endStream);
    if (sent === data.length) {
      if (endStream) {
        this.localEnded = true;
        this.maybeClose();
      }
      return true;
    }
    this.pending = [sent === 0 ? data : data.subarray(sent)];
    this.queue(data.length - sent);
    this.pendingEnd = endStream;
    return false;
  }

  private queue(delta: number): void {
    this.pendingBytes += delta;
    this.owner.pendingChanged(delta);
  }

  end(): void {
    this.write(EMPTY, true);
  }

  /** Closes the stream now with RST_STREAM `code` (nothing is sent once it is closed). */
  reset(code: number = ErrorCode.CANCEL): void {
    if (this.closed) return;
    this.owner.sendReset(this, code);
    this.close(code);
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    if (this.unacked > 0) this.owner.creditStream(this);
    this.releaseHeld();
  }

  private releaseHeld(): void {
    const held = this.held;
    if (held === 0) return;
    this.held = 0;
    this.owner.creditConnection(held);
  }

  /** Queued bytes, for the connection's accounting of what waits for window. */
  get blocked(): boolean {
    return this.pending !== null;
  }

  /** Window opened: sends what is queued; true when the queue is now empty. */
  flushPending(): boolean {
    const q = this.pending;
    if (q === null) return true;
    let endSent = false;
    while (q.length > 0) {
      const data = q[0]!;
      const end = q.length === 1 && this.pendingEnd;
      const sent = this.owner.sendData(this, data, end);
      if (sent > 0) this.queue(-sent);
      if (sent < data.length) {
        q[0] = data.subarray(sent);
        return false;
      }
      q.shift();
      endSent = end;
    }
    this.pending = null;
    if (this.pendingEnd) {
      // An end that came after the last queued bytes went out goes out on its own.
      if (!endSent) this.owner.sendData(this, EMPTY, true);
      this.localEnded = true;
      this.maybeClose();
    }
    if (!this.closed) this.handler?.onDrain();
    return true;
  }

  /** The peer ended its side (END_STREAM). */
  remoteEnd(): void {
    this.remoteEnded = true;
    this.maybeClose();
  }

  private maybeClose(): void {
    if (this.localEnded && this.remoteEnded && !this.closed) this.close(null);
  }

  /** Marks the stream closed and tells its handler (once). */
  close(code: number | null): void {
    if (this.closed) return;
    this.closed = true;
    this.pending = null;
    if (this.pendingBytes > 0) this.queue(-this.pendingBytes);
    this.releaseHeld();
    this.owner.streamClosed(this, code);
    this.handler?.onClose(code);
  }
}
