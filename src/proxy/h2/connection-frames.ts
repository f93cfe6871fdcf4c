// What the own HTTP/2 connection (connection.ts) does with each frame it receives, with the checks
// RFC 9113 section 6 asks of each type. A problem with the connection as a whole throws
// H2ConnectionError (the connection sends GOAWAY and closes); a problem with one stream resets
// that stream and the others go on.

import type { H2Connection } from './connection.ts';
import type { H2Stream } from './stream.ts';
import {
  H2LimitError,
  MAX_CONCURRENT_STREAMS,
  MAX_CONNECTION_HEADER_BYTES,
  MAX_CONTINUATION_FRAMES,
  MAX_HEADER_BLOCK,
  MAX_PEER_SETTINGS,
  MAX_SETTINGS_ENTRIES,
  MAX_STREAM_HEADER_BYTES,
  STREAM_WINDOW,
} from './limits.ts';
import { checkFields } from './fields.ts';
import { ErrorCode, Flag, FrameType, H2ConnectionError, MAX_WINDOW, Setting } from './frames.ts';
import { HpackError, HpackListSizeError } from './hpack.ts';

function protocolError(message: string): H2ConnectionError {
  return new H2ConnectionError(ErrorCode.PROTOCOL_ERROR, message);
}

function frameSizeError(what: string): H2ConnectionError {
  return new H2ConnectionError(ErrorCode.FRAME_SIZE_ERROR, `${what} frame has a wrong length`);
}

export function handleFrame(c: H2Connection, type: number, flags: number, id: number, payload: Buffer): void {
  if (c.continuation !== null && type !== FrameType.CONTINUATION)
    throw protocolError('a header block was interrupted by another frame');
  if (!c.ready && type !== FrameType.SETTINGS) throw protocolError('the peer did not start with SETTINGS');
  switch (type) {
    case FrameType.DATA:
      onData(c, flags, id, payload);
      return;
    case FrameType.HEADERS:
      onHeaders(c, flags, id, payload);
      return;
    case FrameType.CONTINUATION:
      onContinuation(c, flags, id, payload);
      return;
    case FrameType.RST_STREAM:
      onReset(c, id, payload);
      return;
    case FrameType.SETTINGS:
      onSettings(c, flags, id, payload);
      return;
    case FrameType.PING:
      if (id !== 0) throw protocolError('PING on a stream');
      if (payload.length !== 8) throw frameSizeError('PING');
      if ((flags & Flag.ACK) === 0) {
        c.writer.frame(FrameType.PING, Flag.ACK, 0, payload);
        c.scheduleFlush();
      }
      return;
    case FrameType.GOAWAY:
      onGoaway(c, id, payload);
      return;
    case FrameType.WINDOW_UPDATE:
      onWindowUpdate(c, id, payload);
      return;
    case FrameType.PRIORITY:
      if (id === 0) throw protocolError('PRIORITY on stream 0');
      if (payload.length !== 5) {
        const s = c.streams.get(id);
        if (s !== undefined) streamError(c, s, ErrorCode.FRAME_SIZE_ERROR);
      }
      return;
    case FrameType.PUSH_PROMISE:
      throw protocolError('server push was disabled');
    default:
    // Unknown frame types are ignored (RFC 9113 5.5).
  }
}

/** The payload without its padding (PADDED flag). */
function unpadded(flags: number, payload: Buffer): Buffer {
  if ((flags & Flag.PADDED) === 0) return payload;
  if (payload.length < 1) throw protocolError('padded frame without a pad length');
  const pad = payload[0]!;
  if (pad >= payload.length) throw protocolError('padding longer than the frame');
  return payload.subarray(1, payload.length - pad);
}

function onData(c: H2Connection, flags: number, id: number, payload: Buffer): void {
  if (id === 0) throw protocolError('DATA on stream 0');
  const len = payload.length;
  c.recvWindow -= len;
  if (c.recvWindow < 0)
    throw new H2ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, 'connection window exceeded');
  const s = c.streams.get(id);
  if (s === undefined) {
    if (id > c.lastStreamId) throw protocolError(`DATA on idle stream ${id}`);
    return refuseData(c, id, undefined, len, ErrorCode.STREAM_CLOSED);
  }
  if (s.remoteEnded) return refuseData(c, id, s, len, ErrorCode.STREAM_CLOSED);
  s.recvWindow -= len;
  if (s.recvWindow < 0) return refuseData(c, id, s, len, ErrorCode.FLOW_CONTROL_ERROR);
  // The connection's window is given back at once, unless the stream is paused (its reader is
  // full): then the stream holds it until it resumes, so paused streams hold one window at most.
  if (s.paused) s.held += len;
  else c.creditConnection(len);
  const data = unpadded(flags, payload);
  const end = (flags & Flag.END_STREAM) !== 0;
  s.unacked += len;
  if (!end && !s.paused && s.unacked >= STREAM_WINDOW / 4) c.creditStream(s);
  if (end) s.remoteEnded = true;
  s.handler?.onData(data, end);
  if (end) s.remoteEnd();
}

/**
 * DATA that stream `id` does not take (`s`: its stream, undefined when it is closed) is refused
 * with RST_STREAM `code`; its `len` bytes counted against the connection's window all the same,
 * and are given back at once.
 */
function refuseData(c: H2Connection, id: number, s: H2Stream | undefined, len: number, code: number): void {
  c.creditConnection(len);
  if (s !== undefined) return streamError(c, s, code);
  c.writer.rstStream(id, code);
  c.scheduleFlush();
}

function onHeaders(c: H2Connection, flags: number, id: number, payload: Buffer): void {
  if (id === 0) throw protocolError('HEADERS on stream 0');
  let block = unpadded(flags, payload);
  if ((flags & Flag.PRIORITY) !== 0) {
    if (block.length < 5) throw frameSizeError('HEADERS');
    block = block.subarray(5);
  }
  if ((flags & Flag.END_HEADERS) === 0) {
    c.continuation = { streamId: id, flags, parts: [Buffer.from(block)], size: block.length, frames: 0 };
    return;
  }
  headerBlock(c, id, flags, block);
}

function onContinuation(c: H2Connection, flags: number, id: number, payload: Buffer): void {
  const k = c.continuation;
  if (k === null || k.streamId !== id) throw protocolError('CONTINUATION without its HEADERS');
  if (++k.frames > MAX_CONTINUATION_FRAMES)
    throw new H2LimitError(
      'continuation-frames',
      `header block in over ${MAX_CONTINUATION_FRAMES} CONTINUATION frames`,
    );
  k.size += payload.length;
  if (k.size > MAX_HEADER_BLOCK)
    throw new H2LimitError('header-block-bytes', `header block over ${MAX_HEADER_BLOCK} bytes`);
  if (payload.length > 0) k.parts.push(Buffer.from(payload));
  if ((flags & Flag.END_HEADERS) === 0) return;
  c.continuation = null;
  headerBlock(c, id, k.flags, Buffer.concat(k.parts, k.size));
}

function headerBlock(c: H2Connection, id: number, flags: number, block: Buffer): void {
  let fields: string[];
  try {
    fields = c.decoder.decode(block);
  } catch (err) {
    // The decoder's table is now out of step with the peer's: the connection cannot go on.
    if (err instanceof HpackListSizeError) throw new H2LimitError('header-list-bytes', err.message);
    if (err instanceof HpackError) throw new H2ConnectionError(ErrorCode.COMPRESSION_ERROR, err.message);
    throw err;
  }
  const end = (flags & Flag.END_STREAM) !== 0;
  const size = c.decoder.lastListSize;
  let s = c.streams.get(id);
  if (s === undefined) {
    if (c.role === 'client' || id <= c.lastStreamId) {
      if (id > c.lastStreamId) throw protocolError(`HEADERS on idle stream ${id}`);
      return; // a stream we already closed (reset): its late headers are dropped
    }
    if (id % 2 === 0) throw protocolError(`client opened even stream ${id}`);
    c.lastStreamId = id;
    const full = c.headerBytesHeld + size > MAX_CONNECTION_HEADER_BYTES;
    if (c.goingAway || c.streams.size >= MAX_CONCURRENT_STREAMS || full) {
      if (full)
        c.limitHit(
          'connection-header-bytes',
          `open streams hold over ${MAX_CONNECTION_HEADER_BYTES} header bytes`,
        );
      c.writer.rstStream(id, ErrorCode.REFUSED_STREAM);
      c.scheduleFlush();
      return;
    }
    s = c.acceptStream(id);
    s.headerBytes = size;
    c.headerBytesHeld += size;
    if (checkFields(fields, 'request') !== null) {
      streamError(c, s, ErrorCode.PROTOCOL_ERROR);
      return;
    }
    if (end) s.remoteEnded = true;
    c.opts.onStream?.(s, fields, end);
    return;
  }
  if (s.remoteEnded) {
    streamError(c, s, ErrorCode.STREAM_CLOSED);
    return;
  }
  // Every block counts (a server may send 1xx responses without end): per stream, and towards
  // what the connection's streams hold.
  s.headerBytes += size;
  c.headerBytesHeld += size;
  if (s.headerBytes > MAX_STREAM_HEADER_BYTES || c.headerBytesHeld > MAX_CONNECTION_HEADER_BYTES) {
    const perStream = s.headerBytes > MAX_STREAM_HEADER_BYTES;
    c.limitHit(
      perStream ? 'stream-header-bytes' : 'connection-header-bytes',
      perStream
        ? `stream ${id} received over ${MAX_STREAM_HEADER_BYTES} header bytes`
        : `open streams hold over ${MAX_CONNECTION_HEADER_BYTES} header bytes`,
    );
    streamError(c, s, ErrorCode.ENHANCE_YOUR_CALM);
    return;
  }
  const kind = fields[0] === ':status' ? 'response' : 'trailers';
  if (c.role === 'server' && !end) {
    streamError(c, s, ErrorCode.PROTOCOL_ERROR); // a second block from a client can only be trailers
    return;
  }
  if (checkFields(fields, kind) !== null) {
    streamError(c, s, ErrorCode.PROTOCOL_ERROR);
    return;
  }
  if (end) s.remoteEnded = true;
  s.handler?.onHeaders(fields, end);
  if (end) s.remoteEnd();
}

function onReset(c: H2Connection, id: number, payload: Buffer): void {
  if (id === 0) throw protocolError('RST_STREAM on stream 0');
  if (payload.length !== 4) throw frameSizeError('RST_STREAM');
  if (id > c.lastStreamId) throw protocolError(`RST_STREAM on idle stream ${id}`);
  const s = c.streams.get(id);
  if (s === undefined) return;
  countPeerReset(c, s);
  s.close(payload.readUInt32BE(0));
}

/**
 * Opening streams and resetting them at once costs the peer nothing and us an exchange each (the
 * "rapid reset" attack, CVE-2023-44487): a client that cancels more than MAX_PEER_RESETS streams
 * a second before their response is refused the connection. A stream we reset because of the
 * peer's frame counts the same ("MadeYouReset", CVE-2025-8671): a WINDOW_UPDATE of 0 or a
 * PRIORITY of the wrong size after each request cancelled it just as cheaply.
 */
function countPeerReset(c: H2Connection, s: H2Stream): void {
  if (c.role === 'server' && !s.localEnded && c.countPeerReset())
    throw new H2LimitError('peer-resets', 'too many streams reset by the peer or for its errors');
}

/** A stream error caused by the peer's frame: the stream is reset with `code`, and counted. */
function streamError(c: H2Connection, s: H2Stream, code: number): void {
  countPeerReset(c, s);
  s.reset(code);
}

function onSettings(c: H2Connection, flags: number, id: number, payload: Buffer): void {
  if (id !== 0) throw protocolError('SETTINGS on a stream');
  if ((flags & Flag.ACK) !== 0) {
    if (payload.length !== 0) throw frameSizeError('SETTINGS ACK');
    return;
  }
  if (payload.length % 6 !== 0) throw frameSizeError('SETTINGS');
  if (payload.length / 6 > MAX_SETTINGS_ENTRIES)
    throw new H2LimitError('settings-entries', `SETTINGS frame of over ${MAX_SETTINGS_ENTRIES} entries`);
  let initialWindow = -1;
  for (let off = 0; off < payload.length; off += 6) {
    const key = payload.readUInt16BE(off);
    const value = payload.readUInt32BE(off + 2);
    switch (key) {
      case Setting.ENABLE_PUSH:
        if (value > 1) throw protocolError('SETTINGS_ENABLE_PUSH must be 0 or 1');
        break;
      case Setting.MAX_CONCURRENT_STREAMS:
        c.peerMaxStreams = value;
        break;
      case Setting.INITIAL_WINDOW_SIZE:
        if (value > MAX_WINDOW)
          throw new H2ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, 'SETTINGS_INITIAL_WINDOW_SIZE too large');
        initialWindow = value; // applied once, after the frame: every open stream is adjusted
        break;
      case Setting.MAX_FRAME_SIZE:
        if (value < 16_384 || value > 16_777_215) throw protocolError('SETTINGS_MAX_FRAME_SIZE out of range');
        c.peerMaxFrameSize = value;
        break;
      case Setting.HEADER_TABLE_SIZE:
        // Our encoder never inserts into the table, but a peer that shrinks it expects a size
        // update at the start of our next block (nghttp2 insists): one byte, once.
        c.encoder.peerHeaderTableSizeChanged();
        break;
      default:
      // MAX_HEADER_LIST_SIZE is advisory; unknown settings are ignored (RFC 9113 6.5.2).
    }
  }
  if (initialWindow !== -1 && initialWindow !== c.peerInitialWindow) {
    // Every open stream is adjusted: a peer that keeps changing it is cut off (MAX_PEER_SETTINGS).
    if (c.streams.size > 0 && c.countPeerSettings())
      throw new H2LimitError(
        'settings-frames',
        `INITIAL_WINDOW_SIZE changed over ${MAX_PEER_SETTINGS} times in a second`,
      );
    const delta = initialWindow - c.peerInitialWindow;
    c.peerInitialWindow = initialWindow;
    for (const s of c.streams.values()) {
      s.sendWindow += delta;
      if (s.sendWindow > MAX_WINDOW)
        throw new H2ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, 'stream window over 2^31-1');
      // A stream that waited for its own window waits for the connection's now (unblock, below).
      if (delta > 0 && s.blocked && s.sendWindow > 0) c.blocked.add(s);
    }
  }
  c.writer.frame(FrameType.SETTINGS, Flag.ACK, 0, null);
  c.scheduleFlush();
  c.unblock();
  c.settingsApplied();
}

function onGoaway(c: H2Connection, id: number, payload: Buffer): void {
  if (id !== 0) throw protocolError('GOAWAY on a stream');
  if (payload.length < 8) throw frameSizeError('GOAWAY');
  const last = payload.readUInt32BE(0) & 0x7fff_ffff;
  const code = payload.readUInt32BE(4);
  c.goingAway = true;
  // Streams the peer never saw can be retried elsewhere: REFUSED_STREAM says so. `last` counts
  // the streams this side opened (RFC 9113 6.8): a server opens none, and a client's GOAWAY
  // leaves the streams it opened to run to their end.
  // A GOAWAY that does not lower the last stream id refuses nothing new: the open streams are not
  // walked again (a server that repeated one walked them all for each 17-byte frame).
  if (c.role === 'client' && last < c.peerGoawayLast) {
    c.peerGoawayLast = last;
    for (const s of c.streams.values()) if (s.id > last) s.close(ErrorCode.REFUSED_STREAM);
  }
  c.opts.onGoaway?.(code);
  c.shutdown();
}

function onWindowUpdate(c: H2Connection, id: number, payload: Buffer): void {
  if (payload.length !== 4) throw frameSizeError('WINDOW_UPDATE');
  const inc = payload.readUInt32BE(0) & 0x7fff_ffff;
  if (id === 0) {
    if (inc === 0) throw protocolError('WINDOW_UPDATE of 0');
    c.sendWindow += inc;
    if (c.sendWindow > MAX_WINDOW)
      throw new H2ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, 'connection window over 2^31-1');
    c.unblock();
    return;
  }
  const s = c.streams.get(id);
  if (s === undefined) {
    if (id > c.lastStreamId) throw protocolError(`WINDOW_UPDATE on idle stream ${id}`);
    return;
  }
  if (inc === 0) {
    streamError(c, s, ErrorCode.PROTOCOL_ERROR);
    return;
  }
  s.sendWindow += inc;
  if (s.sendWindow > MAX_WINDOW) {
    streamError(c, s, ErrorCode.FLOW_CONTROL_ERROR);
    return;
  }
  if (s.blocked) {
    c.blocked.delete(s);
    s.flushPending();
  }
}
