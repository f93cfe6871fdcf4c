// Opaque streams and the timing tricks of issue 9 (1.2, 1.3, 2.6): random byte streams in random
// chunks; the mesh's opaque transport (ALPN trellis-tcp/1) with its 6-byte header, valid or not,
// followed by bytes or by HTTP carrying forged identities; HTTP after 16 KiB of leading CRLF; and
// `stall` plans that stay silent (or send one byte, or open a CONNECT tunnel) past the proxy's
// detection timeout before speaking HTTP with a forged identity. One chunk is one input.
import { encodeTcpHeader } from '../src/proxy/mesh/protocol.ts';
import type { GenContext } from './context.ts';
import { http1Request } from './gen-http1.ts';
import { tagOf, type Channel, type ConnPlan, type Step } from './plan.ts';

/** The transport header of trellis-tcp/1: mostly the right port, sometimes not, or garbage. */
function tcpHeader(ctx: GenContext): Buffer {
  const { rng, ports } = ctx;
  const port = rng.weighted([
    [12, ports.serverInbound],
    [2, ports.app],
    [2, ports.bystander],
    [1, 65535],
    [1, 1],
  ]);
  const header = encodeTcpHeader(port);
  if (rng.chance(0.05)) return Buffer.concat([Buffer.from('TRL2'), header.subarray(4)]);
  if (rng.chance(0.03)) return header.subarray(0, rng.int(6));
  return header;
}

/** Random bytes in chunks; over the mesh's opaque transport, HTTP with forged identities too. */
export function opaquePlan(ctx: GenContext, planIndex: number, channel: Channel): ConnPlan {
  const { rng } = ctx;
  const steps: Step[] = [];
  if (channel === 'mtls-tcp') steps.push({ write: tcpHeader(ctx), inputs: 1 });
  const chunks = channel === 'plain' ? rng.range(1, 8) : rng.range(3, 16);
  let http = 0;
  for (let i = 0; i < chunks; i++) {
    const tag = tagOf(ctx.batch, planIndex, i);
    let write: Buffer;
    if (channel === 'mtls-tcp' && rng.chance(0.6)) {
      write = http1Request(ctx, tag, rng.chance(0.3)).bytes;
      http++;
    } else if (i === 0 && channel === 'plain' && rng.chance(0.1)) {
      // More leading empty lines than detection reads, then a request (issue 9, 1.2).
      write = Buffer.concat([
        Buffer.from('\r\n'.repeat(8200 + rng.int(100))),
        http1Request(ctx, tag, rng.chance(0.3)).bytes,
      ]);
      http++;
    } else write = rng.bytes(1 + rng.size(16_384));
    steps.push({ write, inputs: 1 });
    if (rng.chance(0.1)) steps.push({ waitMs: rng.int(50) });
  }
  if (rng.chance(0.7)) steps.push({ end: true });
  return { channel, steps, note: `opaque: ${chunks} chunk(s), ${http} HTTP` };
}

/**
 * Silence (or one byte, or a CONNECT tunnel through an outbound listener) for longer than the
 * proxy's detection timeout, then HTTP with a forged identity.
 */
export function stallPlan(ctx: GenContext, planIndex: number, channel: Channel, stallMs: number): ConnPlan {
  const { rng } = ctx;
  const request = http1Request(
    { ...ctx, proxyForm: false, admin: false },
    tagOf(ctx.batch, planIndex, 0),
    rng.chance(0.3),
  ).bytes;
  const steps: Step[] = [];
  let how: string;
  if (ctx.proxyForm) {
    how = 'CONNECT tunnel, idle';
    const connect = `CONNECT ${ctx.authorities[0]} HTTP/1.1\r\nHost: ${ctx.authorities[0]}\r\nx-fuzz: ${tagOf(ctx.batch, planIndex, 1)}\r\n\r\n`;
    steps.push(
      { write: Buffer.from(connect), inputs: 1 },
      { waitMs: stallMs },
      { write: request, inputs: 1 },
    );
  } else if (channel === 'plain' && rng.chance(0.3)) {
    how = 'first byte, idle';
    steps.push(
      { write: request.subarray(0, 1), inputs: 1 },
      { waitMs: stallMs },
      { write: request.subarray(1), inputs: 0 },
    );
  } else {
    how = 'silent, idle';
    if (channel === 'mtls-tcp') steps.push({ write: encodeTcpHeader(ctx.ports.serverInbound), inputs: 1 });
    steps.push({ waitMs: stallMs }, { write: request, inputs: 1 });
  }
  steps.push({ waitMs: 200 }, { end: true });
  return { channel, steps, note: `stall: ${how} ${stallMs} ms, then HTTP/1` };
}
