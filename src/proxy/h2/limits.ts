// The own HTTP/2 connection's settings and limits (connection.ts), in a module of their own so
// that the frame handlers (connection-frames.ts) can use them without an import cycle. Every
// limit a peer can run into has a name (H2_LIMITS): the connection reports it (onLimit), the
// proxy counts it in trellis_h2_limits_total{direction, limit} and docs/security.md lists it.

import { ErrorCode, H2ConnectionError } from './frames.ts';

/** Each stream's receive window: what one stalled stream may leave waiting in the proxy. */
export const STREAM_WINDOW = 1024 * 1024;
/**
 * The connection's receive window: many streams must not throttle each other, and it bounds what
 * paused streams (whose reader is full) may hold together: their bytes are given back to the
 * connection only when the stream reads on (stream.ts).
 */
export const CONNECTION_WINDOW = 16 * 1024 * 1024;
export const MAX_CONCURRENT_STREAMS = 1000;
/** Streams a client may cancel before their response, per second, before it loses the connection. */
export const MAX_PEER_RESETS = 1000;
/**
 * Decoded header list limit (RFC 9113 accounting: name + value + 32 per field). Going over it is
 * a connection error (the HPACK table cannot be kept in step), so it sits far above any HTTP/1
 * head a proxy accepts (http1.maxHeaderBytes, 64 KiB by default): one large request must never
 * take down the streams it shares a connection with; it gets 431 (src/proxy/http/h2-head-limits.ts).
 */
export const MAX_HEADER_LIST = 1024 * 1024;
/** Largest header block (HPACK bytes, HEADERS + CONTINUATION) assembled before giving up. */
export const MAX_HEADER_BLOCK = MAX_HEADER_LIST;
/**
 * CONTINUATION frames one header block may take (CVE-2024-27316, nghttp2's max_continuations):
 * a block of MAX_HEADER_BLOCK bytes in frames of the default 16 KiB (we never announce larger)
 * needs 63; empty ones carry nothing, so a peer that sends them without end is cut off here.
 */
export const MAX_CONTINUATION_FRAMES = 64;
/**
 * Entries in one SETTINGS frame (nghttp2's max_settings): a real peer sends a handful (RFC 9113
 * defines six). Each INITIAL_WINDOW_SIZE entry used to adjust every open stream: 2,730 of them in
 * a 16 KiB frame, with 1,000 streams open, cost 17 ms of CPU per frame.
 */
export const MAX_SETTINGS_ENTRIES = 32;
/**
 * SETTINGS frames that change INITIAL_WINDOW_SIZE while streams are open, per second, before the
 * peer loses the connection. Each adjusts every open stream: with the entries per frame bounded
 * the same work came from frames, and with 999 streams open 100,000 one-entry frames (1.5 MB) cost
 * 1.8 s of CPU, against 0.2 s with none open. A peer sets its window as it starts, if ever again.
 */
export const MAX_PEER_SETTINGS = 100;
/** Decoded header bytes one stream may receive over all its blocks (1xx, the head, trailers). */
export const MAX_STREAM_HEADER_BYTES = 2 * MAX_HEADER_LIST;
/** Decoded header bytes the open streams of one connection may hold together. */
export const MAX_CONNECTION_HEADER_BYTES = 16 * 1024 * 1024;
/**
 * Bytes queued for the socket (written, not yet taken by the kernel) past which streams stop
 * sending DATA until it drains: a peer that grants large windows but does not read stalls its
 * streams (their readers are paused) instead of filling the proxy's memory.
 */
export const DATA_HIGH_WATER = 1024 * 1024;
/**
 * Bytes queued towards peers (socket buffers, frames not yet written, stream data waiting for
 * window or for the socket): per connection, per peer (its mTLS identity, else its address) and
 * for the whole process. Over a limit, the connection that queues most in that scope is cut off.
 */
export const QUEUE_LIMITS: QueueLimits = {
  perConnection: 16 * 1024 * 1024,
  perPeer: 32 * 1024 * 1024,
  total: 64 * 1024 * 1024,
};

export interface QueueLimits {
  readonly perConnection: number;
  readonly perPeer: number;
  readonly total: number;
}

/** The limits a peer can run into; each is reported when hit (onLimit). */
export const H2_LIMITS = [
  'continuation-frames', // CONTINUATION frames per header block (connection error)
  'header-block-bytes', // HPACK bytes per header block (connection error)
  'header-list-bytes', // decoded bytes per header block, MAX_HEADER_LIST (connection error)
  'stream-header-bytes', // decoded header bytes per stream (stream reset)
  'connection-header-bytes', // decoded header bytes held by a connection's streams (stream refused)
  'peer-resets', // streams the peer reset before their response, per second (connection error)
  'settings-entries', // entries in one SETTINGS frame (connection error)
  'settings-frames', // SETTINGS frames changing INITIAL_WINDOW_SIZE per second (connection error)
  'unread-bytes', // bytes queued towards one connection (connection cut off)
  'peer-queued-bytes', // bytes queued towards one peer's connections (the largest is cut off)
  'total-queued-bytes', // bytes queued towards all peers (the largest connection is cut off)
] as const;

export type H2Limit = (typeof H2_LIMITS)[number];

/** A connection error caused by a limit: GOAWAY ENHANCE_YOUR_CALM, reported as `limit`. */
export class H2LimitError extends H2ConnectionError {
  readonly limit: H2Limit;
  constructor(limit: H2Limit, message: string) {
    super(ErrorCode.ENHANCE_YOUR_CALM, message);
    this.limit = limit;
  }
}

/** Events of one kind counted in windows of a second: over `max` in one, the peer did too many. */
export class PerSecond {
  private readonly max: number;
  private windowStart = 0;
  private inWindow = 0;

  constructor(max: number) {
    this.max = max;
  }

  /** Counts one event at `now` (ms); true when it is over the bound. */
  count(now: number): boolean {
    if (now - this.windowStart >= 1000) {
      this.windowStart = now;
      this.inWindow = 0;
    }
    return ++this.inWindow > this.max;
  }
}
