// The wire contract between two Trellis proxies (the mesh transport). Everything here is what one
// proxy sends and the other checks, so both sides share these definitions:
//
// - ALPN names the inner protocol of an mTLS connection (TLS 1.3 only, both sides certified):
//     trellis-h2/1     HTTP/2: gRPC and HTTP/2 streams as the app sent them (node:http2)
//     trellis-h2h1/1   HTTP/2 framing whose every stream is an HTTP/1.1 request, restored to
//                      HTTP/1.1 for the app (the project's own HTTP/2 connection, src/proxy/h2/:
//                      both ends are Trellis, and this path carries most mesh traffic)
//     trellis-http1/1  HTTP/1 bytes as they are (Upgrade/WebSocket keeps its own connection)
//     trellis-tcp/1    opaque bytes, after the transport header below
// - The opaque transport header, the first 6 bytes a client sends on trellis-tcp/1:
//     4 bytes  magic "TRL1" (0x54 0x52 0x4c 0x31)
//     2 bytes  the target port, unsigned big-endian, 1..65535
//   The port says which app port the bytes are for (the receiving proxy accepts only its own
//   inbound port, meaning the app port, or in transparent mode an app port: inbound/app-target.ts). Anything
//   else, a wrong magic or port 0, makes the receiver close the connection.

/** Sockets that are mesh connections (a CONNECT tunnel's upstream may be one); connect.ts marks them. */
const meshSockets = new WeakSet<object>();

export function markMeshSocket(socket: object): void {
  meshSockets.add(socket);
}

export function isMeshSocket(socket: object): boolean {
  return meshSockets.has(socket);
}

export const ALPN_H2 = 'trellis-h2/1';
export const ALPN_H2H1 = 'trellis-h2h1/1';
export const ALPN_HTTP1 = 'trellis-http1/1';
export const ALPN_TCP = 'trellis-tcp/1';
export const MESH_ALPNS: readonly string[] = [ALPN_H2, ALPN_H2H1, ALPN_HTTP1, ALPN_TCP];

export const TCP_HEADER_BYTES = 6;
const MAGIC = [0x54, 0x52, 0x4c, 0x31] as const;

/** Whether a ClientHello's ALPN list asks for the mesh transport (any trellis-* protocol). */
export function offersMeshAlpn(alpn: readonly string[]): boolean {
  for (const p of alpn) if (p.startsWith('trellis-')) return true;
  return false;
}

/** The opaque transport header naming `port`. */
export function encodeTcpHeader(port: number): Buffer {
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new RangeError(`opaque transport header: port must be 1..65535, got ${port}`);
  }
  const b = Buffer.allocUnsafe(TCP_HEADER_BYTES);
  b[0] = MAGIC[0];
  b[1] = MAGIC[1];
  b[2] = MAGIC[2];
  b[3] = MAGIC[3];
  b.writeUInt16BE(port, 4);
  return b;
}

export type TcpHeaderResult =
  | { readonly status: 'need-more' }
  | { readonly status: 'error'; readonly reason: string }
  | { readonly status: 'ok'; readonly port: number; readonly rest: Buffer };

/**
 * Reads the opaque transport header at the start of `buf`. Decides as early as the bytes allow
 * (a wrong magic byte is an error at once), never throws, and `rest` is what followed the header.
 */
export function parseTcpHeader(buf: Buffer): TcpHeaderResult {
  const n = Math.min(buf.length, MAGIC.length);
  for (let i = 0; i < n; i++) {
    if (buf[i] !== MAGIC[i]) return { status: 'error', reason: 'not a Trellis opaque transport header' };
  }
  if (buf.length < TCP_HEADER_BYTES) return { status: 'need-more' };
  const port = buf.readUInt16BE(4);
  if (port === 0) return { status: 'error', reason: 'opaque transport header names port 0' };
  return { status: 'ok', port, rest: buf.subarray(TCP_HEADER_BYTES) };
}
