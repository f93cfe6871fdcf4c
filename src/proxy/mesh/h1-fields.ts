// Field conversions between HTTP/1.1 and HTTP/2 for the mesh, both ways (h1-over-h2.ts on the
// outbound side, h1-from-h2.ts on the inbound side): which fields belong to one connection and
// never cross (RFC 9110 7.6.1, RFC 9113 8.2.2), Host and :authority, and how a body is framed.
// HTTP/2 fields are flat lists [name, value, ...] as the own HTTP/2 connection (src/proxy/h2/)
// sends and receives them, names in lower case.
import { isToken, type MessageHead } from '../http/h1-parser.ts';
import { checkRequestTarget, isValidHost } from '../http/h1-uri.ts';
import { isHopByHop, type RequestLine } from '../http/h1-serialize.ts';
import { CONNECTION_SPECIFIC } from '../h2/fields.ts';
import { reasonPhrase } from '../http/reason-phrases.ts';

/** Response fields that HTTP/2 never carries and an HTTP/1 response must not copy. */
const RESPONSE_SKIP = new Set([...CONNECTION_SPECIFIC, 'te']);
/** Request fields that belong to the HTTP/1 connection (or are rewritten), never to a stream. */
const REQUEST_SKIP = new Set([...RESPONSE_SKIP, 'host', 'http2-settings']);

/**
 * The HTTP/2 request fields for an HTTP/1.1 request head as the session forwards it (`line`:
 * method, path, Host rewrites, a dropped field, extra fields): what the bytes serializeRequestHead
 * would write give, read back as an HTTP/2 request, without writing and parsing them.
 */
export function requestFieldsFor(head: MessageHead, line: RequestLine): string[] {
  const h = head.headers;
  // Sized once for every field the head may carry, then cut to what was kept: pushed onto an
  // array literal, the list outgrew its 8 slots at the first field and was copied to 28.
  const out = new Array<string>(8 + h.length);
  out[0] = ':method';
  out[1] = line.method;
  out[2] = ':scheme';
  out[3] = 'http';
  out[4] = ':authority';
  out[6] = ':path';
  out[7] = line.path;
  let n = 8;
  let authority = line.host;
  const drop = line.drop ?? null;
  const tokens = head.connectionTokens;
  for (let i = 0; i < h.length; i += 2) {
    const name = h[i]!.toLowerCase();
    if (name === 'host') {
      if (authority === null) authority = h[i + 1]!;
      continue;
    }
    if (name === drop || REQUEST_SKIP.has(name) || isHopByHop(name, tokens)) continue;
    out[n++] = name;
    out[n++] = h[i + 1]!;
  }
  out.length = n;
  out[5] = authority ?? '';
  const extra = line.extra ?? '';
  if (extra !== '') {
    for (const l of extra.split('\r\n')) {
      const colon = l.indexOf(':');
      if (colon > 0) out.push(l.slice(0, colon).toLowerCase(), l.slice(colon + 1).trim());
    }
  }
  return out;
}

/** The value of the first field called `name` (lower case), or undefined. */
export function fieldValue(fields: readonly string[], name: string): string | undefined {
  for (let i = 0; i < fields.length; i += 2) if (fields[i] === name) return fields[i + 1];
  return undefined;
}

/**
 * An HTTP/1 response head (for the session's direct path) from HTTP/2 response fields: the
 * fields HTTP/1 may carry, the reason phrase of the status, and `extra` fields appended.
 */
export function responseMessageHead(
  status: number,
  fields: readonly string[],
  bodyKind: MessageHead['bodyKind'],
  contentLength: number,
  extra: readonly string[] | null,
): MessageHead {
  const flat: string[] = [];
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i]!;
    if (name.charCodeAt(0) === 0x3a || RESPONSE_SKIP.has(name)) continue;
    flat.push(name, fields[i + 1]!);
  }
  if (extra !== null) for (const f of extra) flat.push(f);
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

/** "name: value\r\n" lines of HTTP/2 fields or trailers (pseudo-headers and hop-by-hop left out). */
export function fieldLines(fields: readonly string[] | null): string {
  if (fields === null) return '';
  let s = '';
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i]!;
    if (name.charCodeAt(0) === 0x3a || RESPONSE_SKIP.has(name)) continue;
    s += name + ': ' + fields[i + 1]! + '\r\n';
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
 * The HTTP/1.1 request for an HTTP/2 stream's fields: :authority as Host, the body as the
 * declared Content-Length, else chunked, none when the stream ended with its headers. Null when
 * the method, path or authority cannot be written safely in a request line (field values were
 * checked on receipt: src/proxy/h2/fields.ts).
 */
export function h1RequestHead(fields: readonly string[], endAfterHeaders: boolean): H1RequestHead | null {
  let method = 'GET';
  let path = '';
  let authority: string | null = null;
  let host = '';
  let declared: string | undefined;
  let cookies: string[] | null = null;
  let rest = '';
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i]!;
    const value = fields[i + 1]!;
    if (name.charCodeAt(0) === 0x3a) {
      if (name === ':method') method = value;
      else if (name === ':path') path = value;
      else if (name === ':authority') authority = value;
      continue;
    }
    if (name === 'content-length') declared ??= value;
    else if (name === 'host') host = value;
    else if (name === 'cookie') (cookies ??= []).push(value);
    else if (!REQUEST_SKIP.has(name)) rest += name + ': ' + value + '\r\n';
  }
  const auth = authority ?? host;
  const target = path === '' ? '/' : path;
  // The request line and Host are written as they came: each must be what the HTTP/1 parser would
  // accept, or a space in :path ("/public /admin") would give the app another request line than
  // the one policy checked. :path is origin-form, or "*" for OPTIONS (RFC 9113 8.3.1).
  const form = target.charCodeAt(0) === 0x2f || (target === '*' && method === 'OPTIONS');
  if (!form || !isToken(method) || checkRequestTarget(method, target) !== null || !isValidHost(auth))
    return null;
  let s = `${method} ${target} HTTP/1.1\r\nHost: ${auth}\r\n${rest}`;
  if (cookies !== null) s += `cookie: ${cookies.join('; ')}\r\n`;
  if (endAfterHeaders) {
    if (declared !== undefined) s += 'Content-Length: 0\r\n';
    return { text: s + '\r\n', chunked: false, length: 0, bodyless: true };
  }
  if (declared !== undefined && /^\d{1,15}$/.test(declared)) {
    const length = Number(declared);
    return { text: `${s}Content-Length: ${length}\r\n\r\n`, chunked: false, length, bodyless: length === 0 };
  }
  return { text: `${s}Transfer-Encoding: chunked\r\n\r\n`, chunked: true, length: 0, bodyless: false };
}

/** The HTTP/2 response fields for an app's HTTP/1.1 response head. */
export function h2ResponseFields(head: MessageHead, keepContentLength: boolean): string[] {
  const out = [':status', String(head.status)];
  const h = head.headers;
  const tokens = head.connectionTokens;
  for (let i = 0; i < h.length; i += 2) {
    const name = h[i]!.toLowerCase();
    if (RESPONSE_SKIP.has(name) || (tokens !== null && tokens.includes(name))) continue;
    if (name === 'content-length' && !keepContentLength) continue;
    out.push(name, h[i + 1]!);
  }
  return out;
}

/** Fields that framing or routing own: never taken from a trailer section (RFC 9110 6.5.1). */
const TRAILER_SKIP = new Set([...RESPONSE_SKIP, 'content-length', 'host', 'trailer']);

/**
 * The fields of an HTTP/1 trailer section ("name: value" lines, as the chunked decoder read and
 * checked them), names in lower case, values trimmed, framing fields left out.
 */
export function trailerFields(section: string): string[] {
  const out: string[] = [];
  for (const line of section.split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).toLowerCase();
    if (!TRAILER_SKIP.has(name)) out.push(name, line.slice(colon + 1).trim());
  }
  return out;
}
