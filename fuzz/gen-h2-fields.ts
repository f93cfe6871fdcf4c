// The fields of the HTTP/2 generator's requests: pseudo-headers for the lane (the authority from
// its allowlist), the tag, common fields (sometimes far too many), forged identities in any
// position, and now and then a block RFC 9113 8.2/8.3 calls malformed; and request bodies.
import { CONNECTION_SPECIFIC } from '../src/proxy/h2/fields.ts';
import type { GenContext } from './context.ts';
import { forgedH2Field, forgedValue } from './forge.ts';
import { COMMON_HEADERS, requestPath } from './gen-http1.ts';
import type { Rng } from './rng.ts';

export type Field = [string, string];

/** The fields of a request tagged `tag` (with a content-length, usually, when it has a body). */
export function requestFields(ctx: GenContext, tag: string, hasBody: boolean, bodyLength: number): Field[] {
  const { rng } = ctx;
  const method = hasBody
    ? rng.pick(['POST', 'PUT', 'PATCH'])
    : rng.pick(['GET', 'GET', 'HEAD', 'DELETE', 'OPTIONS']);
  const authority = ctx.proxyForm ? ctx.authorities[0]! : rng.pick(ctx.authorities);
  const fields: Field[] = [
    [':method', method],
    [':scheme', rng.chance(0.9) ? 'http' : 'https'],
    [':path', ctx.admin ? rng.pick(['/metrics', '/ready', '/live', '/']) : requestPath(rng, rng.chance(0.1))],
    [':authority', authority],
    ['x-fuzz', tag],
  ];
  if (rng.chance(0.2)) fields.push(['host', authority]);
  if (hasBody && rng.chance(0.7))
    fields.push(['content-length', String(bodyLength + (rng.chance(0.1) ? rng.range(-5, 5) : 0))]);
  const extra = rng.weighted([
    [30, rng.size(6)],
    [1, 130 + rng.int(150)],
  ]);
  for (let i = 0; i < extra; i++) {
    const [name, value] = rng.chance(0.8)
      ? rng.pick(COMMON_HEADERS)
      : [`x-f${i}`, `v${rng.text(rng.size(30), 'ab c')}v`];
    if (CONNECTION_SPECIFIC.has(name)) continue; // (malformed() adds those)
    fields.push([name, value]);
  }
  if (rng.chance(0.02)) fields.push(['x-big', 'a'.repeat(9000)]);
  const forged = rng.weighted([
    [4, 0],
    [6, 1],
    [1, 2],
  ]);
  for (let i = 0; i < forged; i++) {
    const at = 5 + rng.int(fields.length - 4);
    fields.splice(at, 0, forgedH2Field(rng, forgedValue(ctx, tag)));
  }
  return rng.chance(0.9) ? fields : malformed(rng, fields);
}

/** One way a request's fields break RFC 9113 8.2/8.3. */
function malformed(rng: Rng, fields: Field[]): Field[] {
  const out = fields.map((f): Field => [f[0], f[1]]);
  switch (rng.int(9)) {
    case 0:
      out.splice(rng.int(4), 1); // a pseudo-header missing
      break;
    case 1:
      out.push([':path', '/dup']); // pseudo after regular, and repeated
      break;
    case 2:
      out.push(['Upper-Case', 'x']);
      break;
    case 3:
      out.push(
        rng.pick<Field>([
          ['connection', 'close'],
          ['transfer-encoding', 'chunked'],
          ['te', 'gzip'],
          ['keep-alive', '1'],
          ['upgrade', 'h2c'],
        ]),
      );
      break;
    case 4:
      out.push(['x-crlf', `a\r\nx-injected: ${rng.int(1000)}`]);
      break;
    case 5:
      out.push([rng.pick(['x-nul\x00', 'x y', 'x:y', '']), 'v']);
      break;
    case 6:
      out[2] = [':path', rng.pick(['', '*', 'http://127.0.0.1/', 'noslash', '/a b', '/\x7f'])];
      break;
    case 7:
      out[0] = [':method', rng.pick(['CONNECT', 'get', '', 'G T'])];
      break;
    default:
      out.push([':protocol', 'websocket']);
  }
  return out;
}

/** A request body: text, or a request that reaches the app only if the body's framing is lost. */
export function bodyText(ctx: GenContext, tag: string): string {
  const { rng } = ctx;
  if (rng.chance(0.2)) {
    // Reaches the app as a request only if the body's framing is lost on the way.
    return `GET /smuggled HTTP/1.1\r\nHost: x\r\ntrellis-client-id: ${forgedValue(ctx, `${tag}.smuggled`)}\r\nx-fuzz: ${tag}\r\n\r\n`;
  }
  return rng.text(1 + rng.size(3000), 'abcdefghij \r\n');
}
