// HTTP/2 connections, random and mutated, for the plaintext prior-knowledge path (node:http2 in
// the proxy) and the mesh's own HTTP/2 (ALPN trellis-h2h1/1, and trellis-h2/1): the preface,
// SETTINGS (valid and not), then requests (HEADERS split into CONTINUATION, padding, priority,
// DATA, trailers; fields valid, malformed or forged, HPACK in every representation and sometimes
// broken) interleaved with control frames (PING, WINDOW_UPDATE, PRIORITY, RST_STREAM, SETTINGS,
// GOAWAY, PUSH_PROMISE, unknown types) and frames on the wrong stream; now and then a frame's bytes
// are mutated. Each frame counts as one input.
import type { GenContext } from './context.ts';
import { forgedH2Field, forgedValue } from './forge.ts';
import { bodyText, requestFields, type Field } from './gen-h2-fields.ts';
import {
  CLIENT_PREFACE,
  Flag,
  FrameType,
  Setting,
  frame,
  goaway,
  headerFrames,
  padded,
  pingStep,
  priorityFields,
  settings,
  u32,
} from './h2-frames.ts';
import { FuzzHpackEncoder } from './hpack-fuzz.ts';
import { mutateBytes } from './mutate.ts';
import { tagOf, type Channel, type ConnPlan, type Step } from './plan.ts';
import type { Rng } from './rng.ts';

const H2_DICTIONARY = [
  '\x00\x00\x00',
  '\xff\xff\xff\xff',
  '\x7f\xff\xff\xff',
  '\x00\x00\x00\x01',
  '\x80\x00\x00\x00',
];

/** The client's SETTINGS; `invalid` adds a value RFC 9113 6.5.2 forbids or an unknown id. */
function initialSettings(rng: Rng, invalid = false): Buffer {
  const pairs: [number, number][] = [];
  if (rng.chance(0.5)) pairs.push([Setting.ENABLE_PUSH, 0]);
  if (rng.chance(0.3))
    pairs.push([Setting.INITIAL_WINDOW_SIZE, rng.pick([0, 1, 65_535, 1 << 20, 0x7fff_ffff])]);
  if (rng.chance(0.2)) pairs.push([Setting.MAX_FRAME_SIZE, rng.pick([16_384, 1 << 20, 16_777_215])]);
  if (rng.chance(0.2)) pairs.push([Setting.HEADER_TABLE_SIZE, rng.pick([0, 4096, 1 << 16])]);
  if (rng.chance(0.2)) pairs.push([Setting.MAX_CONCURRENT_STREAMS, rng.pick([0, 1, 100])]);
  if (rng.chance(0.1)) pairs.push([Setting.MAX_HEADER_LIST_SIZE, rng.pick([0, 1 << 16])]);
  if (invalid) {
    pairs.push(
      rng.pick<[number, number]>([
        [Setting.ENABLE_PUSH, 2],
        [Setting.INITIAL_WINDOW_SIZE, 0x8000_0000],
        [Setting.MAX_FRAME_SIZE, 100],
        [0x7, 1 << 20],
      ]),
    );
  }
  if (rng.chance(0.1)) pairs.push([0xfafa, 7]); // unknown: ignored
  return settings(pairs);
}

interface Conn {
  readonly ctx: GenContext;
  readonly planIndex: number;
  readonly hpack: FuzzHpackEncoder;
  readonly frames: Buffer[];
  /** Indexes of CONTINUATION frames: a header block must not be cut (nor a PING put) before them. */
  readonly continuations: Set<number>;
  /** Indexes of frames that may end the connection: the frames before them are counted first. */
  readonly risky: Set<number>;
  /** The one way this connection breaks the protocol (at request `faultAt`), if any. */
  readonly fault: Fault | null;
  readonly faultAt: number;
  nextStream: number;
  requests: number;
}

/** Faults that end a connection (a connection error), so at most one per connection. */
type Fault =
  'fatal-frame' | 'mutated-frame' | 'broken-hpack' | 'stream-id' | 'self-dependency' | 'huge-field';
const FAULTS: readonly (readonly [number, Fault])[] = [
  [4, 'fatal-frame'],
  [3, 'mutated-frame'],
  [1, 'broken-hpack'],
  [1, 'stream-id'],
  [1, 'self-dependency'],
  [1, 'huge-field'],
];

/** The next stream id, or (the connection's fault) a wrong one. */
function streamIdFor(c: Conn, wrong: boolean): number {
  if (wrong) return c.ctx.rng.pick([0, 2, Math.max(1, c.nextStream - 2), 0x7fff_ffff]);
  const id = c.nextStream;
  c.nextStream += 2;
  return id;
}

function pushBlock(c: Conn, frames: Buffer[]): void {
  for (let k = 1; k < frames.length; k++) c.continuations.add(c.frames.length + k);
  c.frames.push(...frames);
}

function request(c: Conn): void {
  const { rng } = c.ctx;
  const fault = c.requests === c.faultAt ? c.fault : null;
  const tag = tagOf(c.ctx.batch, c.planIndex, c.requests++);
  const hasBody = rng.chance(0.3);
  const body = hasBody ? Buffer.from(bodyText(c.ctx, tag), 'latin1') : Buffer.alloc(0);
  const fields = requestFields(c.ctx, tag, hasBody, body.length);
  // A field over 64 KiB: node:http2 (nghttp2) ends the connection; the own HTTP/2 takes it.
  if (fault === 'huge-field') fields.push(['x-huge', 'a'.repeat(70_000 + rng.int(1_000_000))]);
  const block = c.hpack.encode(rng, fields, fault === 'broken-hpack');
  const id = streamIdFor(c, fault === 'stream-id');
  const selfDependent = fault === 'self-dependency';
  const trailers = rng.chance(0.1);
  if (fault !== null) c.risky.add(c.frames.length);
  pushBlock(
    c,
    headerFrames(id, block, {
      endStream: !hasBody && !trailers,
      // Mostly one frame, sometimes two or a few CONTINUATIONs (many: the flood lanes' business).
      cut: rng.weighted([
        [16, 16_384],
        [3, Math.max(1, Math.ceil(block.length / 2))],
        [1, Math.max(1, Math.ceil(block.length / rng.range(3, 6)))],
      ]),
      ...(rng.chance(0.1) ? { padding: rng.size(255) } : {}),
      ...(rng.chance(0.1) || selfDependent
        ? { priority: priorityFields(selfDependent ? id : 0, rng.chance(0.5), rng.int(256)) }
        : {}),
    }),
  );
  if (hasBody) {
    let off = 0;
    while (off < body.length) {
      const n = Math.min(body.length - off, 1 + rng.size(4096));
      const last = off + n >= body.length && !trailers;
      const data = body.subarray(off, off + n);
      const pad = rng.chance(0.1);
      c.frames.push(
        frame(
          FrameType.DATA,
          (last ? Flag.END_STREAM : 0) | (pad ? Flag.PADDED : 0),
          id,
          pad ? padded(data, rng.size(64)) : data,
        ),
      );
      off += n;
    }
  }
  if (trailers) {
    const value = forgedValue(c.ctx, `${tag}.trailer`);
    const tfields: Field[] = [forgedH2Field(rng, value), ['x-trailer', '1']];
    pushBlock(c, headerFrames(id, c.hpack.encode(rng, tfields), { endStream: true, cut: 16_384 }));
  }
}

/** A control frame a correct peer may send at any time: the connection goes on. */
function benignFrame(c: Conn): Buffer {
  const { rng } = c.ctx;
  const opened = c.nextStream > 1 ? 1 + 2 * rng.int((c.nextStream - 1) / 2) : 0;
  switch (rng.int(7)) {
    case 0:
      return frame(FrameType.PING, 0, 0, rng.bytes(8));
    case 1:
      return frame(FrameType.WINDOW_UPDATE, 0, rng.chance(0.5) ? 0 : opened, u32(1 + rng.int(1 << 20)));
    case 2:
      return opened > 0
        ? frame(FrameType.PRIORITY, 0, opened, priorityFields(0, rng.chance(0.5), rng.int(256)))
        : settings([]);
    case 3:
      return opened > 0 ? frame(FrameType.RST_STREAM, 0, opened, u32(rng.pick([0, 8]))) : settings([]);
    case 4:
      return settings(rng.chance(0.5) ? [] : [[Setting.INITIAL_WINDOW_SIZE, rng.pick([65_535, 1 << 20])]]);
    case 5:
      return frame(0x0a + rng.int(0xf0), rng.int(256), rng.int(9), rng.bytes(rng.size(64))); // unknown type: ignored
    default:
      return frame(FrameType.PING, 0, 0, rng.bytes(8));
  }
}

/** A frame that breaks the protocol (a connection error, mostly): the connection should end. */
function fatalFrame(c: Conn): Buffer {
  const { rng } = c.ctx;
  const someStream = rng.chance(0.5) ? Math.max(1, c.nextStream - 2) : c.nextStream + 2 * rng.int(4);
  switch (rng.int(11)) {
    case 0:
      return frame(
        FrameType.PING,
        rng.chance(0.3) ? Flag.ACK : 0,
        rng.chance(0.5) ? 1 : 0,
        rng.bytes(rng.chance(0.5) ? 8 : rng.int(12)),
      );
    case 1:
      return frame(
        FrameType.WINDOW_UPDATE,
        0,
        rng.chance(0.5) ? 0 : someStream,
        u32(rng.pick([0, 0x7fff_ffff])),
      );
    case 2:
      return frame(
        FrameType.PRIORITY,
        0,
        someStream,
        rng.chance(0.5) ? priorityFields(someStream, false, 1) : rng.bytes(rng.int(8)),
      );
    case 3:
      return frame(
        FrameType.RST_STREAM,
        0,
        rng.chance(0.5) ? 0 : c.nextStream + 10,
        u32(rng.pick([0, 1, 8, 0xb, 0xffff])),
      );
    case 4:
      return rng.chance(0.5) ? settings([], true) : initialSettings(c.ctx.rng, true);
    case 5:
      return goaway(rng.int(9), rng.int(14), 'fuzz');
    case 6:
      return frame(
        FrameType.PUSH_PROMISE,
        Flag.END_HEADERS,
        someStream,
        Buffer.concat([u32(2), Buffer.from([0x82])]),
      );
    case 7:
      return frame(
        FrameType.DATA,
        rng.chance(0.5) ? Flag.END_STREAM : 0,
        rng.chance(0.3) ? 0 : c.nextStream + 4,
        rng.bytes(rng.size(64)),
      );
    case 8:
      return frame(
        FrameType.CONTINUATION,
        rng.chance(0.5) ? Flag.END_HEADERS : 0,
        someStream,
        Buffer.from([0x82]),
      );
    case 9:
      return frame(
        FrameType.HEADERS,
        Flag.END_HEADERS | Flag.END_STREAM,
        rng.pick([0, 2, Math.max(1, c.nextStream - 2)]),
        Buffer.from([0x82, 0x84, 0x86]),
      );
    default:
      return frame(rng.int(10), rng.int(256), rng.int(9) === 0 ? 0 : someStream, rng.bytes(rng.size(40)));
  }
}

/** An HTTP/2 connection plan on `channel` (plain: prior knowledge; mtls-*: the mesh's HTTP/2). */
export function h2Plan(ctx: GenContext, planIndex: number, channel: Channel): ConnPlan {
  const { rng } = ctx;
  const actions = rng.weighted([
    [4, rng.range(1, 10)],
    [3, rng.range(10, 60)],
    [1, rng.range(60, 200)],
  ]);
  // Most connections stay valid to the end; the others break the protocol once, mostly near
  // their end (what comes after a connection error is never read).
  const fault = rng.chance(0.35) ? rng.weighted(FAULTS) : null;
  const faultAt = Math.floor(actions * (rng.chance(0.8) ? 0.8 + rng.int(20) / 100 : rng.int(100) / 100));
  const c: Conn = {
    ctx,
    planIndex,
    hpack: new FuzzHpackEncoder(),
    frames: [],
    continuations: new Set(),
    risky: new Set(),
    fault,
    // Requests are about 60% of the actions: the request index near the same point.
    faultAt: fault === 'fatal-frame' || fault === 'mutated-frame' ? -1 : Math.floor(faultAt * 0.6),
    nextStream: 1,
    requests: 0,
  };
  const preface = rng.chance(0.99) ? CLIENT_PREFACE : mutateBytes(rng, CLIENT_PREFACE, 2);
  c.frames.push(initialSettings(rng));
  const fatalAt = fault === 'fatal-frame' ? faultAt : -1;
  for (let i = 0; i <= actions; i++) {
    if (i === fatalAt) {
      c.risky.add(c.frames.length);
      c.frames.push(fatalFrame(c));
    }
    if (i === actions) break;
    if (rng.chance(0.5)) request(c);
    else {
      // A burst of control frames between requests (each one random: PING data, window
      // increments, priorities, settings values, unknown types and flags).
      const burst = rng.range(1, 8);
      for (let k = 0; k < burst; k++) c.frames.push(benignFrame(c));
    }
  }
  // One frame's bytes mutated (lengths, types, flags, ids, payload), about where the fault goes.
  const mutated =
    fault === 'mutated-frame'
      ? Math.min(
          c.frames.length - 1,
          1 + Math.floor(((c.frames.length - 1) * faultAt) / Math.max(1, actions)),
        )
      : -1;
  c.risky.add(mutated);
  const frames = c.frames.map((f, i) => (i === mutated ? mutateBytes(rng, f, 3, H2_DICTIONARY) : f));
  const steps: Step[] = [];
  const parts = rng.weighted([
    [6, 1],
    [3, 3],
    [1, 12],
  ]);
  const per = Math.ceil(frames.length / parts);
  let group: Buffer[] = [preface];
  let inGroup = 0;
  frames.forEach((f, i) => {
    group.push(f);
    inGroup++;
    const last = i === frames.length - 1;
    const cut = !c.continuations.has(i + 1) && (inGroup >= per || c.risky.has(i + 1) || c.risky.has(i));
    if (last || cut) {
      steps.push(
        { write: Buffer.concat(group), inputs: 0 },
        pingStep(planIndex * 1000 + steps.length, inGroup),
      );
      group = [];
      inGroup = 0;
    }
  });
  if (rng.chance(0.7)) steps.push({ end: true });
  const broken = fault === null ? 'no fault' : `fault: ${fault}`;
  return { channel, steps, note: `h2: ${frames.length} frames, ${c.requests} requests, ${broken}` };
}
