// One set of request-head limits on every path: an HTTP/2 request (node:http2's raw header list,
// or the own HTTP/2's fields: both flat [name, value, ...]) is held to the limits the HTTP/1
// parser enforces (config http1: maxRequestLineBytes, maxHeaderBytes, maxHeaders), measured as the
// HTTP/1.1 head it would be written as (src/proxy/mesh/h1-fields.ts h1RequestHead): the request
// line "METHOD SP target SP HTTP/1.1 CRLF", one "name: value CRLF" line per field (Host for
// :authority; cookie crumbs joined into one line, as RFC 9113 8.2.3 has them rejoined), and the
// blank line that ends the head. Without this, heads that HTTP/1 answers with 431 reached the
// app when they came as HTTP/2. One pass over the fields, no allocation.
// The interim (1xx) heads of an HTTP/2 upstream's response are measured the same way
// (interimHeadBytes).
import type { H1Limits } from './h1-parser.ts';

/** What the head's size means: 0 within the limits, else the status to answer (414 or 431). */
export type HeadLimitStatus = 0 | 414 | 431;

const HTTP_VERSION_AND_CRLF = ' HTTP/1.1\r\n'.length;
/** ": " and CRLF around a field's value. */
const FIELD_LINE_OVERHEAD = 4;
/** The blank line that ends a head (the HTTP/1 parser counts it in maxHeaderBytes). */
const HEAD_END = 2;
const HOST = 'host'.length;
/** "; " between joined cookie crumbs. */
const COOKIE_JOIN = 2;

/** What an answer with `status` (414 or 431) says about the request head. */
export function headLimitMessage(status: 414 | 431): string {
  return status === 414 ? 'request target too long' : 'request header fields too large';
}

/**
 * Checks a request's fields (flat [name, value, ...], names in lower case, pseudo-headers first)
 * against the HTTP/1 head limits, in the HTTP/1 parser's order: the request line (414), the head's
 * bytes (431), the number of field lines (431).
 */
export function requestHeadLimitStatus(fields: readonly string[], limits: H1Limits): HeadLimitStatus {
  let method = 0;
  let target = 0;
  let authority = -1;
  let lines = 0;
  let bytes = HEAD_END;
  let cookie = false;
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i]!;
    const value = fields[i + 1]!;
    if (name.charCodeAt(0) === 0x3a) {
      if (name === ':method') method = value.length;
      else if (name === ':path') target = value.length;
      else if (name === ':authority') authority = value.length;
      continue;
    }
    if (name === 'cookie') {
      if (cookie) {
        bytes += value.length + COOKIE_JOIN;
        continue;
      }
      cookie = true;
    }
    lines++;
    bytes += name.length + value.length + FIELD_LINE_OVERHEAD;
  }
  if (authority >= 0) {
    lines++;
    bytes += HOST + authority + FIELD_LINE_OVERHEAD;
    if (target === 0) target = authority; // CONNECT: the authority is the request target
  }
  if (method + 1 + target + HTTP_VERSION_AND_CRLF > limits.maxRequestLineBytes) return 414;
  if (bytes > limits.maxHeaderBytes || lines > limits.maxHeaders) return 431;
  return 0;
}

/**
 * An interim (1xx) response head from node:http2 measured as its HTTP/1.1 head would be
 * ("HTTP/1.1 1xx CRLF", a line per field, the blank line): what the interim heads of one response
 * may have together is bounded as HTTP/1's are (upstream-conn.ts).
 */
export function interimHeadBytes(headers: Readonly<Record<string, string | string[] | undefined>>): number {
  let bytes = 'HTTP/1.1 100 \r\n'.length + HEAD_END;
  for (const name of Object.keys(headers)) {
    if (name.charCodeAt(0) === 0x3a) continue;
    const value = headers[name];
    for (const v of Array.isArray(value) ? value : [value])
      bytes += name.length + FIELD_LINE_OVERHEAD + String(v).length;
  }
  return bytes;
}
