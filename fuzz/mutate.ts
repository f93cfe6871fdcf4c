// Protocol-blind byte mutations, applied on top of the protocol generators' structured ones: bit
// flips, interesting bytes (CR, LF, NUL, SP, HTAB, colon, DEL, 0x80, 0xff), boundary integers,
// inserted, deleted, duplicated and swapped ranges, and splices of dictionary tokens (the words of
// the protocols, which random bytes would almost never spell).
import type { Rng } from './rng.ts';

const INTERESTING_BYTES = [
  0x00, 0x09, 0x0a, 0x0d, 0x20, 0x22, 0x2c, 0x3a, 0x3b, 0x7f, 0x80, 0xff, 0x30, 0x39,
];
const INTERESTING_U16 = [0x0000, 0x0001, 0x007f, 0x0080, 0x00ff, 0x3fff, 0x4000, 0x7fff, 0x8000, 0xffff];

/** Splices a random token of `dictionary` in, or one of the protocol-agnostic byte patterns. */
function dictionaryToken(rng: Rng, dictionary: readonly string[]): Buffer {
  if (dictionary.length > 0 && rng.chance(0.8)) return Buffer.from(rng.pick(dictionary), 'latin1');
  return Buffer.from(rng.pick(['\r\n', '\n', '\r', '\r\n\r\n', '\x00', ' ', '\t', ':', ',', ';']), 'latin1');
}

/** Applies 1..maxOps random mutations; returns a new buffer (the input is not changed). */
export function mutateBytes(
  rng: Rng,
  input: Buffer,
  maxOps: number,
  dictionary: readonly string[] = [],
): Buffer {
  let buf: Buffer = Buffer.from(input);
  const ops = rng.range(1, Math.max(1, maxOps));
  for (let k = 0; k < ops; k++) buf = mutateOnce(rng, buf, dictionary);
  return buf;
}

function mutateOnce(rng: Rng, buf: Buffer, dictionary: readonly string[]): Buffer {
  const n = buf.length;
  const at = n === 0 ? 0 : rng.int(n);
  switch (rng.int(10)) {
    case 0: // flip a bit
      if (n > 0) buf[at] = buf[at]! ^ (1 << rng.int(8));
      return buf;
    case 1: // an interesting byte
      if (n > 0) buf[at] = rng.pick(INTERESTING_BYTES);
      return buf;
    case 2: // a random byte
      if (n > 0) buf[at] = rng.int(256);
      return buf;
    case 3: {
      // a boundary 16-bit integer (lengths, ports, sizes)
      if (n < 2) return buf;
      const pos = rng.int(n - 1);
      buf.writeUInt16BE(rng.pick(INTERESTING_U16), pos);
      return buf;
    }
    case 4: {
      // delete a range
      const len = Math.min(n - at, rng.size(32));
      return Buffer.concat([buf.subarray(0, at), buf.subarray(at + len)]);
    }
    case 5: {
      // duplicate a range
      const len = Math.min(n - at, 1 + rng.size(64));
      return Buffer.concat([buf.subarray(0, at + len), buf.subarray(at, at + len), buf.subarray(at + len)]);
    }
    case 6: // insert random bytes
      return Buffer.concat([buf.subarray(0, at), rng.bytes(1 + rng.size(16)), buf.subarray(at)]);
    case 7: // insert a dictionary token
      return Buffer.concat([buf.subarray(0, at), dictionaryToken(rng, dictionary), buf.subarray(at)]);
    case 8: {
      // swap two ranges' bytes
      if (n < 4) return buf;
      const len = 1 + rng.int(Math.min(16, n >> 1));
      const a = rng.int(n - len);
      const b = rng.int(n - len);
      const tmp = Buffer.from(buf.subarray(a, a + len));
      buf.copy(buf, a, b, b + len);
      tmp.copy(buf, b);
      return buf;
    }
    default: {
      // repeat one byte many times (long tokens, whitespace runs)
      if (n === 0) return buf;
      const run = Buffer.alloc(1 + rng.size(512), buf[at]!);
      return Buffer.concat([buf.subarray(0, at), run, buf.subarray(at)]);
    }
  }
}
