// Field conversions between HTTP/1.1 and HTTP/2 for the mesh, both ways (h1-over-h2.ts on the
// outbound side, h2-to-h1.ts on the inbound side): which fields belong to one connection and never
// cross (RFC 9110 7.6.1, RFC 9113 8.2.2), Host and :authority, how a body is framed, and the
// marker that says an HTTP/2 stream was an HTTP/1.1 request.
import type * as http2 from 'node:http2';
import type { MessageHead } from '../http/h1-parser.ts';
import { isHopByHop, type RequestLine } from '../http/h1-serialize.ts';
import { ORIG_PROTO_HEADER, ORIG_PROTO_HTTP1 } from './protocol.ts';
import { reasonPhrase } from './reason-phrases.ts';

/** Request fields that belong to the HTTP/1 connection (or are rewritten), never to a stream. */
const REQUEST_SKIP = new Set([
  'host',
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'te',
  'http2-settings',
  ORIG_PROTO_HEADER,
]);
/** Response fields that HTTP/2 never carries and an HTTP/1 response must not copy. */
const RESPONSE_SKIP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'te',
]);
/** What a request line or Host cannot hold (HTTP/2 field values are checked by nghttp2). */
const FIELD_UNSAFE = /[\r\n\0]/;

/**
 * The HTTP/2 request headers for an HTTP/1.1 request head as the session forwards it (`line`:
 * method, path, Host rewrites, a dropped field, extra fields): what requestHeaders gives for the
 * bytes serializeRequestHead would write, read back as an HTTP/2 request, without writing and
 * parsing them.
 */
export function requestHeadersFor(head: MessageHead, line: RequestLine): http2.OutgoingHttpHeaders {
  let authority = line.host;
  const out: http2.OutgoingHttpHeaders = {
    ':method': line.method,
    ':scheme': 'http',
    ':authority': '',
    ':path': line.path,
    [ORIG_PROTO_HEADER]: ORIG_PROTO_HTTP1,
  };
  const drop = line.drop ?? null;
  const tokens = head.connectionTokens;
  const h = head.headers;
  for (let i = 0; i < h.length; i += 2) {
    const name = h[i]!.toLowerCase();
    if (name === 'host') {
      if (authority === null) authority = h[i + 1]!;
      continue;
    }
    if (name === drop || REQUEST_SKIP.has(name) || isHopByHop(name, tokens)) continue;
    addField(out, name, h[i + 1]!);
  }
  out[':authority'] = authority ?? '';
  const extra = line.extra ?? '';
  if (extra !== '') {
    for (const l of extra.split('\r\n')) {
      const colon = l.indexOf(':');
      if (colon > 0) addField(out, l.slice(0, colon).toLowerCase(), l.slice(colon + 1).trim());
    }
  }
  return out;
}

function addField(out: http2.OutgoingHttpHeaders, name: string, value: string): void {
  const prev = out[name];
  if (prev === undefined) out[name] = value;
  else if (Array.isArray(prev)) prev.push(value);
  else out[name] = [String(prev), value];
}

/**
 * An HTTP/1 response head (for the session's direct path) from HTTP/2 response headers: the
 * fields HTTP/1 may carry, the reason phrase of the status, and `extra` fields appended.
 */
export function responseMessageHead(
  status: number,
  headers: http2.IncomingHttpHeaders,
  bodyKind: MessageHead['bodyKind'],
  contentLength: number,
  extra: readonly string[] | null,
): MessageHead {
  const flat: string[] = [];
  for (const name of Object.keys(headers)) {
    if (name.charCodeAt(0) === 0x3a || RESPONSE_SKIP.has(name)) continue;
    const value = headers[name];
    if (value === undefined) continue;
    if (Array.isArray(value)) for (const v of value) flat.push(name, v);
    else flat.push(name, String(value));
  }
  if (extra !== null) flat.push(...extra);
  return {
    method: '',
    target: '',
    status,
    reason: reasonPhrase(status),
    versionMinor: 1,
    headers: flat,
    bodyKind,
    contentLength,
    connectionClose: false,
    connectionTokens: null,
    upgrade: null,
    expectContinue: false,
    host: null,
  };
}

/** "name: value\r\n" lines of HTTP/2 headers or trailers (pseudo-headers and hop-by-hop left out). */
export function fieldLines(headers: http2.IncomingHttpHeaders | null): string {
  if (headers === null) return '';
  let s = '';
  for (const name of Object.keys(headers)) {
    if (name.charCodeAt(0) === 0x3a || RESPONSE_SKIP.has(name)) continue;
    const value = headers[name];
    if (value === undefined) continue;
    if (Array.isArray(value)) for (const v of value) s += name + ': ' + v + '\r\n';
    else s += name + ': ' + value + '\r\n';
  }
  return s;
}

export interface H1RequestHead {
  readonly text: string;
  /** The body goes chunked (the stream declared no length). */
  readonly chunked: boolean;
  /** Content-Length of the body (when not chunked). */
  readonly length: number;
  /** No body at all: the stream ended with its headers (or declared 0). */
  readonly bodyless: boolean;
}

/**
 * The HTTP/1.1 request for an HTTP/2 stream's headers: :authority as Host, the body as the
 * declared Content-Length, else chunked, none when the stream ended with its headers. Null when
 * the method, path or authority cannot be written safely in a request line.
 */
export function h1RequestHead(h: http2.IncomingHttpHeaders, endAfterHeaders: boolean): H1RequestHead | null {
  const method = String(h[':method'] ?? 'GET');
  const path = String(h[':path'] ?? '');
  const authority = String(h[':authority'] ?? h.host ?? '');
  if (FIELD_UNSAFE.test(method) || FIELD_UNSAFE.test(path) || FIELD_UNSAFE.test(authority)) return null;
  let s = `${method} ${path === '' ? '/' : path} HTTP/1.1\r\nHost: ${authority}\r\n`;
  for (const name of Object.keys(h)) {
    if (name.charCodeAt(0) === 0x3a || REQUEST_SKIP.has(name) || name === 'content-length') continue;
    const value = h[name];
    if (value === undefined) continue;
    if (Array.isArray(value)) {
      if (name === 'cookie') s += `cookie: ${value.join('; ')}\r\n`;
      else for (const v of value) s += `${name}: ${v}\r\n`;
    } else s += `${name}: ${value}\r\n`;
  }
  const declared = h['content-length'];
  if (endAfterHeaders) {
    if (declared !== undefined) s += 'Content-Length: 0\r\n';
    return { text: s + '\r\n', chunked: false, length: 0, bodyless: true };
  }
  if (declared !== undefined && /^\d{1,15}$/.test(String(declared))) {
    const length = Number(declared);
    return { text: `${s}Content-Length: ${length}\r\n\r\n`, chunked: false, length, bodyless: length === 0 };
  }
  return { text: `${s}Transfer-Encoding: chunked\r\n\r\n`, chunked: true, length: 0, bodyless: false };
}

/** The HTTP/2 response headers for an app's HTTP/1.1 response head. */
export function h2ResponseHeaders(head: MessageHead, keepContentLength: boolean): http2.OutgoingHttpHeaders {
  const out: http2.OutgoingHttpHeaders = { ':status': head.status };
  const h = head.headers;
  const tokens = head.connectionTokens;
  for (let i = 0; i < h.length; i += 2) {
    const name = h[i]!.toLowerCase();
    if (RESPONSE_SKIP.has(name) || (tokens !== null && tokens.includes(name))) continue;
    if (name === 'content-length' && !keepContentLength) continue;
    addField(out, name, h[i + 1]!);
  }
  return out;
}
