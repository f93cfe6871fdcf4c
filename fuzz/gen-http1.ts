// HTTP/1 requests, random and mutated: a request is built from parts (method, target in every
// form, version, header lines, a body framed by length, chunked with extensions and trailers, or
// ambiguously), then its lines are mutated (line endings, duplicates, deletions, folds, empty
// lines), then sometimes its bytes. Many requests carry forged `trellis-client-id` lines in many
// positions (first, last, among others, in chunked trailers, in a request smuggled in a body).
// A connection carries 1..8 pipelined requests, written whole or in fragments; now and then the
// last is an upgrade offer (websocket, h2c, both) followed by h2c smuggling (gen-upgrade.ts).
import type { GenContext } from './context.ts';
import { forgedH1Line, forgedValue } from './forge.ts';
import { bodyOf, type Body } from './gen-http1-body.ts';
import { mutateBytes } from './mutate.ts';
import { tagOf, type Channel, type ConnPlan, type Step } from './plan.ts';
import type { Rng } from './rng.ts';
import { smuggledH2, upgradeRequest } from './gen-upgrade.ts';

export const HTTP1_DICTIONARY = [
  'GET ',
  'POST ',
  'CONNECT ',
  ' HTTP/1.1',
  ' HTTP/1.0',
  'Host: ',
  'Content-Length: ',
  'Transfer-Encoding: chunked',
  'Connection: close',
  'Connection: upgrade',
  'Upgrade: websocket',
  'Expect: 100-continue',
  'trellis-client-id: spiffe://forged/x',
  '0\r\n\r\n',
  '\r\n\r\n',
  '%00',
  '%2f',
  '?',
  '#',
  '@',
  'http://',
  '*',
];

const METHODS = ['GET', 'GET', 'GET', 'GET', 'POST', 'POST', 'PUT', 'HEAD', 'OPTIONS', 'DELETE', 'PATCH'];
const ODD_METHODS = [
  'TRACE',
  'PRI',
  'get',
  'M-SEARCH',
  'PROPFIND',
  'FOO!',
  'G\x00T',
  'GET\t',
  'GET /',
  '',
  'G(T',
];
const VERSIONS = [
  'HTTP/1.0',
  'HTTP/2.0',
  'HTTP/1.2',
  'HTTP/0.9',
  'http/1.1',
  'HTTP/1.10',
  'HTTP/1.1 ',
  'HTTP/1',
];
const PATH_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/";
const ODD_PATH_CHARS = '"<>\\^`{|}\x7f\x80\xff%#[]';
export const COMMON_HEADERS: readonly (readonly [string, string])[] = [
  ['user-agent', 'trellis-fuzz'],
  ['accept', '*/*'],
  ['accept-encoding', 'gzip, deflate'],
  ['content-type', 'text/plain; charset=utf-8'],
  ['cookie', 'a=b; c=d'],
  ['x-forwarded-for', '198.18.0.1'],
  ['forwarded', 'for=198.18.0.1;proto=http'],
  ['via', '1.1 fuzz'],
  ['connection', 'keep-alive'],
  ['connection', 'close'],
  ['connection', 'trellis-client-id'],
  ['connection', 'upgrade'],
  ['upgrade', 'websocket'],
  ['upgrade', 'h2c'],
  ['http2-settings', 'AAMAAABkAARAAAAAAAIAAAAA'],
  ['keep-alive', 'timeout=5'],
  ['proxy-connection', 'keep-alive'],
  ['te', 'trailers'],
  ['expect', '100-continue'],
  ['trailer', 'trellis-client-id'],
  ['l5d-dst-override', 'server.default:8080'],
  ['max-forwards', '0'],
  ['x-http-method-override', 'CONNECT'],
];

export function requestPath(rng: Rng, odd: boolean): string {
  let p = '';
  const segments = rng.range(0, 4);
  for (let i = 0; i < segments; i++) p += '/' + rng.text(rng.size(12), PATH_CHARS);
  if (p === '') p = '/';
  if (rng.chance(0.3)) p += '?' + rng.text(rng.size(24), PATH_CHARS + '?');
  if (odd) {
    const at = rng.int(p.length + 1);
    const odder = rng.chance(0.7)
      ? rng.text(1 + rng.int(3), ODD_PATH_CHARS)
      : rng.pick(['/../../etc', '%zz', '%', '#frag', '\x00', ' ', '\t']);
    p = p.slice(0, at) + odder + p.slice(at);
  }
  return p;
}

/**
 * What is wrong with a request, if anything: most requests are valid (so that they travel the
 * whole way, forged identities included); the others break one or two things. A connection has
 * at most one such request, mostly its last: a proxy stops reading after one it refuses.
 */
type Anomaly =
  'method' | 'target' | 'version' | 'framing' | 'host' | 'spelling' | 'lines' | 'bytes' | 'size' | 'prefix';
const ANOMALIES: readonly (readonly [number, Anomaly])[] = [
  [2, 'method'],
  [4, 'target'],
  [1, 'version'],
  [4, 'framing'],
  [2, 'host'],
  [4, 'spelling'],
  [3, 'lines'],
  [3, 'bytes'],
  [1, 'size'],
  [1, 'prefix'],
];
/** The share of connections whose requests are all valid. */
export const VALID_SHARE = 0.5;
/** The share of those that end with an upgrade offer (and h2c smuggling after it). */
export const UPGRADE_SHARE = 0.1;

function anomaliesOf(rng: Rng): ReadonlySet<Anomaly> {
  const set = new Set<Anomaly>([rng.weighted(ANOMALIES)]);
  if (rng.chance(0.3)) set.add(rng.weighted(ANOMALIES));
  return set;
}

function targetOf(ctx: GenContext, method: string, odd: boolean): string {
  const { rng } = ctx;
  if (ctx.admin) return rng.pick(['/metrics', '/ready', '/live', '/config', '/identity', '/', '/x']);
  const authority = ctx.proxyForm && rng.chance(0.7) ? ctx.authorities[0]! : rng.pick(ctx.authorities);
  if (method === 'CONNECT') {
    if (odd) return requestPath(rng, false);
    // Outside an HTTP proxy listener, CONNECT only ever asks for the bystander: the open proxy test.
    const bystander = ctx.authorities.filter((a) => a.endsWith(`:${ctx.ports.bystander}`));
    return ctx.proxyForm || bystander.length === 0 ? authority : rng.pick(bystander);
  }
  const proxyRequest = ctx.proxyForm ? rng.chance(0.9) : rng.chance(0.04);
  if (proxyRequest) {
    const scheme = odd ? rng.pick(['HTTP', 'https', 'ws', 'h2c', 'http:']) : 'http';
    return `${scheme}://${authority}${requestPath(rng, odd && rng.chance(0.5))}`;
  }
  if (method === 'OPTIONS' && rng.chance(0.3)) return '*';
  return requestPath(rng, odd);
}

/**
 * Header lines of valid requests that keep the connection going (the others, and Connection:
 * close, come with the anomalous request, usually a connection's last).
 */
const CLEAN_HEADERS = COMMON_HEADERS.filter(
  ([n, v]) =>
    !['upgrade', 'http2-settings', 'proxy-connection'].includes(n) && v !== 'upgrade' && v !== 'close',
);

/** A field line with optional whitespace in every valid spelling (RFC 9112 5: OWS is SP or HTAB). */
function fieldLine(rng: Rng, name: string, value: string): string {
  return rng.weighted([
    [40, `${name}: ${value}`],
    [2, `${name}:${value}`],
    [2, `${name}:\t${value}`],
    [1, `${name}: ${value} `],
    [1, `${name}:\t${value}\t`],
    [1, `${name}:  \t ${value}`],
  ]);
}

/** Header lines of one request (without line endings), in order. */
function headerLines(
  ctx: GenContext,
  target: string,
  tag: string,
  body: Body,
  a: ReadonlySet<Anomaly>,
): string[] {
  const { rng } = ctx;
  const lines: string[] = [];
  const host = target.startsWith('/') || target === '*' ? rng.pick(ctx.authorities) : ctx.authorities[0]!;
  const hostCount = a.has('host') ? rng.pick([0, 2]) : 1;
  for (let i = 0; i < hostCount; i++) lines.push(fieldLine(rng, rng.chance(0.9) ? 'Host' : 'host', host));
  if (a.has('host') && hostCount === 1)
    lines[0] = `Host: ${rng.pick([`${host}.`, ` ${host}`, `${host}:`, `${host}@x`, `[${host}]`])}`;
  lines.push(`x-fuzz: ${tag}`);
  const extra = a.has('size') ? 100 + rng.int(250) : rng.size(6);
  const pool = a.size > 0 ? COMMON_HEADERS : CLEAN_HEADERS;
  for (let i = 0; i < extra; i++) {
    const [name, value] = rng.chance(0.8) ? rng.pick(pool) : [`x-f${i}`, rng.text(1 + rng.size(40), 'abc')];
    lines.push(fieldLine(rng, name, value));
  }
  if (a.has('size') && rng.chance(0.3)) lines.push(`x-big: ${'a'.repeat(rng.pick([4000, 9000, 70_000]))}`);
  for (let i = 0; i < body.fields.length; i += 2)
    lines.push(fieldLine(rng, body.fields[i]!, body.fields[i + 1]!));
  // Forged identities: anywhere among the other lines, sometimes more than once.
  const forged = rng.weighted([
    [4, 0],
    [6, 1],
    [1, 2],
  ]);
  for (let i = 0; i < forged; i++) {
    const line = forgedH1Line(rng, forgedValue(ctx, tag), a.has('spelling') && rng.chance(0.7));
    lines.splice(rng.int(lines.length + 1), 0, line);
  }
  return lines;
}

/** Line-level mutations of the request line and header lines (before the line endings). */
function mutateLines(rng: Rng, lines: string[]): string[] {
  const out = [...lines];
  const ops = rng.range(1, 3);
  for (let k = 0; k < ops && out.length > 1; k++) {
    const i = 1 + rng.int(out.length - 1);
    switch (rng.int(6)) {
      case 0:
        out.splice(i, 0, out[i]!);
        break;
      case 1:
        out.splice(i, 1);
        break;
      case 2: {
        const j = 1 + rng.int(out.length - 1);
        [out[i], out[j]] = [out[j]!, out[i]!];
        break;
      }
      case 3:
        out.splice(i, 0, ''); // an empty line ends the head early
        break;
      case 4:
        out[i] = `${out[i]}\r\n ${rng.text(rng.size(20), 'abc:')}`; // obs-fold
        break;
      default:
        out[i] = out[i]!.replace(':', rng.pick([' :', '::', ': :', '']));
    }
  }
  return out;
}

/** Joins lines with CRLF; with `odd`, now and then with a bare LF or CR instead. */
function joinLines(rng: Rng, lines: readonly string[], odd: boolean): string {
  let head = '';
  for (const line of lines)
    head += line + (odd && rng.chance(0.3) ? rng.pick(['\n', '\r', '\r\r\n', '\n\r']) : '\r\n');
  return head + (odd && rng.chance(0.3) ? '\n' : '\r\n');
}

export interface Http1Request {
  readonly bytes: Buffer;
  /**
   * Valid by construction (RFC 9112) and meant for the listener it goes to: a proxy that refuses
   * it (400, 414, 431, 501, 505) refuses a valid request. CONNECT and, outside the HTTP proxy
   * listeners, absolute-form are left out (whether to serve them is a policy, not the grammar).
   */
  readonly valid: boolean;
}

/** One request, tagged `tag`; valid unless `anomalous`. */
export function http1Request(ctx: GenContext, tag: string, anomalous: boolean): Http1Request {
  const { rng } = ctx;
  const a: ReadonlySet<Anomaly> = anomalous ? anomaliesOf(rng) : new Set();
  let method = a.has('method') ? rng.pick(ODD_METHODS) : rng.pick(METHODS);
  if (ctx.admin) method = rng.pick(['GET', 'GET', 'HEAD']);
  // CONNECT: an HTTP proxy's business; elsewhere (inbound, a destination listener) a probe for an
  // open proxy (its authority may be the bystander).
  else if (rng.chance(ctx.proxyForm ? 0.1 : 0.01)) method = 'CONNECT';
  const target = targetOf(ctx, method, a.has('target'));
  const version = a.has('version') ? rng.pick(VERSIONS) : rng.chance(0.95) ? 'HTTP/1.1' : 'HTTP/1.0';
  let body =
    method === 'CONNECT'
      ? { fields: [], bytes: Buffer.alloc(0) }
      : bodyOf(ctx, method, tag, a.has('framing'));
  // Transfer-Encoding in HTTP/1.0 is faulty framing (RFC 9112 6.1): only as an anomaly.
  if (version === 'HTTP/1.0' && a.size === 0 && body.fields[0] === 'Transfer-Encoding')
    body = { fields: [], bytes: Buffer.alloc(0) };
  const lines = [`${method} ${target} ${version}`, ...headerLines(ctx, target, tag, body, a)];
  const head = joinLines(
    rng,
    a.has('lines') ? mutateLines(rng, lines) : lines,
    a.has('lines') && rng.chance(0.5),
  );
  let bytes: Buffer = Buffer.concat([Buffer.from(head, 'latin1'), body.bytes]);
  if (a.has('prefix'))
    bytes = Buffer.concat([Buffer.from(rng.pick(['\r\n', '\r\n\r\n', '\n', ' ']), 'latin1'), bytes]);
  if (a.has('bytes')) bytes = mutateBytes(rng, bytes, 4, HTTP1_DICTIONARY);
  const originForm = target.startsWith('/') || target === '*';
  return { bytes, valid: a.size === 0 && method !== 'CONNECT' && (originForm || ctx.proxyForm) };
}

/** Splits a write into a few fragments (the parser must resume anywhere). */
export function fragments(rng: Rng, bytes: Buffer, inputs: number): Step[] {
  if (bytes.length < 2 || rng.chance(0.85)) return [{ write: bytes, inputs }];
  const cuts = new Set<number>();
  const n = rng.range(1, Math.min(12, bytes.length - 1));
  while (cuts.size < n) cuts.add(1 + rng.int(bytes.length - 1));
  const sorted = [...cuts].sort((a, b) => a - b);
  const steps: Step[] = [];
  let from = 0;
  for (const cut of [...sorted, bytes.length]) {
    steps.push({ write: bytes.subarray(from, cut), inputs: from === 0 ? inputs : 0 });
    from = cut;
  }
  return steps;
}

/** A connection of pipelined HTTP/1 requests. */
export function http1Plan(ctx: GenContext, planIndex: number, channel: Channel): ConnPlan {
  const { rng } = ctx;
  // Over mTLS a connection costs a handshake: more requests share one.
  const count =
    channel === 'plain'
      ? rng.weighted([
          [6, 1],
          [4, rng.range(2, 4)],
          [2, rng.range(5, 8)],
        ])
      : rng.range(4, 16);
  const faultAt = rng.chance(VALID_SHARE) ? -1 : rng.chance(0.8) ? count - 1 : rng.int(count);
  const made: Http1Request[] = [];
  for (let i = 0; i < count; i++) made.push(http1Request(ctx, tagOf(ctx.batch, planIndex, i), i === faultAt));
  // An upgrade offer ends a connection of valid requests (after a 101 it is HTTP/1 no more), and
  // what an h2c smuggler sends once switched follows it. Not on the admin listeners (no app).
  let smuggled: Step[] = [];
  if (!ctx.admin && faultAt === -1 && rng.chance(UPGRADE_SHARE)) {
    const tag = tagOf(ctx.batch, planIndex, count);
    const target = targetOf(ctx, 'GET', false);
    const originForm = target.startsWith('/') || target === '*';
    const host = originForm ? rng.pick(ctx.authorities) : ctx.authorities[0]!;
    made.push({ bytes: upgradeRequest(ctx, target, host, tag), valid: originForm || ctx.proxyForm });
    smuggled = smuggledH2(rng, ctx.authorities[0]!, tag);
  }
  const requests = made.map((r) => r.bytes);
  // Answers match requests in order only up to the first anomalous request (whose bytes may read
  // as several requests) or CONNECT (after which the bytes are a tunnel's).
  const tunnel = made.findIndex((r) => /^CONNECT /.test(r.bytes.latin1Slice(0, Math.min(8, r.bytes.length))));
  const total = made.length;
  const last = Math.min(tunnel === -1 ? total : tunnel, faultAt === -1 ? total : faultAt);
  const validRequests = made.map((r, i) => r.valid && i < last);
  const steps: Step[] = rng.chance(0.8)
    ? fragments(rng, Buffer.concat(requests), total)
    : requests.map((write) => ({ write, inputs: 1 }));
  steps.push(...smuggled);
  // A half-close now and then (the proxy then answers what it has and closes): mostly the sender
  // waits for the answers instead, so that every pipelined request is read.
  if (rng.chance(0.1)) steps.push({ end: true });
  const note = `http1: ${total} request(s)${smuggled.length > 0 ? ', the last an upgrade offer, then h2c' : ''}`;
  return { channel, steps, note, countResponses: true, validRequests };
}
