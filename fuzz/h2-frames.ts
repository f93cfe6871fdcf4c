// HTTP/2 frames as bytes (RFC 9113 section 4.1 and 6), for the generators: any type, flags,
// stream id and payload, including the ones a correct peer never sends. Frame type and flag
// numbers come from the proxy's own definitions (src/proxy/h2/frames.ts).
import { CLIENT_PREFACE, Flag, FrameType, Setting } from '../src/proxy/h2/frames.ts';

export { CLIENT_PREFACE, Flag, FrameType, Setting };

export function frame(
  type: number,
  flags: number,
  streamId: number,
  payload: Buffer = Buffer.alloc(0),
): Buffer {
  const out = Buffer.allocUnsafe(9 + payload.length);
  out.writeUIntBE(payload.length & 0xffffff, 0, 3);
  out[3] = type & 0xff;
  out[4] = flags & 0xff;
  out.writeUInt32BE(streamId >>> 0, 5);
  payload.copy(out, 9);
  return out;
}

export function settings(pairs: readonly (readonly [number, number])[], ack = false): Buffer {
  const payload = Buffer.alloc(pairs.length * 6);
  pairs.forEach(([id, value], i) => {
    payload.writeUInt16BE(id & 0xffff, i * 6);
    payload.writeUInt32BE(value >>> 0, i * 6 + 2);
  });
  return frame(FrameType.SETTINGS, ack ? Flag.ACK : 0, 0, payload);
}

export function u32(value: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(value >>> 0);
  return b;
}

export function goaway(lastStreamId: number, code: number, debug = ''): Buffer {
  return frame(FrameType.GOAWAY, 0, 0, Buffer.concat([u32(lastStreamId), u32(code), Buffer.from(debug)]));
}

/** A payload with padding (PADDED): pad length byte, data, zero padding. */
export function padded(data: Buffer, pad: number): Buffer {
  return Buffer.concat([Buffer.from([pad & 0xff]), data, Buffer.alloc(pad)]);
}

/** The PRIORITY fields (HEADERS with PRIORITY, or a PRIORITY frame): dependency and weight. */
export function priorityFields(dependsOn: number, exclusive: boolean, weight: number): Buffer {
  const b = Buffer.alloc(5);
  b.writeUInt32BE(((exclusive ? 0x8000_0000 : 0) | dependsOn) >>> 0);
  b[4] = weight & 0xff;
  return b;
}

/**
 * A PING carrying `n` and the ACK a peer answers it with (RFC 9113 6.7: after everything it read
 * before it), for the sender's count of frames a peer really processed.
 */
export function pingStep(n: number, inputs: number): { ping: Buffer; ack: Buffer; inputs: number } {
  const payload = Buffer.alloc(8);
  payload.write('fz', 0, 'latin1');
  payload.writeUIntBE(n, 2, 6);
  return {
    ping: frame(FrameType.PING, 0, 0, payload),
    ack: frame(FrameType.PING, Flag.ACK, 0, payload),
    inputs,
  };
}

/** HEADERS then CONTINUATION frames carrying `block`, cut at the given sizes (last: END_HEADERS). */
export function headerFrames(
  streamId: number,
  block: Buffer,
  opts: { endStream: boolean; cut: number; padding?: number; priority?: Buffer },
): Buffer[] {
  const out: Buffer[] = [];
  const cut = Math.max(1, opts.cut);
  let first = block.subarray(0, cut);
  let flags = opts.endStream ? Flag.END_STREAM : 0;
  if (opts.priority !== undefined) {
    first = Buffer.concat([opts.priority, first]);
    flags |= Flag.PRIORITY;
  }
  if (opts.padding !== undefined) {
    first = padded(first, opts.padding);
    flags |= Flag.PADDED;
  }
  const rest: Buffer[] = [];
  for (let i = cut; i < block.length; i += cut) rest.push(block.subarray(i, i + cut));
  out.push(frame(FrameType.HEADERS, flags | (rest.length === 0 ? Flag.END_HEADERS : 0), streamId, first));
  rest.forEach((part, i) =>
    out.push(frame(FrameType.CONTINUATION, i === rest.length - 1 ? Flag.END_HEADERS : 0, streamId, part)),
  );
  return out;
}
