// Protocol detection: classifies the first bytes of an accepted connection, like the detect layer
// of linkerd2-proxy. The caller reads bytes until the answer is no longer `need-more` (or a detect
// timeout fires), then hands the connection with the bytes read so far to the matching stack:
// HTTP/1.x, HTTP/2 with prior knowledge (gRPC), TLS passed through untouched (routed by SNI/ALPN),
// or opaque TCP.
//
// Pure and bounded: at most `maxBytes` bytes are looked at, once each, and nothing throws.
// Decisions are stable: once a buffer gets an answer other than `need-more`, any longer buffer
// that starts with it gets the same answer, so the caller may decide at the first final answer.
// Each recogniser says "impossible" at the first byte that rules its protocol out, so garbage and
// server-first protocols are classified opaque without waiting for the detect timeout.

import { parseClientHello } from './tls-client-hello.ts';

export type Detection =
  | { kind: 'need-more' } // not enough bytes to decide yet
  | { kind: 'http1' }
  | { kind: 'h2' } // the 24-byte prior-knowledge preface "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
  | { kind: 'tls'; sni: string | null; alpn: string[] }
  | { kind: 'opaque' };

export const DEFAULT_DETECT_MAX_BYTES = 16 * 1024;

const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
/**
 * HTTP methods: the IANA registry, and the extension methods common HTTP servers accept (llhttp's,
 * Node's parser, among them). A line that starts with one of them and whitespace is plainly meant
 * as HTTP/1, whatever follows.
 */
const KNOWN_METHODS = new Set(
  (
    'ACL BASELINE-CONTROL BIND CHECKIN CHECKOUT CONNECT COPY DELETE GET HEAD LABEL LINK LOCK MERGE ' +
    'MKACTIVITY MKCALENDAR MKCOL MKREDIRECTREF MKWORKSPACE MOVE OPTIONS ORDERPATCH PATCH POST PRI ' +
    'PROPFIND PROPPATCH PUT QUERY REBIND REPORT SEARCH TRACE UNBIND UNCHECKOUT UNLINK UNLOCK UPDATE ' +
    'UPDATEREDIRECTREF VERSION-CONTROL PURGE NOTIFY SUBSCRIBE UNSUBSCRIBE M-SEARCH SOURCE'
  ).split(' '),
);

const NEED_MORE: Detection = Object.freeze({ kind: 'need-more' });
const HTTP1: Detection = Object.freeze({ kind: 'http1' });
const H2: Detection = Object.freeze({ kind: 'h2' });
const OPAQUE: Detection = Object.freeze({ kind: 'opaque' });

const TLS_HANDSHAKE = 0x16;
const TLS_MAX_RECORD_PAYLOAD = 16384;

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HTAB = 0x09;
const VT = 0x0b;
const FF = 0x0c;

/** Classifies the first bytes of a connection. Pure, never throws, O(n) over at most maxBytes. */
export function detectProtocol(buf: Buffer, maxBytes: number = DEFAULT_DETECT_MAX_BYTES): Detection {
  const limit = Number.isFinite(maxBytes) && maxBytes >= 1 ? Math.floor(maxBytes) : DEFAULT_DETECT_MAX_BYTES;
  const view = buf.length > limit ? buf.subarray(0, limit) : buf;
  if (view.length === 0) return NEED_MORE;
  if (view[0] === TLS_HANDSHAKE) {
    const tls = detectTls(view, limit);
    if (tls.kind !== 'need-more' || view.length < limit) return tls;
    // The hello does not fit in what we may read: TLS still, but nothing to route on.
    return hasPlausibleTlsRecordHeader(view) ? { kind: 'tls', sni: null, alpn: [] } : OPAQUE;
  }
  const result = detectH2Preface(view) ?? detectHttp1(view);
  // maxBytes without a decision: only an HTTP/1 request line still being read can get here (empty
  // lines, a method, a target, all within the grammar so far, the h2 preface being 24 bytes). It
  // goes to the HTTP/1 parser, which refuses it (400, 414, 501), rather than on as opaque bytes
  // that a lenient server behind the proxy might read as a request nobody checked.
  return result.kind === 'need-more' && view.length >= limit ? HTTP1 : result;
}

/** h2 on the whole preface, need-more on a strict prefix of it, null when it is not the preface. */
function detectH2Preface(buf: Buffer): Detection | null {
  const n = Math.min(buf.length, H2_PREFACE.length);
  for (let i = 0; i < n; i++) {
    if (buf[i] !== H2_PREFACE[i]) return null;
  }
  return n === H2_PREFACE.length ? H2 : NEED_MORE;
}

/**
 * Recognises the first line of an HTTP/1 request, after any empty lines (RFC 9112 §2.2), as
 * leniently as any server behind the proxy might: a known method and whitespace, or any token and
 * whitespace on a line that names an HTTP version. What it recognises goes to the strict HTTP/1
 * parser, which refuses what the grammar (RFC 9112 §3) does not allow: detection only decides
 * which parser sees the bytes, so erring towards HTTP/1 never forwards anything unchecked.
 */
function detectHttp1(buf: Buffer): Detection {
  let i = 0;
  // Leading empty lines: servers ignore at least one (RFC 9112 §2.2); the HTTP/1 parser decides
  // how many it accepts, so detection skips them all (within maxBytes). A bare CR among them too:
  // lenient servers skip it, so a request line after it goes to the parser (which refuses it)
  // rather than on as opaque bytes.
  while (i < buf.length && (buf[i] === CR || buf[i] === LF)) i++;
  if (i === buf.length) return NEED_MORE;
  // method = token
  const methodStart = i;
  while (i < buf.length && isTokenChar(buf[i] ?? 0)) i++;
  if (i === buf.length) return NEED_MORE;
  if (i === methodStart) return OPAQUE;
  // A known method and whitespace is plainly meant as HTTP/1: the HTTP/1 parser takes it from here
  // and answers a malformed line (a bad target, HTTP/0.9, another version, a tab or two spaces
  // where one belongs) itself, rather than the bytes going through as opaque TCP, where a lenient
  // server behind the proxy (one that splits the line on any whitespace, or knows more methods)
  // would read them as a request nobody checked.
  const sep = buf[i];
  if (sep !== SP && sep !== HTAB && sep !== VT && sep !== FF) return OPAQUE;
  if (KNOWN_METHODS.has(buf.latin1Slice(methodStart, i))) return HTTP1;
  // Any other token and whitespace: HTTP/1 when its line names an HTTP version anywhere ("HTTP/"
  // and a digit, in any case), as lenient servers would read it; else another protocol's line
  // (memcached's "get key", a Redis inline command, an SMTP verb).
  const lineEnd = buf.indexOf(LF, i);
  if (lineEnd === -1) return NEED_MORE;
  return namesHttpVersion(buf, i, lineEnd) ? HTTP1 : OPAQUE;
}

/** Whether buf[from, to) holds "HTTP/" (any case) followed by a digit. */
function namesHttpVersion(buf: Buffer, from: number, to: number): boolean {
  for (let i = from; i + 5 < to; i++) {
    if (
      (buf[i]! | 0x20) === 0x68 &&
      (buf[i + 1]! | 0x20) === 0x74 &&
      (buf[i + 2]! | 0x20) === 0x74 &&
      (buf[i + 3]! | 0x20) === 0x70 &&
      buf[i + 4] === 0x2f &&
      isDigit(buf[i + 5]!)
    )
      return true;
  }
  return false;
}

/** tchar of RFC 9110 §5.6.2. */
function isTokenChar(byte: number): boolean {
  if (isDigit(byte) || (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a)) return true;
  switch (byte) {
    case 0x21: // !
    case 0x23: // #
    case 0x24: // $
    case 0x25: // %
    case 0x26: // &
    case 0x27: // '
    case 0x2a: // *
    case 0x2b: // +
    case 0x2d: // -
    case 0x2e: // .
    case 0x5e: // ^
    case 0x5f: // _
    case 0x60: // `
    case 0x7c: // |
    case 0x7e: // ~
      return true;
    default:
      return false;
  }
}

function isDigit(byte: number): boolean {
  return byte >= 0x30 && byte <= 0x39;
}

/**
 * TLS when the first record header is a handshake record of version 3.0..1.3 (0x0300..0x0304)
 * with a legal length; then the ClientHello decides SNI/ALPN. A hello that fails to parse behind
 * a plausible header is still TLS, with nothing to route on; an implausible header is opaque.
 */
function detectTls(buf: Buffer, limit: number): Detection {
  if (buf.length >= 2 && buf[1] !== 0x03) return OPAQUE;
  if (buf.length >= 3 && (buf[2] ?? 0xff) > 0x04) return OPAQUE;
  if (buf.length < 5) return NEED_MORE;
  if (!hasPlausibleTlsRecordHeader(buf)) return OPAQUE;
  const hello = parseClientHello(buf, limit);
  switch (hello.status) {
    case 'need-more':
      return NEED_MORE;
    case 'error':
      return { kind: 'tls', sni: null, alpn: [] };
    case 'ok':
      return { kind: 'tls', sni: hello.sni, alpn: hello.alpn };
  }
}

function hasPlausibleTlsRecordHeader(buf: Buffer): boolean {
  if (buf.length < 5 || buf[0] !== TLS_HANDSHAKE || buf[1] !== 0x03 || (buf[2] ?? 0xff) > 0x04) return false;
  const length = buf.readUInt16BE(3);
  return length >= 1 && length <= TLS_MAX_RECORD_PAYLOAD;
}
