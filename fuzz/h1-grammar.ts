// The oracle's strict reading of an HTTP/1.1 request head, production by production from the ABNF
// of RFC 9112 (request-line, request-target forms, HTTP-version, field-line) and RFC 9110
// (token, field-value, Host, Content-Length, Transfer-Encoding), plus the proxy's own limits. The
// app runs it on every head a proxy forwards: a proxy re-serializes what it parsed, so anything
// here that fails is something the proxy should have refused. Written independently of
// src/proxy/http/h1-parser.ts on purpose (a second reading of the RFC, not a copy).

/** The proxy's HTTP/1 limits (src/proxy/config.ts defaults), which every path must enforce. */
export const H1_LIMITS = { maxRequestLineBytes: 8192, maxHeaderBytes: 64 * 1024, maxHeaders: 128 } as const;
/** Fields a proxy may add on the way (identity, Host, framing, Via...). */
const ADDED_FIELDS_SLACK = 8;

const TCHAR = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const ALPHA = 'A-Za-z';
const UNRESERVED = `${ALPHA}0-9\\-._~`;
const SUB_DELIMS = "!$&'()*+,;=";
const PCHAR = `[${UNRESERVED}${SUB_DELIMS}:@]|%[0-9A-Fa-f]{2}`;
const SEGMENT = `(?:${PCHAR})*`;
// The query also takes what browsers send raw there ([ ] { } | ^ ` \ and a stray %): the proxy
// accepts those on purpose (src/proxy/http/h1-uri.ts), the path stays strict.
const QUERY = `(?:${PCHAR}|[/?\\[\\]{}|^\`\\\\%])*`;
const ORIGIN_FORM = new RegExp(`^(?:/${SEGMENT})+(?:\\?${QUERY})?$`);
const REG_NAME = `(?:[${UNRESERVED}${SUB_DELIMS}]|%[0-9A-Fa-f]{2})*`;
const IP_LITERAL = '\\[[0-9A-Fa-f:.]+\\]';
const URI_HOST = `(?:${IP_LITERAL}|${REG_NAME})`;
const AUTHORITY = `(?:(?:[${UNRESERVED}${SUB_DELIMS}:]|%[0-9A-Fa-f]{2})*@)?${URI_HOST}(?::[0-9]*)?`;
const ABSOLUTE_FORM = new RegExp(
  `^[${ALPHA}][${ALPHA}0-9+\\-.]*://${AUTHORITY}(?:/${SEGMENT})*(?:\\?${QUERY})?$`,
);
const AUTHORITY_FORM = new RegExp(`^${URI_HOST}:[0-9]*$`);
const HOST_VALUE = new RegExp(`^${URI_HOST}(?::[0-9]*)?$`);
/** field-value: field-vchar (VCHAR / obs-text) with SP / HTAB only between them. */
const FIELD_VALUE = /^(?:[\x21-\x7e\x80-\xff](?:[ \t\x21-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?$/;

/** Why `target` is not a valid request-target for `method` (RFC 9112 3.2), or null. */
export function checkRequestTarget(method: string, target: string): string | null {
  if (method === 'CONNECT')
    return AUTHORITY_FORM.test(target) ? null : 'CONNECT target is not authority-form';
  if (target === '*') return method === 'OPTIONS' ? null : 'asterisk-form outside OPTIONS';
  if (target.startsWith('/')) return ORIGIN_FORM.test(target) ? null : 'origin-form grammar';
  return ABSOLUTE_FORM.test(target) ? null : 'request-target grammar';
}

export interface HeadReading {
  readonly method: string;
  readonly target: string;
  /** [lower-case name, value] of each field line, in order. */
  readonly fields: readonly (readonly [string, string])[];
  /** The first rule the head breaks, or null. */
  readonly violation: string | null;
  /** The first character that breaks it, when one does (JSON-escaped). */
  readonly offending: string | null;
}

const URI_CHAR = /[A-Za-z0-9\-._~!$&'()*+,;=:@/?%]/;

/** The first character of a request-target outside the URI characters (or a bad %-escape). */
function offendingTargetChar(target: string): string | null {
  for (let i = 0; i < target.length; i++) {
    const c = target[i]!;
    if (c === '%' && !/^%[0-9A-Fa-f]{2}/.test(target.slice(i))) return JSON.stringify(target.slice(i, i + 3));
    if (!URI_CHAR.test(c)) return JSON.stringify(c);
  }
  return null;
}

/** The first character of a field value that is neither field-vchar, SP nor HTAB. */
function offendingValueChar(value: string): string | null {
  const m = /[^ \t\x21-\x7e\x80-\xff]/.exec(value);
  return m === null ? null : JSON.stringify(m[0]);
}

/** Reads `head` (the bytes up to and including the empty line) strictly. */
export function readRequestHead(head: string): HeadReading {
  const fail = (
    violation: string,
    method = '',
    target = '',
    fields: [string, string][] = [],
    offending: string | null = null,
  ): HeadReading => ({ method, target, fields, violation, offending });
  if (!head.endsWith('\r\n\r\n')) return fail('head does not end with CRLF CRLF');
  const lines = head.slice(0, -4).split('\r\n');
  for (const line of lines) if (/[\r\n]/.test(line)) return fail('bare CR or LF');
  const requestLine = lines[0]!;
  if (requestLine.length + 2 > H1_LIMITS.maxRequestLineBytes) return fail('request line over the limit');
  const m = /^([^ ]+) ([^ ]+) HTTP\/([0-9])\.([0-9])$/.exec(requestLine);
  if (m === null) return fail('request-line grammar');
  const [, method, target, major, minor] = m as unknown as [string, string, string, string, string];
  const fields: [string, string][] = [];
  const broken = (v: string, offending: string | null = null) => fail(v, method, target, fields, offending);
  if (!TCHAR.test(method)) return broken('method is not a token');
  if (major !== '1' || (minor !== '0' && minor !== '1')) return broken('HTTP version other than 1.0/1.1');
  const targetError = checkRequestTarget(method, target);
  if (targetError !== null) return broken(targetError, offendingTargetChar(target));
  let headerBytes = 0;
  for (const line of lines.slice(1)) {
    headerBytes += line.length + 2;
    if (line.startsWith(' ') || line.startsWith('\t')) return broken('obs-fold');
    const colon = line.indexOf(':');
    if (colon <= 0) return broken('field-line without a name and colon');
    const name = line.slice(0, colon);
    if (!TCHAR.test(name)) return broken('field-name is not a token');
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '');
    if (!FIELD_VALUE.test(value)) return broken('field-value grammar', offendingValueChar(value));
    fields.push([name.toLowerCase(), value]);
  }
  if (fields.length > H1_LIMITS.maxHeaders + ADDED_FIELDS_SLACK) return broken('more fields than the limit');
  if (headerBytes > H1_LIMITS.maxHeaderBytes + 1024) return broken('header section over the size limit');
  return { method, target, fields, violation: checkSemantics(minor, fields), offending: null };
}

function checkSemantics(minor: string, fields: readonly (readonly [string, string])[]): string | null {
  const all = (name: string) => fields.filter(([n]) => n === name).map(([, v]) => v);
  const hosts = all('host');
  if (hosts.length > 1) return 'more than one Host';
  if (hosts.length === 0 && minor === '1') return 'HTTP/1.1 request without Host';
  if (hosts.length === 1 && !HOST_VALUE.test(hosts[0]!)) return 'Host grammar';
  const lengths = all('content-length');
  const codings = all('transfer-encoding');
  if (lengths.length > 0 && codings.length > 0) return 'Content-Length with Transfer-Encoding';
  if (lengths.length > 1) return 'more than one Content-Length';
  if (lengths.length === 1 && !/^[0-9]+$/.test(lengths[0]!)) return 'Content-Length grammar';
  if (codings.length > 0) {
    const list = codings
      .join(',')
      .split(',')
      .map((c) => c.trim());
    if (list.some((c) => !TCHAR.test(c.split(';')[0]!.trim()))) return 'transfer-coding grammar';
    if (list[list.length - 1]!.toLowerCase() !== 'chunked')
      return 'Transfer-Encoding does not end in chunked';
    if (list.filter((c) => c.toLowerCase() === 'chunked').length > 1) return 'chunked applied twice';
  }
  return null;
}

const EXT_TOKEN = "[!#$%&'*+\\-.^_`|~0-9A-Za-z]+";
const QUOTED = '"(?:[\\t \\x21\\x23-\\x5b\\x5d-\\x7e\\x80-\\xff]|\\\\[\\t \\x21-\\x7e\\x80-\\xff])*"';
const CHUNK_EXT = `(?:[ \\t]*;[ \\t]*${EXT_TOKEN}(?:[ \\t]*=[ \\t]*(?:${EXT_TOKEN}|${QUOTED}))?)*`;
const CHUNK_LINE = new RegExp(`^[0-9A-Fa-f]+${CHUNK_EXT}$`);

/** Why a chunk-size line (RFC 9112 7.1: chunk-size [ chunk-ext ], without CRLF) is invalid, or null. */
export function checkChunkLine(line: string): string | null {
  return CHUNK_LINE.test(line) ? null : 'chunk-size line grammar';
}

/** Why a trailer field line is invalid (same grammar as a header field line), or null. */
export function checkFieldLine(line: string): string | null {
  const colon = line.indexOf(':');
  if (colon <= 0 || !TCHAR.test(line.slice(0, colon))) return 'trailer field-name grammar';
  const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '');
  return FIELD_VALUE.test(value) ? null : 'trailer field-value grammar';
}
