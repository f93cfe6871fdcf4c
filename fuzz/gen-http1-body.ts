// HTTP/1 request bodies for the HTTP/1 generator: none, by Content-Length, or chunked (sizes with
// extensions, trailers that carry forged identities), sometimes a request smuggled inside; and, as
// an anomaly, framing that lies or is ambiguous (CL with TE, two lengths, codings after chunked).
import type { GenContext } from './context.ts';
import { forgedH1Line, forgedValue } from './forge.ts';

export interface Body {
  readonly fields: string[];
  readonly bytes: Buffer;
}

function payload(ctx: GenContext, tag: string, size: number): string {
  const { rng } = ctx;
  if (rng.chance(0.1)) {
    // A request smuggled in the body: reaches the app as a request only if framing desyncs.
    const forged = forgedValue(ctx, `${tag}.smuggled`);
    return `GET /smuggled HTTP/1.1\r\nHost: ${ctx.authorities[0]}\r\ntrellis-client-id: ${forged}\r\nx-fuzz: ${tag}\r\n\r\n`;
  }
  return rng.text(size, 'abcdefghijklmnopqrstuvwxyz0123456789 \r\n');
}

function chunkedBody(ctx: GenContext, tag: string, odd: boolean): string {
  const { rng } = ctx;
  let out = '';
  const chunks = rng.range(0, 4);
  for (let i = 0; i < chunks; i++) {
    const data = payload(ctx, tag, 1 + rng.size(200));
    const size = data.length.toString(16);
    const sizeText = odd
      ? rng.pick([
          `${size}\t`,
          `0x${size}`,
          `-${size}`,
          `${(data.length + rng.range(-2, 2)).toString(16)}`,
          `${size};=`,
          ` ${size}`,
        ])
      : rng.pick([size, size.toUpperCase().padStart(6, '0'), `${size};ext=1`, `${size} ; a="b"`]);
    out += `${sizeText}\r\n${data}\r\n`;
  }
  out += odd && rng.chance(0.3) ? rng.pick(['0;\r\n', '0 \r\n', '0\n']) : '0\r\n';
  if (rng.chance(0.3)) {
    out += `${forgedH1Line(rng, forgedValue(ctx, `${tag}.trailer`), odd && rng.chance(0.3))}\r\n`;
    if (rng.chance(0.5)) out += 'x-trailer: 1\r\n';
  }
  return out + (odd && rng.chance(0.1) ? '' : '\r\n');
}

/** A request body and the fields that frame it; `odd`: framed wrongly or ambiguously. */
export function bodyOf(ctx: GenContext, method: string, tag: string, odd: boolean): Body {
  const { rng } = ctx;
  const kind = odd
    ? rng.weighted([
        [2, 'chunked'],
        [2, 'length'],
        [3, 'ambiguous'],
      ])
    : rng.weighted([
        [method === 'POST' || method === 'PUT' ? 2 : 12, 'none'],
        [5, 'length'],
        [4, 'chunked'],
      ]);
  if (kind === 'none') return { fields: [], bytes: Buffer.alloc(0) };
  if (kind === 'length') {
    const data = payload(ctx, tag, rng.size(2000));
    const declared = odd ? data.length + rng.pick([-3, -1, 1, 3]) : data.length;
    return { fields: ['Content-Length', String(Math.max(0, declared))], bytes: Buffer.from(data, 'latin1') };
  }
  if (kind === 'chunked') {
    const te = odd
      ? rng.pick([
          'Chunked',
          'gzip, chunked',
          'chunked, identity',
          '\tchunked',
          'chunked ',
          'identity',
          'chunked;q=1',
        ])
      : 'chunked';
    return { fields: ['Transfer-Encoding', te], bytes: Buffer.from(chunkedBody(ctx, tag, odd), 'latin1') };
  }
  const data = payload(ctx, tag, rng.size(100));
  const n = String(data.length);
  const fields = rng.pick([
    ['Content-Length', n, 'Transfer-Encoding', 'chunked'],
    ['Transfer-Encoding', 'chunked', 'Content-Length', n],
    ['Content-Length', n, 'Content-Length', String(data.length + 1)],
    ['Content-Length', `${n}, ${n}`],
    ['Content-Length', `+${n}`],
    ['Content-Length', ` ${n}`],
    ['Content-Length', `0x${data.length.toString(16)}`],
    ['Transfer-Encoding', 'chunked', 'Transfer-Encoding', 'chunked'],
    ['Transfer-Encoding', 'xchunked'],
    ['Transfer-Encoding', 'chunked\r\n\tx'],
  ]);
  return { fields, bytes: Buffer.from(data, 'latin1') };
}
