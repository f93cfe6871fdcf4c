// The HPACK Huffman code (RFC 7541 section 5.2 and Appendix B): a table-driven decoder, used for
// every string a node:http2 (nghttp2) peer sends, and an encoder, used by tests and available to
// an encoder that wants smaller blocks (ours does not: on the mesh hop CPU matters more than bytes).
//
// Appendix B's code is canonical: within each code length, codes are consecutive in symbol order,
// and each length's first code follows the previous length's last one. So the 257 code lengths
// below are the whole table; the codes are rebuilt from them at load (the test compares them with
// codes printed in Appendix B and checks the code is prefix-free and complete).
//
// Decoding walks the code tree four bits at a time. The tree has 256 internal nodes (257 leaves);
// each internal node is a decoder state, and a 256 x 16 table built once at load says, for a
// state and the next nibble, which state follows and which symbol (at most one: every code is at
// least 5 bits long) was completed on the way. Two table loads per input byte, no bit loop.

/** Code length in bits of symbols 0..255 and of EOS (256), RFC 7541 Appendix B. */
// prettier-ignore
export const HUFFMAN_CODE_LENGTHS: readonly number[] = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, // 0x00
  28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, // 0x10
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, // 0x20 ' ' .. '/'
  5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, // 0x30 '0' .. '?'
  13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, // 0x40 '@' .. 'O'
  7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, // 0x50 'P' .. '_'
  15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, // 0x60 '`' .. 'o'
  6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, // 0x70 'p' .. DEL
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, // 0x80
  24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, // 0x90
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, // 0xa0
  21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, // 0xb0
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, // 0xc0
  19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, // 0xd0
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, // 0xe0
  26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, // 0xf0
  30, // EOS
];

export const HUFFMAN_EOS = 256;

/** Each symbol's code, right-aligned (the low HUFFMAN_CODE_LENGTHS[s] bits). */
export const HUFFMAN_CODES: Uint32Array = (() => {
  const lengths = HUFFMAN_CODE_LENGTHS;
  const symbols = lengths.map((_, s) => s).sort((a, b) => lengths[a]! - lengths[b]! || a - b);
  const codes = new Uint32Array(lengths.length);
  let code = -1;
  let prevLength = lengths[symbols[0]!]!;
  for (const s of symbols) {
    // The next code of this length; moving to a longer length appends zero bits (codes < 2^30).
    code = (code + 1) << (lengths[s]! - prevLength);
    prevLength = lengths[s]!;
    codes[s] = code;
  }
  return codes;
})();

// Decoder table entries: the next state in bits 16..23, the completed symbol in bits 0..7, flags.
const EMIT = 0x100;
const FAIL = 0x200; // the nibble completed EOS, which must never appear inside a string (5.2)

/** Returned by huffmanDecode when a string contains the EOS symbol. */
export const HUFFMAN_ERR_EOS = -1;
/** Returned by huffmanDecode when the final bits are not 0..7 bits of ones (the EOS prefix). */
export const HUFFMAN_ERR_PADDING = -2;

const { DECODE, ACCEPTING } = buildDecoder();

function buildDecoder(): { DECODE: Uint32Array; ACCEPTING: Uint8Array } {
  // The tree: children of internal node n at [2n] (bit 0) and [2n+1] (bit 1). A child > 0 is an
  // internal node (the root, 0, is nobody's child), a child < 0 is the leaf of symbol -1 - child.
  const child = new Int32Array(2 * 256);
  // Nodes reached from the root by k one-bits, k = 0..7, are where a string may end: the bits
  // since the last symbol are then padding, which must be the EOS code's first bits (all ones)
  // and shorter than 8 bits (5.2).
  const accepting = new Uint8Array(256);
  accepting[0] = 1;
  let nodes = 1;
  for (let s = 0; s < HUFFMAN_CODE_LENGTHS.length; s++) {
    const length = HUFFMAN_CODE_LENGTHS[s]!;
    const code = HUFFMAN_CODES[s]!;
    let node = 0;
    let onesSoFar = true;
    for (let i = length - 1; i > 0; i--) {
      const bit = (code >>> i) & 1;
      onesSoFar &&= bit === 1;
      let next = child[2 * node + bit]!;
      if (next === 0) {
        next = nodes++;
        child[2 * node + bit] = next;
        if (onesSoFar && length - i <= 7) accepting[next] = 1;
      }
      node = next;
    }
    child[2 * node + (code & 1)] = -1 - s;
  }

  const table = new Uint32Array(256 * 16);
  for (let state = 0; state < nodes; state++) {
    for (let nibble = 0; nibble < 16; nibble++) {
      let node = state;
      let entry = 0;
      for (let i = 3; i >= 0; i--) {
        const next = child[2 * node + ((nibble >>> i) & 1)]!;
        if (next >= 0) {
          node = next;
          continue;
        }
        const symbol = -1 - next;
        if (symbol === HUFFMAN_EOS) {
          entry = FAIL;
          break;
        }
        entry = EMIT | symbol;
        node = 0;
      }
      table[state * 16 + nibble] = entry === FAIL ? FAIL : entry | (node << 16);
    }
  }
  return { DECODE: table, ACCEPTING: accepting };
}

/** The most bytes `len` Huffman-coded bytes can decode to (every code is at least 5 bits). */
export function huffmanMaxDecodedLength(len: number): number {
  return Math.floor((len * 8) / 5);
}

/**
 * Decodes src[start, end) into `out` (at least huffmanMaxDecodedLength(end - start) bytes) and
 * returns the decoded length, or HUFFMAN_ERR_EOS / HUFFMAN_ERR_PADDING. Errors are returned, not
 * thrown, so that the HPACK decoder words them (and this module stays free of its error class).
 */
export function huffmanDecode(src: Uint8Array, start: number, end: number, out: Uint8Array): number {
  let state = 0;
  let n = 0;
  for (let i = start; i < end; i++) {
    const byte = src[i]!;
    let e = DECODE[(state << 4) | (byte >>> 4)]!;
    if (e & FAIL) return HUFFMAN_ERR_EOS;
    if (e & EMIT) out[n++] = e & 0xff;
    state = e >>> 16;
    e = DECODE[(state << 4) | (byte & 0x0f)]!;
    if (e & FAIL) return HUFFMAN_ERR_EOS;
    if (e & EMIT) out[n++] = e & 0xff;
    state = e >>> 16;
  }
  return ACCEPTING[state] ? n : HUFFMAN_ERR_PADDING;
}

/** The length in bytes of src's Huffman encoding (bits rounded up to whole bytes). */
export function huffmanEncodedLength(src: Uint8Array): number {
  let bits = 0;
  for (let i = 0; i < src.length; i++) bits += HUFFMAN_CODE_LENGTHS[src[i]!]!;
  return Math.ceil(bits / 8);
}

/**
 * Writes src's Huffman encoding into out at offset, padded with the EOS prefix (ones), and returns
 * the offset after it. `out` needs huffmanEncodedLength(src) bytes from offset.
 */
export function huffmanEncode(src: Uint8Array, out: Uint8Array, offset: number): number {
  // acc holds fewer than 8 pending bits plus one code of up to 30 bits: up to 37 bits, more than
  // the 32 that bitwise operators keep, so it is grown and cut with (exact) float arithmetic.
  let acc = 0;
  let bits = 0;
  let o = offset;
  for (let i = 0; i < src.length; i++) {
    const s = src[i]!;
    const length = HUFFMAN_CODE_LENGTHS[s]!;
    acc = acc * 2 ** length + HUFFMAN_CODES[s]!;
    bits += length;
    while (bits >= 8) {
      bits -= 8;
      const scale = 2 ** bits;
      const byte = Math.floor(acc / scale);
      out[o++] = byte;
      acc -= byte * scale;
    }
  }
  if (bits > 0) out[o++] = (acc << (8 - bits)) | (0xff >>> bits);
  return o;
}
