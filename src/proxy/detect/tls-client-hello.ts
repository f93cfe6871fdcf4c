// Reads SNI and ALPN out of the first bytes of a TLS connection without terminating it.
//
// The proxy routes TLS it cannot (and must not) decrypt: it only peeks at the ClientHello the app
// sends and forwards the bytes untouched. Node's tls module cannot do that: it parses a ClientHello
// only as part of a handshake it terminates itself. So this is a small hand-written parser for the
// plaintext records of RFC 8446 §5.1 and the ClientHello of §4.1.2 (same layout in TLS 1.0-1.2),
// with the server_name (RFC 6066 §3) and ALPN (RFC 7301 §3.1) extensions.
//
// Bytes come from an untrusted peer, so every length field is checked against its container
// before it is used, nothing is read out of bounds, and nothing throws: the result is a value.
// An error is decided from the bytes already seen only, and `need-more` is returned only while
// more bytes could still complete a valid hello, so a longer buffer never changes a decision.

export type ClientHelloResult =
  | { status: 'need-more' }
  | { status: 'error'; reason: string }
  /** `bytes`: how many bytes of the buffer, from its start, carried the ClientHello. */
  | { status: 'ok'; sni: string | null; alpn: string[]; bytes: number };

const RECORD_HEADER_BYTES = 5;
const CONTENT_TYPE_HANDSHAKE = 0x16;
/** TLSPlaintext.length must not exceed 2^14 (RFC 8446 §5.1). */
const MAX_RECORD_PAYLOAD = 16384;
const HANDSHAKE_HEADER_BYTES = 4;
const HANDSHAKE_CLIENT_HELLO = 0x01;
/** version(2) random(32) session_id(1+0) cipher_suites(2+2) compression_methods(1+1). */
const MIN_CLIENT_HELLO_BODY = 41;
const EXTENSION_SERVER_NAME = 0x0000;
const EXTENSION_ALPN = 0x0010;
const SERVER_NAME_TYPE_HOST_NAME = 0x00;
const MAX_HOST_NAME = 253;

const NEED_MORE: ClientHelloResult = { status: 'need-more' };

function failure(reason: string): ClientHelloResult {
  return { status: 'error', reason };
}

/**
 * Parses the TLS ClientHello at the start of `buf`, reassembled from as many handshake records as
 * it spans. `limit` bounds the size of the handshake message (header included): a hello that
 * announces more is an error at once instead of a long wait.
 */
export function parseClientHello(buf: Buffer, limit: number = Number.POSITIVE_INFINITY): ClientHelloResult {
  const fragments: Buffer[] = [];
  let collected = 0;
  let helloBytes = -1; // handshake header + body, once the header has been seen
  let offset = 0;
  while (true) {
    const header = checkRecordHeader(buf, offset);
    if (typeof header !== 'number') return header;
    const start = offset + RECORD_HEADER_BYTES;
    const available = Math.min(header, buf.length - start);
    const wanted = helloBytes < 0 ? available : Math.min(available, helloBytes - collected);
    let usedFromThisRecord = wanted;
    fragments.push(buf.subarray(start, start + wanted));
    collected += wanted;
    if (helloBytes < 0) {
      const early = checkHandshakeHeader(fragments, collected, limit);
      if (typeof early !== 'number') return early;
      helloBytes = early;
      if (helloBytes >= 0 && collected > helloBytes) {
        // The record also holds bytes after the hello (another handshake message): not ours.
        usedFromThisRecord -= collected - helloBytes;
        collected = helloBytes;
      }
    }
    if (helloBytes >= 0 && collected === helloBytes) {
      const hello = Buffer.concat(fragments, collected);
      const parsed = parseClientHelloBody(hello.subarray(HANDSHAKE_HEADER_BYTES));
      if (parsed.status !== 'ok') return parsed;
      return { ...parsed, bytes: start + usedFromThisRecord };
    }
    if (available < header) return NEED_MORE;
    offset = start + header;
  }
}

/** The payload length of the handshake record at `offset`, or why there is none (yet). */
function checkRecordHeader(buf: Buffer, offset: number): number | ClientHelloResult {
  const have = buf.length - offset;
  if (have < 1) return NEED_MORE;
  if (buf[offset] !== CONTENT_TYPE_HANDSHAKE) return failure('record is not a handshake record');
  if (have < 2) return NEED_MORE;
  if (buf[offset + 1] !== 0x03) return failure('record version is not TLS');
  if (have < 3) return NEED_MORE;
  if ((buf[offset + 2] ?? 0xff) > 0x04) return failure('record version is not TLS');
  if (have < RECORD_HEADER_BYTES) return NEED_MORE;
  const length = buf.readUInt16BE(offset + 3);
  if (length === 0) return failure('empty handshake record');
  if (length > MAX_RECORD_PAYLOAD) return failure('record longer than 2^14 bytes');
  return length;
}

/**
 * Checks the handshake header as soon as its bytes are there (it may itself be split across
 * records): the length of the whole handshake message, -1 while unknown, or an error.
 */
function checkHandshakeHeader(
  fragments: Buffer[],
  collected: number,
  limit: number,
): number | ClientHelloResult {
  if (collected < 1) return -1;
  const head = Buffer.concat(fragments, Math.min(collected, HANDSHAKE_HEADER_BYTES));
  if (head[0] !== HANDSHAKE_CLIENT_HELLO) return failure('first handshake message is not a ClientHello');
  if (head.length < HANDSHAKE_HEADER_BYTES) return -1;
  const bodyLength = head.readUIntBE(1, 3);
  if (bodyLength < MIN_CLIENT_HELLO_BODY) return failure('ClientHello too short');
  if (HANDSHAKE_HEADER_BYTES + bodyLength > limit) return failure('ClientHello larger than the limit');
  return HANDSHAKE_HEADER_BYTES + bodyLength;
}

/** A bounds-checked cursor: every read returns null instead of reading past `end`. */
class Reader {
  private readonly buf: Buffer;
  private pos: number;
  private readonly end: number;
  constructor(buf: Buffer, start = 0, end = buf.length) {
    this.buf = buf;
    this.pos = start;
    this.end = end;
  }
  get remaining(): number {
    return this.end - this.pos;
  }
  u8(): number | null {
    if (this.remaining < 1) return null;
    return this.buf[this.pos++] ?? null;
  }
  u16(): number | null {
    if (this.remaining < 2) return null;
    const value = this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    return value;
  }
  bytes(length: number): Buffer | null {
    if (this.remaining < length) return null;
    const slice = this.buf.subarray(this.pos, this.pos + length);
    this.pos += length;
    return slice;
  }
  /** A reader over the next `length` bytes (a length-prefixed vector), advancing past them. */
  sub(length: number): Reader | null {
    const slice = this.bytes(length);
    return slice === null ? null : new Reader(slice);
  }
}

type BodyResult = { status: 'error'; reason: string } | { status: 'ok'; sni: string | null; alpn: string[] };

function parseClientHelloBody(body: Buffer): BodyResult {
  const r = new Reader(body);
  const version = r.u16();
  if (version === null || version >>> 8 !== 0x03)
    return { status: 'error', reason: 'ClientHello version is not TLS' };
  if (r.bytes(32) === null) return { status: 'error', reason: 'ClientHello random truncated' };
  const sessionIdLength = r.u8();
  if (sessionIdLength === null || sessionIdLength > 32 || r.bytes(sessionIdLength) === null) {
    return { status: 'error', reason: 'bad session id' };
  }
  const suitesLength = r.u16();
  if (suitesLength === null || suitesLength < 2 || suitesLength % 2 !== 0 || r.bytes(suitesLength) === null) {
    return { status: 'error', reason: 'bad cipher suites' };
  }
  const compressionLength = r.u8();
  if (compressionLength === null || compressionLength < 1 || r.bytes(compressionLength) === null) {
    return { status: 'error', reason: 'bad compression methods' };
  }
  // Before TLS 1.3 a hello may end here, without any extensions.
  if (r.remaining === 0) return { status: 'ok', sni: null, alpn: [] };
  const extensionsLength = r.u16();
  if (extensionsLength === null || extensionsLength !== r.remaining) {
    return { status: 'error', reason: 'extensions length does not match the ClientHello' };
  }
  let sni: string | null = null;
  let alpn: string[] = [];
  const seen = new Set<number>();
  while (r.remaining > 0) {
    const type = r.u16();
    const length = r.u16();
    const data = length === null ? null : r.sub(length);
    if (type === null || data === null) return { status: 'error', reason: 'extension truncated' };
    if (seen.has(type)) return { status: 'error', reason: `duplicate extension ${type}` };
    seen.add(type);
    if (type === EXTENSION_SERVER_NAME) {
      const parsed = parseServerName(data);
      if (typeof parsed !== 'string' && parsed !== null) return parsed;
      sni = parsed;
    } else if (type === EXTENSION_ALPN) {
      const parsed = parseAlpn(data);
      if (!Array.isArray(parsed)) return parsed;
      alpn = parsed;
    }
  }
  return { status: 'ok', sni, alpn };
}

/** server_name: a list of (name_type, name); returns the host_name, lowercased, or null. */
function parseServerName(data: Reader): string | null | { status: 'error'; reason: string } {
  const bad = { status: 'error' as const, reason: 'bad server_name extension' };
  const listLength = data.u16();
  if (listLength === null || listLength < 3 || listLength !== data.remaining) return bad;
  let hostName: string | null = null;
  while (data.remaining > 0) {
    const nameType = data.u8();
    const nameLength = data.u16();
    const name = nameLength === null ? null : data.bytes(nameLength);
    if (nameType === null || name === null) return bad;
    if (nameType !== SERVER_NAME_TYPE_HOST_NAME) continue; // unknown name types are skipped
    if (hostName !== null) return { status: 'error', reason: 'more than one host_name' };
    if (!isHostName(name)) return { status: 'error', reason: 'server_name is not a DNS host name' };
    hostName = name.toString('latin1').toLowerCase();
  }
  return hostName;
}

/** A DNS name as RFC 6066 wants it: ASCII labels of letters, digits, '-' or '_', no trailing dot. */
function isHostName(name: Buffer): boolean {
  if (name.length < 1 || name.length > MAX_HOST_NAME) return false;
  let labelLength = 0;
  for (const byte of name) {
    if (byte === 0x2e) {
      if (labelLength === 0) return false;
      labelLength = 0;
      continue;
    }
    const ok =
      (byte >= 0x61 && byte <= 0x7a) ||
      (byte >= 0x41 && byte <= 0x5a) ||
      (byte >= 0x30 && byte <= 0x39) ||
      byte === 0x2d ||
      byte === 0x5f;
    if (!ok || ++labelLength > 63) return false;
  }
  return labelLength > 0;
}

/** application_layer_protocol_negotiation: a non-empty list of non-empty protocol names. */
function parseAlpn(data: Reader): string[] | { status: 'error'; reason: string } {
  const bad = { status: 'error' as const, reason: 'bad ALPN extension' };
  const listLength = data.u16();
  if (listLength === null || listLength < 2 || listLength !== data.remaining) return bad;
  const names: string[] = [];
  while (data.remaining > 0) {
    const length = data.u8();
    const name = length === null || length === 0 ? null : data.bytes(length);
    if (name === null) return bad;
    names.push(name.toString('latin1'));
  }
  return names;
}
