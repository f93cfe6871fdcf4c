// Writing HTTP/1.1 heads in the one form the proxy forwards: hop-by-hop fields removed, framing
// fields written by the proxy itself (never copied), so what the next hop sees is unambiguous.
import type { MessageHead } from './h1-parser.ts';
import { PROXY_ERROR_HEADER, type ProxyErrorReason, statusForReason } from '../errors.ts';
import { reasonPhrase } from './reason-phrases.ts';
import { isClientIdField } from '../policy/client-id-field.ts';
import { appendedForwardedFor, isForwardedForField } from '../inbound/forwarded-for.ts';

/**
 * A field section (lines "name: value\r\n", as the parser checked them) without the fields named
 * `lowerName` as an app may read it (policy/client-id-field.ts): the client-identity header in
 * request trailers, which only the proxy may set.
 */
export function withoutField(section: Buffer, lowerName: string): Buffer {
  const text = section.toString('latin1');
  let out = '';
  let dropped = false;
  for (const line of text.split('\r\n')) {
    if (line === '') continue;
    const colon = line.indexOf(':');
    if (colon !== -1 && isClientIdField(line.slice(0, colon).trim(), lowerName)) {
      dropped = true;
      continue;
    }
    out += line + '\r\n';
  }
  return dropped ? Buffer.from(out, 'latin1') : section;
}

/** True for fields that belong to one connection and are never forwarded (RFC 9110 7.6.1). */
export function isHopByHop(name: string, tokens: string[] | null): boolean {
  const n = name.length;
  if (n === 2 || n === 10 || n === 16 || n === 18) {
    const l = name.toLowerCase();
    if (l === 'te' || l === 'keep-alive' || l === 'proxy-connection' || l === 'proxy-authenticate')
      return true;
  }
  if (tokens !== null) {
    const l = name.toLowerCase();
    for (let i = 0; i < tokens.length; i++) if (tokens[i] === l) return true;
  }
  return false;
}

export interface RequestLine {
  readonly method: string;
  readonly path: string;
  /** Replaces the Host field (absolute-form requests, HTTP/1.0 requests without Host). */
  readonly host: string | null;
  /**
   * A lower-case field name never forwarded in any spelling an app may read (inbound: the
   * client-identity header, so it cannot be forged: policy/client-id-field.ts).
   */
  readonly drop?: string | null;
  /** Serialized fields ("name: value\r\n") added after the request's own. */
  readonly extra?: string;
  /**
   * Inbound: the address the request came from, appended to X-Forwarded-For (every spelling of
   * which the request carried is folded into the one field: inbound/forwarded-for.ts).
   */
  readonly forwardedFor?: string;
}

export function serializeRequestHead(req: MessageHead, line: RequestLine, chunked: boolean): string {
  let s = line.method + ' ' + line.path + ' HTTP/1.1\r\n';
  const h = req.headers;
  const tokens = req.connectionTokens;
  const drop = line.drop ?? null;
  const forwardedFor = line.forwardedFor;
  let sentFor: string | null = null;
  let wroteHost = false;
  for (let i = 0; i < h.length; i += 2) {
    const name = h[i]!;
    if (drop !== null && isClientIdField(name, drop)) continue;
    if (forwardedFor !== undefined && isForwardedForField(name)) {
      sentFor = sentFor === null ? h[i + 1]! : sentFor + ', ' + h[i + 1]!;
      continue;
    }
    if (name.length === 4 && name.toLowerCase() === 'host') {
      if (wroteHost) continue;
      wroteHost = true;
      s += 'Host: ' + (line.host ?? h[i + 1]!) + '\r\n';
      continue;
    }
    if (isHopByHop(name, tokens)) continue;
    s += name + ': ' + h[i + 1]! + '\r\n';
  }
  if (!wroteHost && line.host !== null) s += 'Host: ' + line.host + '\r\n';
  if (line.extra !== undefined) s += line.extra;
  if (forwardedFor !== undefined)
    s += 'X-Forwarded-For: ' + appendedForwardedFor(sentFor, forwardedFor) + '\r\n';
  if (chunked) s += 'Transfer-Encoding: chunked\r\n';
  if (req.upgrade !== null) s += 'Connection: upgrade\r\nUpgrade: ' + req.upgrade + '\r\n';
  return s + '\r\n';
}

export type ResponseFraming = 'as-is' | 'chunked' | 'close';

export function serializeResponseHead(
  res: MessageHead,
  framing: ResponseFraming,
  connection: 'close' | 'keep-alive' | 'upgrade' | null,
): string {
  let s = 'HTTP/1.1 ' + res.status + ' ' + res.reason + '\r\n';
  const h = res.headers;
  const tokens = res.connectionTokens;
  for (let i = 0; i < h.length; i += 2) {
    const name = h[i]!;
    if (isHopByHop(name, tokens)) continue;
    s += name + ': ' + h[i + 1]! + '\r\n';
  }
  if (framing === 'chunked') s += 'Transfer-Encoding: chunked\r\n';
  if (connection === 'upgrade') s += 'Connection: upgrade\r\nUpgrade: ' + (res.upgrade ?? '') + '\r\n';
  else if (connection !== null) s += 'Connection: ' + connection + '\r\n';
  return s + '\r\n';
}

/** A response the proxy makes up itself, saying why in `trellis-proxy-error`. */
export function errorResponse(
  reason: ProxyErrorReason,
  message: string,
  close: boolean,
  status = statusForReason(reason),
  /** The trellis-proxy-error value when it says more than the reason ("forbidden: default:deny"). */
  headerValue: string = reason,
): Buffer {
  const body = `${message}\n`;
  return Buffer.from(
    `HTTP/1.1 ${status} ${reasonPhrase(status)}\r\n` +
      `Content-Type: text/plain; charset=utf-8\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\n` +
      `${PROXY_ERROR_HEADER}: ${headerValue}\r\n` +
      (close ? 'Connection: close\r\n' : '') +
      '\r\n' +
      body,
    'utf8',
  );
}
