// The node:http2 session options of the proxy's HTTP/2 paths (h2-proxy.ts: the app's HTTP/2 and
// gRPC, plaintext or trellis-h2/1; h2-upstream-pool.ts: their upstream sessions), every limit set
// explicitly rather than left to Node's defaults, so that what a peer can make a session hold is
// written down here (and in docs/security.md) and tested.
//
// Request heads: the HTTP/1 limits apply (h2-head-limits.ts answers 431/414), so node must let
// heads somewhat over them through for the proxy to answer; past these ceilings node resets the
// stream itself (ENHANCE_YOUR_CALM) before the proxy sees it. Floods (PING, SETTINGS, RST_STREAM,
// invalid frames, refused streams) end the session in nghttp2, with the limits below.
import type * as http2 from 'node:http2';
import { MAX_HEADER_LIST } from '../h2/limits.ts';
import type { H1Limits } from './h1-parser.ts';

/** Flow-control settings shared by both sides of the proxy; see h2-proxy.ts for the reasoning. */
export const H2_STREAM_WINDOW = 1 << 20;
export const H2_CONNECTION_WINDOW = 16 << 20;
export const H2_MAX_CONCURRENT_STREAMS = 128;

/**
 * Limits of one session that do not depend on configuration (each one nghttp2's or Node's
 * default, stated here so that a Node upgrade cannot change it silently).
 */
const SESSION_LIMITS = {
  /** MB one session may use (streams, HPACK tables, queued frames); over it new streams are refused. */
  maxSessionMemory: 32,
  /** Entries in one SETTINGS frame. */
  maxSettings: 32,
  /** PINGs we sent and the peer did not answer yet. */
  maxOutstandingPings: 10,
  /** SETTINGS we sent and the peer did not acknowledge yet. */
  maxOutstandingSettings: 10,
  /** Invalid frames before the session is closed. */
  maxSessionInvalidFrames: 1000,
  /** Streams refused (ENHANCE_YOUR_CALM) before the session is closed. */
  maxSessionRejectedStreams: 100,
  /** Streams the peer may reset: a burst, then this many per second (rapid reset, CVE-2023-44487). */
  streamResetBurst: 1000,
  streamResetRate: 33,
  /** Our HPACK encoder's dynamic table. */
  maxDeflateDynamicTableSize: 4096,
} as const;

/**
 * Header pairs node accepts in one request before resetting the stream: room for 4x the HTTP/1
 * limit (and the pseudo-headers), so a head moderately over it gets the proxy's 431.
 */
export function requestHeaderPairCeiling(limits: H1Limits): number {
  return 4 * (limits.maxHeaders + 4);
}

/** The server side (downstream sessions): requests are held to the HTTP/1 head limits. */
export function serverSessionOptions(limits: H1Limits): http2.ServerOptions {
  return {
    ...SESSION_LIMITS,
    maxHeaderListPairs: requestHeaderPairCeiling(limits),
    settings: {
      initialWindowSize: H2_STREAM_WINDOW,
      maxConcurrentStreams: H2_MAX_CONCURRENT_STREAMS,
      headerTableSize: 4096,
      // The same ceiling as the own HTTP/2 (a header list of 1 MiB): between the HTTP/1 limits
      // and it, the proxy answers 431; over it, node resets the stream.
      maxHeaderListSize: MAX_HEADER_LIST,
      enablePush: false,
    },
  };
}

/**
 * The client side (upstream sessions): response heads get what the HTTP/1 parser allows a
 * response (status line and fields within maxRequestLineBytes + maxHeaderBytes, maxHeaders
 * lines), in HTTP/2 accounting (32 more bytes per field); over it node resets the stream and the
 * client gets 502 upstream-reset.
 */
export function clientSessionOptions(limits: H1Limits): http2.ClientSessionOptions {
  const pairs = limits.maxHeaders + 8;
  return {
    ...SESSION_LIMITS,
    maxHeaderListPairs: pairs,
    peerMaxConcurrentStreams: H2_MAX_CONCURRENT_STREAMS,
    settings: {
      enablePush: false,
      initialWindowSize: H2_STREAM_WINDOW,
      headerTableSize: 4096,
      maxHeaderListSize: limits.maxRequestLineBytes + limits.maxHeaderBytes + 32 * pairs,
    },
  };
}
