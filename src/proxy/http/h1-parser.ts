// A strict HTTP/1.x message-head parser and chunked-body decoder, written here rather than taken
// from Node for two reasons: speed (the proxy forwards raw bytes; node:http's request/response
// objects cost ~4x throughput) and strictness (a proxy must reject every ambiguous framing that
// could desynchronise it from the upstream: request smuggling). It follows the ABNF of RFC 9112
// and RFC 9110 production by production (the request-target and Host grammars are in h1-uri.ts)
// and, where the RFCs let a recipient choose, takes the strict choice, naming the section:
//   - leading empty lines: at most two ignored (RFC 9112 2.2 "SHOULD ignore at least one");
//   - bare LF as a line end, bare CR (RFC 9112 2.2: MAY accept LF, MUST reject or replace CR);
//   - whitespace between the start-line and the first field, and obs-fold (RFC 9112 2.2, 5.2);
//   - Content-Length with Transfer-Encoding (RFC 9112 6.1 MAY reject); in requests, Content-Length
//     in more than one field line or as a list (RFC 9110 8.6 lets a recipient merge identical
//     values), and Transfer-Encoding in more than one field line (RFC 9110 5.3 makes them one
//     list, but parsers that take the first or the last line instead would frame the body apart);
//   - unknown transfer codings (RFC 9112 6.1: 501), Transfer-Encoding in HTTP/1.0 (RFC 9112 6.1);
//   - HTTP/1.x versions above 1.1 (RFC 9110 2.5 lets a server process them as 1.1): 505.
// Responses come from the proxy's own apps and are read as leniently as is safe: a status line
// without the SP before an empty reason-phrase is accepted (RFC 9112 4), identical Content-Lengths
// merge.
//
// Heads are parsed from a Buffer; strings are latin1 (one char per byte) so that forwarding them
// re-encodes the same bytes.

import { checkTargetForm, isValidHost, scanRequestTarget } from './h1-uri.ts';

export { isValidHost };

export interface H1Limits {
  readonly maxRequestLineBytes: number;
  readonly maxHeaderBytes: number;
  readonly maxHeaders: number;
}

export type BodyKind = 'none' | 'length' | 'chunked' | 'close';

export interface MessageHead {
  /** Request: the method; response: ''. */
  method: string;
  /** Request: the request-target as received; response: ''. */
  target: string;
  /** Response: the status code; request: 0. */
  status: number;
  reason: string;
  /** 0 or 1 (HTTP/1.0 or HTTP/1.1). */
  versionMinor: number;
  /** Flat [name, value, name, value, ...]; names as received, values without surrounding whitespace. */
  headers: string[];
  /** How the body is framed (for responses, before the request method and status are considered). */
  bodyKind: BodyKind;
  contentLength: number;
  /** The sender will close the connection after this message (or asked for it). */
  connectionClose: boolean;
  /** Lower-cased Connection tokens other than close/keep-alive (hop-by-hop header names). */
  connectionTokens: string[] | null;
  /** The Upgrade header value when Connection names upgrade (without h2c: withoutH2c), else null. */
  upgrade: string | null;
  expectContinue: boolean;
  /** The Host header value (requests), or null. */
  host: string | null;
}

export type ParseResult =
  | { readonly kind: 'ok'; readonly head: MessageHead; readonly end: number }
  | { readonly kind: 'incomplete' }
  | { readonly kind: 'error'; readonly status: number; readonly message: string };

const INCOMPLETE: ParseResult = { kind: 'incomplete' };

function fail(status: number, message: string): ParseResult {
  return { kind: 'error', status, message };
}

/** tchar per RFC 9110 5.6.2: 1 for the bytes of a token. */
export const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~") TCHAR[c.charCodeAt(0)] = 1;
for (let c = 0x30; c <= 0x39; c++) TCHAR[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) TCHAR[c] = 1;
for (let c = 0x61; c <= 0x7a; c++) TCHAR[c] = 1;

// field-value bytes: VCHAR, obs-text, SP, HTAB.
const VALUE_CHAR = new Uint8Array(256);
for (let c = 0x20; c <= 0x7e; c++) VALUE_CHAR[c] = 1;
for (let c = 0x80; c <= 0xff; c++) VALUE_CHAR[c] = 1;
VALUE_CHAR[0x09] = 1;

const CR = 13;
const LF = 10;
const CRLFCRLF = Buffer.from('\r\n\r\n', 'latin1');

export function isToken(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) if (TCHAR[s.charCodeAt(i)] !== 1) return false;
  return true;
}

/** Strips optional whitespace (SP / HTAB only: String.prototype.trim also strips NBSP, 0xA0). */
function trimOws(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && (s.charCodeAt(a) === 0x20 || s.charCodeAt(a) === 0x09)) a++;
  while (b > a && (s.charCodeAt(b - 1) === 0x20 || s.charCodeAt(b - 1) === 0x09)) b--;
  return a === 0 && b === s.length ? s : s.slice(a, b);
}

/**
 * True when [lineStart, end) holds a bare LF (not after CR) or a bare CR (followed by anything but
 * LF): such bytes can never become a valid head, so the caller can answer at once instead of
 * waiting for a timeout. Uses indexOf (memchr) rather than a loop over every byte, since a slow
 * client makes this run once per received segment.
 */
function hasBareCrOrLf(buf: Buffer, lineStart: number, end: number): boolean {
  for (let j = buf.indexOf(LF, lineStart); j !== -1 && j < end; j = buf.indexOf(LF, j + 1)) {
    if (j === lineStart || buf[j - 1] !== CR) return true;
  }
  for (let j = buf.indexOf(CR, lineStart); j !== -1 && j + 1 < end; j = buf.indexOf(CR, j + 1)) {
    if (buf[j + 1] !== LF) return true;
  }
  return false;
}

/** The index just after the blank line that ends a head (searching from `from`), or -1. */
function findHeadEnd(buf: Buffer, from: number, end: number): number {
  const i = buf.indexOf(CRLFCRLF, from);
  return i !== -1 && i + 4 <= end ? i + 4 : -1;
}

/** Parses header lines in [pos, headEnd - 2) into head; returns an error result or null. */
function parseHeaderLines(
  buf: Buffer,
  pos: number,
  headEnd: number,
  limits: H1Limits,
  head: MessageHead,
  isRequest: boolean,
): ParseResult | null {
  const headers = head.headers;
  const stop = headEnd - 2; // the final CRLF
  let lines = 0;
  let contentLength = -1;
  let sawTE = false;
  let teChunked = false;
  let connUpgrade = false;
  let upgrade: string | null = null;
  let hostCount = 0;
  let closeAsked = false;
  while (pos < stop) {
    // Every line counts, also those consumed below (framing, Connection), which are not kept.
    if (++lines > limits.maxHeaders) return fail(431, 'too many header fields');
    const c0 = buf[pos]!;
    // obs-fold, or (first line) whitespace after the start-line: both refused (RFC 9112 2.2, 5.2).
    if (c0 === 0x20 || c0 === 0x09) return fail(400, 'obsolete line folding is not accepted');
    let colon = pos;
    while (colon < stop && TCHAR[buf[colon]!] === 1) colon++;
    if (colon === pos) return fail(400, 'invalid header name');
    if (buf[colon] !== 0x3a) return fail(400, 'invalid character in header name');
    const name = buf.latin1Slice(pos, colon);
    let vs = colon + 1;
    let lineEnd = vs;
    while (buf[lineEnd] !== CR) {
      if (VALUE_CHAR[buf[lineEnd]!] !== 1) return fail(400, `invalid character in header value of ${name}`);
      lineEnd++;
    }
    if (buf[lineEnd + 1] !== LF) return fail(400, 'bare CR in header');
    let ve = lineEnd;
    while (vs < ve && (buf[vs] === 0x20 || buf[vs] === 0x09)) vs++;
    while (ve > vs && (buf[ve - 1] === 0x20 || buf[ve - 1] === 0x09)) ve--;
    const value = buf.latin1Slice(vs, ve);
    pos = lineEnd + 2;

    // Framing and connection headers, matched by length first to stay cheap.
    const n = name.length;
    if (n === 14 && name.toLowerCase() === 'content-length') {
      // Requests: exactly one field with one value, as llhttp and nginx insist (RFC 9110 8.6 lets a
      // recipient merge identical values; a request that needs it is far likelier an attack).
      // Responses: identical values are merged.
      if (isRequest && (contentLength !== -1 || value.indexOf(',') !== -1))
        return fail(400, 'repeated Content-Length');
      const r = parseContentLength(value);
      if (r < 0) return fail(400, 'invalid Content-Length');
      if (contentLength !== -1 && contentLength !== r) return fail(400, 'conflicting Content-Length values');
      contentLength = r; // re-added below as one canonical field
      continue;
    } else if (n === 17 && name.toLowerCase() === 'transfer-encoding') {
      // Transfer-Encoding = #transfer-coding (RFC 9112 6.1), OWS = *( SP / HTAB ) around each
      // element. Requests: one field line (see the header comment); responses: the list rule.
      if (sawTE && (isRequest || teChunked))
        return fail(400, isRequest ? 'repeated Transfer-Encoding' : 'transfer coding after chunked');
      sawTE = true;
      const codings = value.toLowerCase().split(',');
      for (let k = 0; k < codings.length; k++) {
        const coding = trimOws(codings[k]!);
        if (coding === '') continue;
        if (coding !== 'chunked' || teChunked)
          return fail(isRequest ? 501 : 502, 'unsupported transfer coding');
        teChunked = true;
      }
      continue; // re-framed by the proxy
    } else if (n === 10 && name.toLowerCase() === 'connection') {
      const tokens = value.toLowerCase().split(',');
      for (let k = 0; k < tokens.length; k++) {
        const t = trimOws(tokens[k]!);
        if (t === 'close') {
          head.connectionClose = true;
          closeAsked = true; // close wins over keep-alive, whatever their order
        } else if (t === 'keep-alive') {
          if (head.versionMinor === 0 && !closeAsked) head.connectionClose = false;
        } else if (t === 'upgrade') connUpgrade = true;
        else if (t !== '' && !isFramingField(t)) (head.connectionTokens ??= []).push(t);
      }
      continue;
    } else if (n === 7 && name.toLowerCase() === 'upgrade') {
      upgrade = value;
      continue;
    } else if (n === 6 && name.toLowerCase() === 'expect') {
      if (value.toLowerCase() === '100-continue') head.expectContinue = true;
    } else if (n === 4 && isRequest && name.toLowerCase() === 'host') {
      hostCount++;
      head.host = value;
    }
    headers.push(name, value);
  }
  if (sawTE && !teChunked) return fail(400, 'empty Transfer-Encoding');
  if (sawTE) {
    if (contentLength !== -1) return fail(400, 'both Content-Length and Transfer-Encoding');
    if (head.versionMinor === 0) return fail(400, 'Transfer-Encoding in an HTTP/1.0 message');
    head.bodyKind = 'chunked';
  } else if (contentLength !== -1) {
    head.bodyKind = 'length';
    head.contentLength = contentLength;
    headers.push('Content-Length', String(contentLength));
  } else {
    head.bodyKind = isRequest ? 'none' : 'close';
  }
  if (isRequest) {
    if (hostCount > 1) return fail(400, 'more than one Host header');
    if (hostCount === 0 && head.versionMinor === 1) return fail(400, 'missing Host header');
    if (head.host !== null && !isValidHost(head.host)) return fail(400, 'invalid Host header');
  }
  if (connUpgrade && upgrade !== null) head.upgrade = withoutH2c(upgrade);
  return null;
}

/**
 * An Upgrade list without "h2c" (null when nothing else is offered). After an app's 101 to h2c
 * the connection carries HTTP/2 that the proxy never reads: requests with any path and any
 * client-identity header, past policy (h2c smuggling). RFC 9113 3.1 retires this upgrade; HTTP/2
 * goes as HTTP/2 (prior knowledge or ALPN), which the proxy reads stream by stream.
 */
function withoutH2c(upgrade: string): string | null {
  if (!/h2c/i.test(upgrade)) return upgrade;
  const kept = upgrade
    .split(',')
    .map(trimOws)
    .filter((p) => p !== '' && p.toLowerCase() !== 'h2c' && !p.toLowerCase().startsWith('h2c/'));
  return kept.length === 0 ? null : kept.join(', ');
}

/**
 * True when a 101's Upgrade field (`chosen`) switches only to protocols the request offered
 * (`offered`, its Upgrade list as forwarded): RFC 9110 7.8, a server MUST NOT switch to a protocol
 * the client did not indicate (`chosen` null: the 101 named none, or only h2c). A tunnel to anything else carries bytes the proxy never reads, as
 * an app's unasked 101 to h2c would (HTTP/2 past policy and the client-identity header). Names
 * compare case-insensitively; a chosen version must be the offered one when the offer names one.
 */
export function switchesToOffered(offered: string, chosen: string | null): boolean {
  if (chosen === null) return false;
  const offers = upgradeProtocols(offered);
  const picks = upgradeProtocols(chosen);
  if (picks === null || offers === null || picks.length === 0) return false;
  return picks.every(([name, version]) =>
    offers.some(([n, v]) => n === name && (v === null || v === version)),
  );
}

/** An Upgrade list as [lower-case name, version or null] pairs; null when an element is not a protocol. */
function upgradeProtocols(list: string): Array<[string, string | null]> | null {
  const out: Array<[string, string | null]> = [];
  for (const element of list.split(',')) {
    const p = trimOws(element);
    if (p === '') continue; // empty list elements are allowed (RFC 9110 5.6.1)
    const slash = p.indexOf('/');
    const name = slash === -1 ? p : p.slice(0, slash);
    const version = slash === -1 ? null : p.slice(slash + 1);
    if (!isToken(name) || (version !== null && !isToken(version))) return null;
    out.push([name.toLowerCase(), version === null ? null : version.toLowerCase()]);
  }
  return out;
}

/**
 * Fields that frame or route the message: the proxy writes them itself, so a Connection option
 * naming one ("Connection: content-length") must not make them hop-by-hop. A sender MUST NOT name
 * them (RFC 9110 7.6.1); dropping the Content-Length the proxy forwards would let the upstream
 * read the body as the next request.
 */
function isFramingField(lowerName: string): boolean {
  return lowerName === 'content-length' || lowerName === 'transfer-encoding' || lowerName === 'host';
}

/** Content-Length: 1*DIGIT, also as a list of identical values ("5, 5"); -1 when invalid. */
export function parseContentLength(value: string): number {
  let result = -1;
  for (const part of value.split(',')) {
    const p = trimOws(part);
    if (p.length === 0 || p.length > 15) return -1;
    let v = 0;
    for (let i = 0; i < p.length; i++) {
      const d = p.charCodeAt(i) - 0x30;
      if (d < 0 || d > 9) return -1;
      v = v * 10 + d;
    }
    if (result !== -1 && result !== v) return -1;
    result = v;
  }
  return result;
}

function newHead(): MessageHead {
  return {
    method: '',
    target: '',
    status: 0,
    reason: '',
    versionMinor: 1,
    headers: [],
    bodyKind: 'none',
    contentLength: 0,
    connectionClose: false,
    connectionTokens: null,
    upgrade: null,
    expectContinue: false,
    host: null,
  };
}

/** Reads "HTTP/1.x" at pos; returns the minor version, or -1 (not HTTP/1.x), -2 (other HTTP version). */
function parseVersion(buf: Buffer, pos: number): number {
  if (
    buf[pos] !== 0x48 ||
    buf[pos + 1] !== 0x54 ||
    buf[pos + 2] !== 0x54 ||
    buf[pos + 3] !== 0x50 ||
    buf[pos + 4] !== 0x2f
  )
    return -1;
  const major = buf[pos + 5]!;
  const dot = buf[pos + 6];
  const minor = buf[pos + 7]!;
  if (dot !== 0x2e || major < 0x30 || major > 0x39 || minor < 0x30 || minor > 0x39) return -1;
  if (major !== 0x31 || minor > 0x31) return -2;
  return minor - 0x30;
}

/**
 * Parses `method SP request-target SP HTTP-version CRLF` at pos into head and checks it (its
 * length, the request-target's form for the method); returns the index after the CRLF, or an
 * error. Also runs on a head still incomplete once its first line is in, so that a bad request
 * line is answered at once, whatever follows.
 */
function parseRequestLine(
  buf: Buffer,
  pos: number,
  head: MessageHead,
  limits: H1Limits,
): number | ParseResult {
  let i = pos;
  while (TCHAR[buf[i]!] === 1) i++;
  if (i === pos || buf[i] !== 0x20) return fail(400, 'invalid method');
  const ts = i + 1;
  i = scanRequestTarget(buf, ts);
  if (i === -1) return fail(400, 'invalid percent-encoding in the request target');
  if (i === ts || buf[i] !== 0x20) return fail(400, 'invalid request target');
  // Exactly "HTTP/d.d" CR LF must follow.
  if (buf[i + 9] !== CR || buf[i + 10] !== LF) return fail(400, 'invalid request line');
  const minor = parseVersion(buf, i + 1);
  if (minor === -2) return fail(505, 'HTTP version not supported');
  if (minor < 0) return fail(400, 'invalid request line');
  head.method = buf.latin1Slice(pos, ts - 1);
  head.target = buf.latin1Slice(ts, i);
  head.versionMinor = minor;
  head.connectionClose = minor === 0;
  if (i + 11 - pos > limits.maxRequestLineBytes) return fail(414, 'request line too long');
  const formErr = checkTargetForm(head.method, head.target);
  if (formErr !== null) return fail(400, formErr);
  return i + 11;
}

export function parseRequestHead(buf: Buffer, start: number, end: number, limits: H1Limits): ParseResult {
  // RFC 9112 2.2: ignore at least one empty line before the request-line.
  let pos = start;
  for (let k = 0; k < 2 && pos + 1 < end && buf[pos] === CR && buf[pos + 1] === LF; k++) pos += 2;
  const headEnd = findHeadEnd(buf, pos, end);
  if (headEnd === -1) return checkIncompleteRequestHead(buf, pos, end, limits);
  const head = newHead();
  const fieldsStart = parseRequestLine(buf, pos, head, limits);
  if (typeof fieldsStart !== 'number') return fieldsStart;
  if (headEnd - fieldsStart > limits.maxHeaderBytes) return fail(431, 'request header fields too large');
  const err = parseHeaderLines(buf, fieldsStart, headEnd, limits, head, true);
  if (err !== null) return err;
  return { kind: 'ok', head, end: headEnd };
}

/** A head without its blank line yet: an error when it can never become valid, else INCOMPLETE. */
function checkIncompleteRequestHead(buf: Buffer, pos: number, end: number, limits: H1Limits): ParseResult {
  const lf = buf.indexOf(LF, pos);
  if (lf === -1 || lf >= end) {
    if (end - pos > limits.maxRequestLineBytes) return fail(414, 'request line too long');
    if (hasBareCrOrLf(buf, pos, end)) return fail(400, 'bare CR or LF');
    return INCOMPLETE;
  }
  const head = newHead();
  const fieldsStart = parseRequestLine(buf, pos, head, limits);
  if (typeof fieldsStart !== 'number') return fieldsStart;
  if (end - fieldsStart > limits.maxHeaderBytes) return fail(431, 'request header fields too large');
  if (hasBareCrOrLf(buf, fieldsStart, end)) return fail(400, 'bare CR or LF');
  return INCOMPLETE;
}

export function parseResponseHead(buf: Buffer, start: number, end: number, limits: H1Limits): ParseResult {
  const headEnd = findHeadEnd(buf, start, end);
  if (headEnd === -1) {
    if (end - start > limits.maxRequestLineBytes + limits.maxHeaderBytes)
      return fail(502, 'response head too large');
    if (hasBareCrOrLf(buf, start, end)) return fail(502, 'bare CR or LF in response');
    return INCOMPLETE;
  }
  const head = newHead();
  const minor = parseVersion(buf, start);
  if (minor < 0 || buf[start + 8] !== 0x20) return fail(502, 'invalid status line');
  let status = 0;
  for (let k = 9; k < 12; k++) {
    const d = buf[start + k]! - 0x30;
    if (d < 0 || d > 9) return fail(502, 'invalid status code');
    status = status * 10 + d;
  }
  if (status < 100) return fail(502, 'invalid status code');
  let i = start + 12;
  let rs = i;
  if (buf[i] === 0x20) rs = ++i;
  else if (buf[i] !== CR) return fail(502, 'invalid status line');
  while (buf[i] !== CR) {
    if (VALUE_CHAR[buf[i]!] !== 1) return fail(502, 'invalid reason phrase');
    i++;
  }
  if (buf[i + 1] !== LF) return fail(502, 'bare CR in status line');
  head.reason = buf.latin1Slice(rs, i);
  head.status = status;
  head.versionMinor = minor;
  head.connectionClose = minor === 0;
  const err = parseHeaderLines(buf, i + 2, headEnd, limits, head, false);
  if (err !== null) return { kind: 'error', status: 502, message: (err as { message: string }).message };
  return { kind: 'ok', head, end: headEnd };
}

/** Looks a header up by lower-case name in a flat header list. */
export function getHeader(headers: readonly string[], lowerName: string): string | undefined {
  for (let i = 0; i < headers.length; i += 2) {
    const n = headers[i]!;
    if (n.length === lowerName.length && n.toLowerCase() === lowerName) return headers[i + 1];
  }
  return undefined;
}
