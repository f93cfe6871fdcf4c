// The checks RFC 9113 section 8.2 and 8.3 ask of a received header block before anything acts on
// it: field names are lowercase tokens, values are HTTP field values (RFC 9110 5.5: VCHAR,
// obs-text, SP and HTAB, none of them leading or trailing), pseudo-header fields come first, are
// known and appear once, and no connection-specific field is present. A block that fails is
// malformed: its stream is reset.
//
// RFC 9113 only requires NUL, CR and LF to be refused, and lets a recipient refuse the other
// control characters. This one does (nghttp2, under node:http2, drops such a field and keeps the
// stream; a malformed block is the clearer refusal), because the inbound side writes the fields
// into an HTTP/1.1 request, and the client side into an HTTP/1.1 response, whose grammar has no
// room for them: a CR/LF there would be request smuggling, another control character a head the
// app's parser refuses or reads differently (the fuzz campaign found `content-type: a\x19b`
// reaching the app).

const TOKEN_LOWER = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz") TOKEN_LOWER[c.charCodeAt(0)] = 1;

/** Fields that belong to one connection and never appear in HTTP/2 (RFC 9113 8.2.2; `te` aside). */
export const CONNECTION_SPECIFIC: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
]);
/** Each pseudo-header's bit, for the once-only check without a per-block allocation. */
const PSEUDO_BIT: Readonly<Record<string, number>> = {
  ':method': 1,
  ':scheme': 2,
  ':authority': 4,
  ':path': 8,
  ':status': 16,
};

export type BlockKind = 'request' | 'response' | 'trailers';

function badName(name: string): boolean {
  if (name.length === 0) return true;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c >= 128 || TOKEN_LOWER[c] === 0) return true;
  }
  return false;
}

function badValue(value: string): boolean {
  const n = value.length;
  if (n === 0) return false;
  const first = value.charCodeAt(0);
  const last = value.charCodeAt(n - 1);
  if (first === 0x20 || first === 0x09 || last === 0x20 || last === 0x09) return true;
  for (let i = 0; i < n; i++) {
    const c = value.charCodeAt(i);
    // Below SP but HTAB, DEL, and above a byte (a value decoded as latin1 has none).
    if ((c < 0x20 && c !== 0x09) || c === 0x7f || c > 0xff) return true;
  }
  return false;
}

/** Why the block (flat [name, value, ...]) is malformed, or null when it is fine. */
export function checkFields(fields: readonly string[], kind: BlockKind): string | null {
  let regular = false;
  let seen = 0;
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i]!;
    const value = fields[i + 1]!;
    if (name.charCodeAt(0) === 0x3a) {
      if (regular) return `pseudo-header ${name} after a regular field`;
      if (kind === 'trailers') return `pseudo-header ${name} in trailers`;
      const bit = PSEUDO_BIT[name] ?? 0;
      if (bit === 0 || (kind === 'request') === (bit === 16)) return `unknown pseudo-header ${name}`;
      if ((seen & bit) !== 0) return `pseudo-header ${name} repeated`;
      seen |= bit;
      if (badValue(value) || (name !== ':authority' && value === '')) return `bad ${name} value`;
      continue;
    }
    regular = true;
    if (badName(name)) return `bad field name ${JSON.stringify(name)}`;
    if (CONNECTION_SPECIFIC.has(name)) return `connection-specific field ${name}`;
    if (name === 'te' && value !== 'trailers') return 'te other than "trailers"';
    if (badValue(value)) return `bad value of ${name}`;
  }
  if (kind === 'response') {
    if (fields[0] !== ':status' || !/^[1-9]\d\d$/.test(fields[1]!)) return 'missing or bad :status';
  } else if (kind === 'request') {
    if ((seen & 1) === 0) return 'missing :method';
    const connect = fields[fields.indexOf(':method') + 1] === 'CONNECT';
    if (!connect && (seen & 10) !== 10) return 'missing :path or :scheme';
  }
  return null;
}
