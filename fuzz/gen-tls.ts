// TLS ClientHellos, built field by field (RFC 8446 4.1.2) or taken from Node's own TLS client, then
// mutated: SNI (long, empty, non-ASCII, several), ALPN (the mesh's trellis-* protocols, others,
// empty strings, huge lists), versions, key shares, duplicate and unknown extensions, lengths that
// lie, a hello split over records or writes, and random bytes. One hello is one input. Sent in
// plaintext to the listeners: a hello offering a trellis-* protocol reaches the inbound proxy's
// mTLS termination; others pass through as opaque TLS.
import type { GenContext } from './context.ts';
import { mutateBytes } from './mutate.ts';
import type { Channel, ConnPlan, Step } from './plan.ts';
import type { Rng } from './rng.ts';

const MESH_ALPNS = ['trellis-h2h1/1', 'trellis-h2/1', 'trellis-http1/1', 'trellis-tcp/1'];
const OTHER_ALPNS = ['h2', 'http/1.1', 'trellis-', 'trellis-h2h1/2', 'TRELLIS-H2/1', ''];

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n & 0xffff);
  return b;
}

/** A length-prefixed vector; `lie` shifts the written length. */
function vec(lengthBytes: 1 | 2 | 3, body: Buffer, lie = 0): Buffer {
  const n = Math.max(0, body.length + lie);
  const len = Buffer.alloc(lengthBytes);
  len.writeUIntBE(Math.min(n, 2 ** (8 * lengthBytes) - 1), 0, lengthBytes);
  return Buffer.concat([len, body]);
}

function extension(type: number, body: Buffer, lie = 0): Buffer {
  return Buffer.concat([u16(type), vec(2, body, lie)]);
}

function alpnList(rng: Rng): string[] {
  const list: string[] = [];
  const n = rng.weighted([
    [8, 1],
    [4, rng.range(2, 4)],
    [1, 0],
    [1, rng.range(20, 200)],
  ]);
  for (let i = 0; i < n; i++) list.push(rng.chance(0.7) ? rng.pick(MESH_ALPNS) : rng.pick(OTHER_ALPNS));
  return list;
}

function sniName(rng: Rng): string {
  return rng.weighted([
    [6, 'server.default'],
    [2, 'localhost'],
    [1, ''],
    [1, 'a'.repeat(rng.pick([63, 64, 255, 300]))],
    [1, 'x\x00y'],
    [1, 'caf\xe9.test'],
    [1, '127.0.0.1'],
  ]);
}

function extensions(rng: Rng): Buffer[] {
  const lie = () => (rng.chance(0.03) ? rng.pick([-1, 1, 100, -100]) : 0);
  const exts: Buffer[] = [];
  if (rng.chance(0.8)) {
    const name = Buffer.from(sniName(rng), 'latin1');
    exts.push(extension(0, vec(2, Buffer.concat([Buffer.from([0]), vec(2, name, lie())]), lie()), lie()));
  }
  if (rng.chance(0.85)) {
    const protos = Buffer.concat(alpnList(rng).map((p) => vec(1, Buffer.from(p, 'latin1'), lie())));
    exts.push(extension(16, vec(2, protos, lie()), lie()));
  }
  if (rng.chance(0.9))
    exts.push(extension(43, vec(1, Buffer.from(rng.pick([[3, 4, 3, 3], [3, 4], [3, 3], [0x7f, 0x1c], []])))));
  if (rng.chance(0.9)) exts.push(extension(10, vec(2, Buffer.from([0, 0x1d, 0, 0x17, 0, 0x18]))));
  if (rng.chance(0.9)) exts.push(extension(13, vec(2, Buffer.from([4, 3, 5, 3, 8, 4, 8, 9, 4, 1]))));
  if (rng.chance(0.9)) {
    const share = rng.chance(0.9) ? rng.bytes(32) : rng.bytes(rng.size(100));
    exts.push(extension(51, vec(2, Buffer.concat([Buffer.from([0, 0x1d]), vec(2, share)]))));
  }
  if (rng.chance(0.5)) exts.push(extension(45, vec(1, Buffer.from([1]))));
  if (rng.chance(0.1))
    exts.push(extension(rng.pick([0x0a0a, 0xfafa, 21, 35, 0xff01]), rng.bytes(rng.size(64))));
  if (rng.chance(0.05) && exts.length > 0) exts.push(rng.pick(exts)); // a duplicate extension
  return exts;
}

/** A ClientHello handshake message inside one or more handshake records. */
export function clientHello(rng: Rng): Buffer {
  const suites = rng.chance(0.9) ? [0x13, 0x01, 0x13, 0x02, 0x13, 0x03] : [...rng.bytes(2 * rng.size(40))];
  const body = Buffer.concat([
    Buffer.from(rng.chance(0.95) ? [3, 3] : [3, rng.int(5)]),
    rng.bytes(32),
    vec(1, rng.bytes(rng.pick([0, 32, 32, rng.size(40)]))),
    vec(2, Buffer.from(suites)),
    vec(1, Buffer.from(rng.chance(0.95) ? [0] : [0, 1])),
    vec(2, Buffer.concat(extensions(rng)), rng.chance(0.03) ? rng.pick([-2, 2]) : 0),
  ]);
  const handshake = Buffer.concat([Buffer.from([1]), vec(3, body)]);
  // Usually one record; sometimes the hello is split over several (legal, rarely seen).
  const records: Buffer[] = [];
  const size = rng.chance(0.9) ? 16_384 : 1 + rng.size(handshake.length);
  for (let i = 0; i < handshake.length; i += size) {
    const part = handshake.subarray(i, i + size);
    records.push(Buffer.concat([Buffer.from([0x16, 3, rng.chance(0.9) ? 1 : rng.int(5)]), vec(2, part)]));
  }
  return Buffer.concat(records);
}

/** A plan: one hello (captured or built, maybe mutated), maybe in pieces, maybe with bytes after. */
export function tlsPlan(
  ctx: GenContext,
  _planIndex: number,
  channel: Channel,
  captured: readonly Buffer[],
): ConnPlan {
  const { rng } = ctx;
  let hello = captured.length > 0 && rng.chance(0.3) ? rng.pick(captured) : clientHello(rng);
  if (rng.chance(0.3)) hello = mutateBytes(rng, hello, 4);
  const steps: Step[] = [];
  if (rng.chance(0.2)) {
    const cut = 1 + rng.int(Math.max(1, hello.length - 1));
    steps.push(
      { write: hello.subarray(0, cut), inputs: 1 },
      { waitMs: rng.int(20) },
      { write: hello.subarray(cut), inputs: 0 },
    );
  } else steps.push({ write: hello, inputs: 1 });
  if (rng.chance(0.2)) steps.push({ write: rng.bytes(rng.size(512)), inputs: 0 });
  if (rng.chance(0.5)) steps.push({ end: true });
  return { channel, steps, note: 'tls: ClientHello' };
}
