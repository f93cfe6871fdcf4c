// The direct path between the HTTP/1 client side (h1-client.ts) and an upstream connection that is
// not a byte stream: the mesh's HTTP/1-over-HTTP/2 connection (src/proxy/mesh/h1-over-h2.ts).
// Writing the request head as HTTP/1 bytes only for that connection to parse them again (and the
// response the other way) cost two serializations and two parses per request per side; instead
// the session hands over the head it parsed and gets the response head as a MessageHead.
//
// Request bodies still travel as bytes through the connection's write side (rare on the hot
// path, and the framing rules for them already live in one place there).
import type { MessageHead } from './h1-parser.ts';
import type { RequestLine } from './h1-serialize.ts';

/** What the direct connection tells the exchange that sent the request. */
export interface DirectResponseSink {
  /**
   * A response head: interim (1xx) or final. For a final head `bodyKind` is 'none', 'length'
   * (contentLength bytes follow through onUpstreamData) or 'chunked', which here means the body
   * arrives already decoded through onUpstreamData and ends with onDirectEnd.
   */
  onDirectHead(head: MessageHead): void;
  onUpstreamData(chunk: Buffer): void;
  /** The end of a 'chunked' body, with its trailers as "name: value\r\n" lines (may be empty). */
  onDirectEnd(trailers: Buffer): void;
}

/** An upstream connection that takes parsed request heads. */
export interface DirectUpstream {
  readonly directH1: true;
  /**
   * Starts one exchange: the request `head` as `line` rewrites it (a body, when the head declares
   * one, is then written to the connection as HTTP/1 body bytes, chunked when `chunked`).
   */
  startRequest(head: MessageHead, line: RequestLine, chunked: boolean, sink: DirectResponseSink): void;
}

/** The connection's direct interface, or null for a plain byte stream. */
export function directOf(socket: object): DirectUpstream | null {
  return (socket as Partial<DirectUpstream>).directH1 === true ? (socket as DirectUpstream) : null;
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
