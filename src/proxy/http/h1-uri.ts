// The request-target and Host grammars of HTTP/1.1, for the HTTP/1 parser (h1-parser.ts): the byte
// tables its request-line loop scans a target with, the four request-target forms (RFC 9112 3.2),
// and the Host value (uri-host [ ":" port ], RFC 9112 3.2 with RFC 3986 3.2.2). Everything works
// on indices into the received string or buffer, so checking allocates nothing.
//
// Where the RFCs leave a recipient the choice, this file refuses (the parser answers 400):
//   - a request-target outside the grammar (RFC 9112 3.2: "SHOULD respond with 400"), including
//     bytes browsers sometimes leave raw (" < > \ ^ ` { | }) and "#" in the path: parsers and apps
//     disagree on them (a fragment is cut by some and kept by others; "\" is "/" to some), and a
//     proxy that checks policy on the path must see the path the app will see. The query is not
//     checked by policy, and browsers send [ ] { } | ^ ` \ and stray "%" there raw (the WHATWG
//     URL query percent-encode set leaves them): those are accepted in the query, nothing else;
//   - userinfo in an absolute-form target (RFC 9110 4.2.4: "SHOULD ... treat its presence as an
//     error"), and absolute-URIs without an authority ("mailto:x"), which no proxy route can use;
//   - a port of more than 5 digits (port = *DIGIT; none is needed for 0-65535) and IPvFuture
//     literals ("[v1.x]", an address family nobody implements, that a name lookup would misread).

// Scan classes of a request-target byte: 1 allowed, 2 "%" (two HEXDIG must follow), 3 "?" (the
// query starts: the rest is scanned with QUERY), 0 ends the scan.
/** origin-form: absolute-path [ "?" query ], i.e. pchar / "/" / "?" (RFC 3986 3.3, 3.4). */
const ORIGIN_FORM = new Uint8Array(256);
for (const c of "-._~!$&'()*+,;=:@/") ORIGIN_FORM[c.charCodeAt(0)] = 1;
for (let c = 0x30; c <= 0x39; c++) ORIGIN_FORM[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) ORIGIN_FORM[c] = 1;
for (let c = 0x61; c <= 0x7a; c++) ORIGIN_FORM[c] = 1;
ORIGIN_FORM[0x25] = 2;
/** The query: what browsers send raw there too (see the header), "%" without HEXDIG included. */
const QUERY = Uint8Array.from(ORIGIN_FORM);
for (const c of '?[]{}|^`\\%') QUERY[c.charCodeAt(0)] = 1;
ORIGIN_FORM[0x3f] = 3;
/** The other forms may also hold "[" and "]" (an IP-literal); checkTargetForm checks where. */
const OTHER_FORMS = Uint8Array.from(ORIGIN_FORM);
OTHER_FORMS[0x5b] = 1;
OTHER_FORMS[0x5d] = 1;

const HEXDIG = new Uint8Array(256);
for (const c of '0123456789abcdefABCDEF') HEXDIG[c.charCodeAt(0)] = 1;

/**
 * Scans a request-target starting at `from`; returns the index of the first byte that cannot be in
 * one (the SP after it, in a valid request-line), or -1 for a "%" without two HEXDIG. The caller
 * guarantees a line end in the buffer, so the scan stops before its end.
 */
export function scanRequestTarget(buf: Buffer, from: number): number {
  let table = buf[from] === 0x2f ? ORIGIN_FORM : OTHER_FORMS;
  let i = from;
  for (;;) {
    while (table[buf[i]!] === 1) i++;
    const k = table[buf[i]!];
    if (k === 3) {
      table = QUERY;
      i++;
      continue;
    }
    if (k !== 2) return i;
    if (HEXDIG[buf[i + 1]!] !== 1 || HEXDIG[buf[i + 2]!] !== 1) return -1;
    i += 3;
  }
}

/**
 * The whole request-target check, on a string: what the parser answers 400 for in a request line
 * with this method and target, or null. For targets that reach an HTTP/1 request line by another
 * way than the parser (an HTTP/2 :method and :path written as HTTP/1.1).
 */
export function checkRequestTarget(method: string, t: string): string | null {
  if (t.length === 0) return 'invalid request target';
  let table = t.charCodeAt(0) === 0x2f ? ORIGIN_FORM : OTHER_FORMS;
  for (let i = 0; i < t.length; i++) {
    const c = t.charCodeAt(i);
    const k = table[c]; // undefined past 255
    if (k === 3) table = QUERY;
    else if (k === 2) {
      if (!isHex(t.charCodeAt(i + 1)) || !isHex(t.charCodeAt(i + 2)))
        return 'invalid percent-encoding in the request target';
      i += 2;
    } else if (k !== 1) return 'invalid request target';
  }
  return checkTargetForm(method, t);
}

/**
 * Checks the form of a request-target whose bytes scanRequestTarget accepted, against its method
 * (RFC 9112 3.2.1-3.2.4); returns what is wrong, or null.
 */
export function checkTargetForm(method: string, t: string): string | null {
  const c0 = t.charCodeAt(0);
  if (method === 'CONNECT') {
    // authority-form = uri-host ":" port; the client MUST send the port (RFC 9110 9.3.6).
    const end = hostEnd(t, 0, t.length);
    return end > 0 && end + 1 < t.length && isPort(t, end, t.length)
      ? null
      : 'CONNECT needs an authority-form target';
  }
  if (c0 === 0x2f) return null; // origin-form: its bytes are its grammar
  if (t === '*') return method === 'OPTIONS' ? null : 'asterisk-form is only for OPTIONS';
  return checkAbsoluteForm(t);
}

/** absolute-form: scheme "://" authority path-abempty [ "?" query ], no userinfo, a host. */
function checkAbsoluteForm(t: string): string | null {
  const n = t.length;
  let i = 0;
  // scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
  while (i < n && isSchemeChar(t.charCodeAt(i), i === 0)) i++;
  if (i === 0 || t.charCodeAt(i) !== 0x3a || t.charCodeAt(i + 1) !== 0x2f || t.charCodeAt(i + 2) !== 0x2f)
    return 'invalid request target form';
  const start = i + 3;
  let end = start;
  while (end < n && t.charCodeAt(end) !== 0x2f && t.charCodeAt(end) !== 0x3f) end++;
  for (let k = start; k < end; k++) if (t.charCodeAt(k) === 0x40) return 'userinfo in the request target';
  const h = hostEnd(t, start, end);
  if (h <= start || !isPort(t, h, end)) return 'invalid authority in the request target';
  // The rest is path-abempty [ "?" query ]: scanned already, but "[" "]" belong to an authority
  // (the query may hold them, as browsers send them).
  const q = t.indexOf('?', end);
  const pathEnd = q === -1 ? n : q;
  for (let k = end; k < pathEnd; k++) {
    const c = t.charCodeAt(k);
    if (c === 0x5b || c === 0x5d) return 'invalid request target';
  }
  return null;
}

function isSchemeChar(c: number, first: boolean): boolean {
  const alpha = (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
  return first ? alpha : alpha || (c >= 0x30 && c <= 0x39) || c === 0x2b || c === 0x2d || c === 0x2e;
}

/** [ ":" port ] filling [from, to): port = *DIGIT, at most 5 digits. */
function isPort(s: string, from: number, to: number): boolean {
  if (from === to) return true;
  if (s.charCodeAt(from) !== 0x3a || to - from - 1 > 5) return false;
  for (let i = from + 1; i < to; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return false;
  }
  return true;
}

// reg-name = *( unreserved / pct-encoded / sub-delims ); IPv4address is one too.
const REG_NAME = new Uint8Array(256);
for (const c of "-._~!$&'()*+,;=") REG_NAME[c.charCodeAt(0)] = 1;
for (let c = 0x30; c <= 0x39; c++) REG_NAME[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) REG_NAME[c] = 1;
for (let c = 0x61; c <= 0x7a; c++) REG_NAME[c] = 1;

/**
 * The index after the uri-host at `from` (IP-literal / IPv4address / reg-name, RFC 3986 3.2.2),
 * at most `to`; -1 when there is none. A reg-name may be empty (the index is then `from`).
 */
function hostEnd(s: string, from: number, to: number): number {
  let i = from;
  if (i < to && s.charCodeAt(i) === 0x5b) {
    const close = s.indexOf(']', i);
    if (close === -1 || close >= to || !isIPv6(s, i + 1, close)) return -1;
    return close + 1;
  }
  while (i < to) {
    const c = s.charCodeAt(i); // past 255, REG_NAME[c] is undefined
    if (REG_NAME[c] === 1) i++;
    else if (c === 0x25 && i + 2 < to && isHex(s.charCodeAt(i + 1)) && isHex(s.charCodeAt(i + 2))) i += 3;
    else break;
  }
  return i;
}

/** Host = uri-host [ ":" port ] (RFC 9112 3.2); an empty value is allowed. */
export function isValidHost(v: string): boolean {
  const h = hostEnd(v, 0, v.length);
  return h !== -1 && isPort(v, h, v.length);
}

function isHex(c: number): boolean {
  return HEXDIG[c] === 1; // undefined past 255
}

/**
 * IPv6address of RFC 3986 3.2.2 in [from, to): eight h16 groups (1-4 HEXDIG), or fewer with one
 * "::" standing for one or more zero groups; the last two groups may be an IPv4address.
 */
export function isIPv6(s: string, from: number, to: number): boolean {
  let i = from;
  let groups = 0;
  let gap = false;
  if (i + 1 < to && s.charCodeAt(i) === 0x3a && s.charCodeAt(i + 1) === 0x3a) {
    gap = true;
    i += 2;
    if (i === to) return true;
  }
  for (;;) {
    let j = i;
    while (j < to && j - i < 5 && isHex(s.charCodeAt(j))) j++;
    if (j < to && s.charCodeAt(j) === 0x2e) {
      // ls32 as an IPv4address: the last thing in the literal.
      if (!isIPv4(s, i, to)) return false;
      groups += 2;
      break;
    }
    if (j === i || j - i > 4) return false;
    groups++;
    i = j;
    if (i === to) break;
    if (s.charCodeAt(i) !== 0x3a) return false;
    i++;
    if (i < to && s.charCodeAt(i) === 0x3a) {
      if (gap) return false;
      gap = true;
      i++;
      if (i === to) break;
    } else if (i === to) return false;
  }
  return gap ? groups <= 7 : groups === 8;
}

/** IPv4address = dec-octet "." dec-octet "." dec-octet "." dec-octet (no leading zeros). */
function isIPv4(s: string, from: number, to: number): boolean {
  let i = from;
  for (let part = 0; part < 4; part++) {
    if (part > 0) {
      if (s.charCodeAt(i) !== 0x2e) return false;
      i++;
    }
    const start = i;
    let v = 0;
    while (i < to && i - start < 3) {
      const d = s.charCodeAt(i) - 0x30;
      if (d < 0 || d > 9) break;
      v = v * 10 + d;
      i++;
    }
    const len = i - start;
    if (len === 0 || v > 255 || (len > 1 && s.charCodeAt(start) === 0x30)) return false;
  }
  return i === to;
}
