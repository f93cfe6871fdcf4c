// Header handling for the HTTP/2 forwarding path: which headers cross the proxy, how a gRPC
// request is recognised, and the responses the proxy makes up itself. A made-up response always
// says why in `trellis-proxy-error`; to a gRPC client it is a trailers-only HTTP 200 carrying
// grpc-status and grpc-message (as Linkerd does), because gRPC clients read the status from there
// and would otherwise map a bare 502 to a vaguer code.
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http2';
import { PROXY_ERROR_HEADER, statusForReason, type ProxyErrorReason } from '../errors.ts';
import { CONNECTION_SPECIFIC } from '../h2/fields.ts';
import { modifyHeaders } from '../../core/routes/filters.ts';
import type { HeaderModifier } from '../../core/routes/schema-filters.ts';

/**
 * A copy of `headers` that can be sent on the other side: connection-specific headers dropped,
 * pseudo-headers and everything else kept (including Node's sensitive-headers marker). Also used
 * for trailers and 1xx headers.
 */
export function forwardableHeaders(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const name of Object.keys(headers)) {
    if (CONNECTION_SPECIFIC.has(name)) continue; // hop-by-hop: never forwarded
    const value = headers[name];
    if (value === undefined) continue;
    if (name === 'te' && !isTrailersOnly(value)) continue;
    out[name] = value;
  }
  copySymbols(headers, out);
  return out;
}

/**
 * The regular fields node:http2 refuses to send as a list (ERR_HTTP2_HEADER_SINGLE_VALUE; node's
 * kSingleValueHeaders, which it does not export): a route's `add` on one of them joins the values
 * into one line instead (RFC 9110 5.3, and the Gateway API's own example: `my-header: foo,bar`).
 */
export const NODE_SINGLE_VALUE_HEADERS: ReadonlySet<string> = new Set([
  'access-control-allow-credentials',
  'access-control-max-age',
  'access-control-request-method',
  'age',
  'authorization',
  'content-encoding',
  'content-language',
  'content-length',
  'content-location',
  'content-md5',
  'content-range',
  'content-type',
  'date',
  'dnt',
  'etag',
  'expires',
  'from',
  'host',
  'if-match',
  'if-modified-since',
  'if-none-match',
  'if-range',
  'if-unmodified-since',
  'last-modified',
  'location',
  'max-forwards',
  'proxy-authorization',
  'range',
  'referer',
  'retry-after',
  'tk',
  'upgrade-insecure-requests',
  'user-agent',
  'x-content-type-options',
]);

/**
 * `headers` (a node:http2 header object) with route header filters applied in order
 * (src/core/routes/filters.ts): names lower-cased as HTTP/2 requires, pseudo-headers and node's
 * sensitive-header marker kept, a name given several times becomes a list, or one line joined
 * with ", " for the names node sends once (NODE_SINGLE_VALUE_HEADERS).
 */
export function withModifiedHeaders(
  headers: IncomingHttpHeaders | OutgoingHttpHeaders,
  modifiers: readonly HeaderModifier[],
): IncomingHttpHeaders & OutgoingHttpHeaders {
  const out: Record<string, string | string[]> = {};
  let flat: string[] = [];
  for (const name of Object.keys(headers)) {
    const value = headers[name];
    if (value === undefined) continue;
    if (name.startsWith(':')) {
      out[name] = Array.isArray(value) ? value.map(String) : String(value);
      continue;
    }
    if (Array.isArray(value)) for (const v of value) flat.push(name, String(v));
    else flat.push(name, String(value));
  }
  for (const modifier of modifiers) flat = modifyHeaders(modifier, flat);
  for (let i = 0; i < flat.length; i += 2) {
    const name = flat[i]!.toLowerCase();
    const prior = out[name];
    const value = flat[i + 1]!;
    if (prior === undefined) out[name] = value;
    else if (NODE_SINGLE_VALUE_HEADERS.has(name)) out[name] = `${String(prior)}, ${value}`;
    else out[name] = Array.isArray(prior) ? [...prior, value] : [prior, value];
  }
  copySymbols(headers, out);
  return out as IncomingHttpHeaders & OutgoingHttpHeaders;
}

/**
 * node:http2 hands a field sent on several lines over as one value joined with ", " (cookie with
 * "; "); a proxy forwards the lines as they came (a route's `add` appends a line, and apps may
 * read repeated fields line by line). `headers` itself when no name repeats, the common case:
 * nothing is built then (a scan of the raw list, no allocation). Cookie keeps node's joining
 * (RFC 9113 8.2.3 lets it be split and joined); pseudo-headers never repeat.
 */
export function keepRepeatedLines(headers: IncomingHttpHeaders, raw: readonly string[]): IncomingHttpHeaders {
  let repeats = false;
  scan: for (let i = 2; i < raw.length; i += 2) {
    const name = raw[i]!;
    for (let j = 0; j < i; j += 2) {
      if (raw[j] === name && name !== 'cookie' && name.charCodeAt(0) !== 58 /* ':' */) {
        repeats = true;
        break scan;
      }
    }
  }
  if (!repeats) return headers;
  const lines = new Map<string, string[]>();
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    const list = lines.get(name);
    if (list === undefined) lines.set(name, [raw[i + 1]!]);
    else list.push(raw[i + 1]!);
  }
  const out: IncomingHttpHeaders = { ...headers };
  for (const [name, values] of lines) {
    if (values.length > 1 && name !== 'cookie' && name.charCodeAt(0) !== 58) out[name] = values;
  }
  copySymbols(headers, out);
  return out;
}

/**
 * node:http2 keeps facts about a header object on symbol keys (which fields are sensitive, never
 * to be indexed by HPACK): a header object built from another carries them over.
 */
function copySymbols(from: object, to: object): void {
  for (const sym of Object.getOwnPropertySymbols(from)) {
    (to as Record<symbol, unknown>)[sym] = (from as Record<symbol, unknown>)[sym];
  }
}

function isTrailersOnly(value: string | string[]): boolean {
  const v = Array.isArray(value) ? value.join(',') : value;
  return v.trim().toLowerCase() === 'trailers';
}

/** A gRPC request or response: content-type application/grpc, application/grpc+proto, ... */
export function isGrpc(headers: IncomingHttpHeaders): boolean {
  const ct = headers['content-type'];
  return typeof ct === 'string' && ct.toLowerCase().startsWith('application/grpc');
}

/** gRPC status codes the proxy answers with (https://grpc.github.io/grpc/core/md_doc_statuscodes.html). */
export const GRPC_STATUS = {
  OK: 0,
  DEADLINE_EXCEEDED: 4,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
} as const;

/**
 * The gRPC status for a reason. Failures where the request never reached the application (or the
 * path to it broke) are UNAVAILABLE, which gRPC clients treat as safe to retry; a response timeout
 * is DEADLINE_EXCEEDED; a request the proxy cannot route or accept is INTERNAL (HTTP 400's mapping).
 */
export function grpcStatusForReason(reason: ProxyErrorReason): number {
  switch (reason) {
    case 'no-endpoints':
    case 'connect-failed':
    case 'connect-timeout':
    case 'upstream-reset':
    case 'upstream-bad-response':
    case 'h2-protocol-error':
    case 'shutting-down':
    case 'idle-timeout':
    case 'detect-timeout':
    case 'identity-mismatch':
    case 'tls-handshake-failed':
    case 'no-identity':
    case 'upstream-busy':
    case 'control-plane-unreachable':
    case 'all-endpoints-tripped':
    case 'overflow':
      return GRPC_STATUS.UNAVAILABLE;
    case 'forbidden':
    case 'proxy-request-refused':
      return GRPC_STATUS.PERMISSION_DENIED;
    case 'response-timeout':
    case 'request-timeout':
    case 'backend-request-timeout':
      return GRPC_STATUS.DEADLINE_EXCEEDED;
    case 'route-not-found':
      return GRPC_STATUS.UNIMPLEMENTED;
    case 'backend-not-found':
      return GRPC_STATUS.UNAVAILABLE;
    case 'route-unsupported':
      return GRPC_STATUS.INTERNAL;
    case 'fault-injected':
      return GRPC_STATUS.UNAVAILABLE;
    case 'rate-limited':
      return GRPC_STATUS.RESOURCE_EXHAUSTED;
    case 'bad-request':
    case 'request-header-too-large':
    case 'unknown-destination':
    case 'loop-detected':
    case 'unknown-port':
    case 'internal-error':
      return GRPC_STATUS.INTERNAL;
  }
}

export interface ProxyErrorResponse {
  headers: OutgoingHttpHeaders;
  /** The body to send, or null for a headers-only (trailers-only for gRPC) response. */
  body: string | null;
}

/** The response the proxy sends itself for `reason`; `grpc` = the request was a gRPC call. */
export function proxyErrorResponse(
  reason: ProxyErrorReason,
  grpc: boolean,
  message: string,
  /** The trellis-proxy-error value when it says more than the reason ("forbidden: default:deny"). */
  headerValue: string = reason,
  /** The HTTP status when it is not the reason's usual one (414 for request-header-too-large). */
  status: number = statusForReason(reason),
  /** The grpc-status when it is not the reason's usual one (an HTTPFault's abort). */
  grpcStatus: number = grpcStatusForReason(reason),
): ProxyErrorResponse {
  if (grpc) {
    return {
      headers: {
        ':status': 200,
        'content-type': 'application/grpc',
        'grpc-status': String(grpcStatus),
        'grpc-message': encodeGrpcMessage(message),
        [PROXY_ERROR_HEADER]: headerValue,
      },
      body: null,
    };
  }
  const body = `${message}\n`;
  return {
    headers: {
      ':status': status,
      'content-type': 'text/plain; charset=utf-8',
      'content-length': String(Buffer.byteLength(body)),
      [PROXY_ERROR_HEADER]: headerValue,
    },
    body,
  };
}

/** grpc-message is percent-encoded UTF-8 (gRPC over HTTP/2 spec): bytes outside 0x20-0x7E and '%'. */
export function encodeGrpcMessage(message: string): string {
  let out = '';
  for (const byte of Buffer.from(message, 'utf8')) {
    out +=
      byte >= 0x20 && byte <= 0x7e && byte !== 0x25
        ? String.fromCharCode(byte)
        : '%' + byte.toString(16).toUpperCase().padStart(2, '0');
  }
  return out;
}
