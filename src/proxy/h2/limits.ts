// The own HTTP/2 connection's settings and limits (connection.ts), in a module of their own so
// that the frame handlers (connection-frames.ts) can use them without an import cycle.

/** Each stream's receive window: what one stalled stream may leave waiting in the proxy. */
export const STREAM_WINDOW = 1024 * 1024;
/** The connection's receive window: many streams must not throttle each other. */
export const CONNECTION_WINDOW = 16 * 1024 * 1024;
export const MAX_CONCURRENT_STREAMS = 1000;
/** Streams a client may cancel before their response, per second, before it loses the connection. */
export const MAX_PEER_RESETS = 1000;
/**
 * Decoded header list limit (RFC 9113 accounting: name + value + 32 per field). Going over it is
 * a connection error (the HPACK table cannot be kept in step), so it sits far above any HTTP/1
 * head a proxy accepts (http1.maxHeaderBytes, 64 KiB by default): one large request must never
 * take down the streams it shares a connection with.
 */
export const MAX_HEADER_LIST = 1024 * 1024;
