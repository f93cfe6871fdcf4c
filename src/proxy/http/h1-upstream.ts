// The one upstream interface of the HTTP/1 client side (h1-client.ts): a connection that carries
// one exchange at a time, takes a parsed request head and its body, and gives back the response
// already parsed. Two kinds implement it:
// - upstream-conn.ts: a pooled byte connection (plain TCP, or mTLS for an Upgrade to a meshed
//   endpoint): the head is serialized, the body framed and the response read with the strict
//   parser, all in that one file (the inbound bridge, mesh/h2-to-h1.ts, reads the app's answers
//   with it too);
// - mesh/h1-over-h2.ts: a stream of the pooled HTTP/2 connection to a meshed endpoint, which
//   never serializes or parses HTTP/1 (the fields go as HTTP/2, the response comes back parsed).
// Both end in the same H1ResponseSink calls, so the HEAD/204/304, keep-alive and client framing
// rules apply to every upstream in one place (h1-session.ts).
import type net from 'node:net';
import type { MessageHead } from './h1-parser.ts';
import type { RequestLine } from './h1-serialize.ts';

/** How a response body arrives: none, by length, chunked (decoded by the upstream) or until close. */
export type ResponseBodyKind = 'none' | 'length' | 'chunked' | 'close';

/** The body kind of a final response `head` to a `method` request (RFC 9112 6.3: HEAD, 204, 304 have none). */
export function responseBodyKind(method: string, head: MessageHead): ResponseBodyKind {
  return method === 'HEAD' || head.status === 204 || head.status === 304 ? 'none' : head.bodyKind;
}

/** What an upstream connection tells the exchange it carries. */
export interface H1ResponseSink {
  /** An interim (1xx) response head, other than 101. */
  onInterim(head: MessageHead): void;
  /**
   * The final response head (or a 101) and how its body comes (`bodyLater`: in a later tick);
   * false when the exchange did not take it (a retry, an upgrade, an error answered): the
   * upstream stops there and the exchange lets go of it. A response without a body is ended
   * (onResponseEnd) right after its head.
   */
  onResponseHead(head: MessageHead, kind: ResponseBodyKind, bodyLater: boolean): boolean;
  /** Decoded response body bytes. */
  onResponseData(chunk: Buffer): void;
  /**
   * The response ended; `trailers` as "name: value\r\n" lines (may be empty). The upstream does
   * nothing more after this call: the exchange may release it (and the pool hand it on) inside.
   */
  onResponseEnd(trailers: Buffer): void;
  /** A response head the upstream got wrong (nothing of it was passed on); the connection is closed. */
  onBadResponse(message: string): void;
  /** A response body the upstream got wrong after part of it was passed on; the connection is closed. */
  onResponseBroken(): void;
  /**
   * The connection closed before the response ended: `beforeResponse` when nothing of a response
   * came; `resendable` when the connection was reused or says it never processed the request
   * (`err` is then an UnprocessedError). The exchange no longer has it.
   */
  onUpstreamClosed(err: Error | null, beforeResponse: boolean, resendable: boolean): void;
  /** The upstream takes request body bytes again (after a write returned false). */
  onRequestDrain(): void;
  /** One of the calls above threw (a fault of the exchange's own code, src/proxy/fault.ts). Must not throw. */
  fault(where: string, err: unknown): void;
}

/** One upstream connection, used by one exchange at a time. */
export interface H1Upstream {
  /**
   * Sends a request `head` as `line` rewrites it; its body follows by length (writeBody) or, when
   * `chunked`, as chunks (writeChunk, endChunks). The response goes to `sink`.
   */
  start(head: MessageHead, line: RequestLine, chunked: boolean, sink: H1ResponseSink): void;
  /** Request body bytes of a length-delimited body; false: wait for sink.onRequestDrain. */
  writeBody(part: Buffer): boolean;
  /** One chunk of a chunked request body (decoded data); false: wait for sink.onRequestDrain. */
  writeChunk(data: Buffer): boolean;
  /** The end of a chunked request body, with its trailer section ("name: value\r\n" lines, may be empty). */
  endChunks(trailers: Buffer): void;
  /** Stops reading the response (the client is full)... */
  pause(): void;
  /** ...and reads it again. */
  resume(): void;
  /** The exchange is over: the connection goes back to its pool when it can carry another, else closes. */
  release(): void;
  /** Closes the connection, never to be reused; the sink hears nothing more. */
  close(): void;
  /**
   * A 101 was taken: the byte connection leaves its pool for a tunnel, with what came after the
   * 101 (`rest`); null when the upstream is not a byte stream.
   */
  takeForTunnel(): { readonly socket: net.Socket; readonly rest: Buffer | null } | null;
}

/**
 * An upstream failure that says the request was not processed at all (an HTTP/2 stream the peer
 * refused: REFUSED_STREAM, or above its GOAWAY's last stream): the session may send it again
 * whatever its method, as long as it had no body to stream.
 */
export class UnprocessedError extends Error {
  readonly unprocessed = true as const;
}

export function wasUnprocessed(err: Error | null): boolean {
  return err instanceof UnprocessedError;
}
