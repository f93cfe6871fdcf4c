// The seams where inbound authorization meets the protocol handlers: what the HTTP/1 server
// (http/h1-session.ts) and the HTTP/2 server (http/h2-proxy.ts) ask before forwarding a request
// to the app. The mesh implements them (mesh/inbound-policy.ts, mesh/inbound-h2.ts) over the
// authorizer of this folder; the protocol handlers know only these shapes. A refusal is 403
// forbidden, or 429 rate-limited (refusalReason).
import type * as http2 from 'node:http2';
import type net from 'node:net';
import type { Target } from '../../core/target.ts';

/** What the inbound HTTP/1 path asks before forwarding a request to the app. */
export interface InboundHttpGate {
  /** The lower-case header that carries the verified client identity ('' = none): never forwarded as sent. */
  readonly clientIdHeader: string;
  /** Whether the address a request came from is appended to X-Forwarded-For (inbound/forwarded-for.ts). */
  readonly appendForwardedFor: boolean;
  /**
   * An upgraded connection (WebSocket) that the request it began with allowed: checked again
   * with that request's facts after each policy change, and closed when no longer allowed.
   */
  watchUpgrade(
    socket: net.Socket,
    port: number,
    identity: string | null,
    ip: string,
    method: string,
    path: string,
  ): void;
  /**
   * null when allowed; else the value of trellis-proxy-error: "forbidden: <policy>", or
   * RATE_LIMITED when the Server's rate limit is over (refusalReason tells the two apart).
   */
  checkRequest(
    port: number,
    identity: string | null,
    ip: string,
    method: string,
    path: string,
  ): string | null;
}

/** The downstream connection a stream arrived on. */
export interface InboundConnection {
  readonly connTarget: Target | null;
  /** The client's verified identity (mTLS), or null. */
  readonly identity: string | null;
  readonly ip: string;
}

/** Returns true when it handled the stream (denied); false: forward as usual. */
export type InboundStreamHook = (
  stream: http2.ServerHttp2Stream,
  headers: http2.IncomingHttpHeaders,
  conn: InboundConnection,
) => boolean;

/** What checkRequest returns for a request over its Server's rate limit (429). */
export const RATE_LIMITED = 'rate-limited';

/** The proxy error reason of a refusal checkRequest returned: rate-limited (429) or forbidden (403). */
export function refusalReason(refusal: string): 'forbidden' | 'rate-limited' {
  return refusal === RATE_LIMITED ? 'rate-limited' : 'forbidden';
}
