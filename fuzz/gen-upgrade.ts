// HTTP/1 upgrade offers, and h2c smuggling after them: a request whose Upgrade lists websocket,
// h2c, both (in either order, with versions, empty elements, odd case, tabs) or look-alikes
// (h2c-14, xh2c, h2, HTTP/2.0), with Connection naming upgrade in several spellings (or not at
// all), sometimes in two Upgrade lines; and an `x-fuzz-switch` line telling the oracle app how to
// answer (oracle-app.ts): 101 to h2c whatever was offered (an app that switches to a protocol the
// client never asked for), 101 to the first protocol offered, or no switch. After the request
// comes, at once or after a pause, what an h2c smuggler sends once switched: the HTTP/2 preface,
// SETTINGS and a request with a forged `trellis-client-id`. The proxy drops h2c from every offer
// and refuses a 101 to a protocol the request did not offer (src/proxy/http/h1-parser.ts): the
// judge (judge.ts) reports an offer that reaches the app with h2c in it, and any request that
// reaches the app as HTTP/2 on a connection switched by a 101.
import type { GenContext } from './context.ts';
import { forgedH1Line, forgedValue, ID_HEADER } from './forge.ts';
import { CLIENT_PREFACE, Flag, FrameType, frame, settings } from './h2-frames.ts';
import type { Step } from './plan.ts';
import type { Rng } from './rng.ts';

/** The header line that tells the oracle app how to answer an upgrade offer. */
export const SWITCH_HEADER = 'x-fuzz-switch';
/** h2c: 101 to h2c, offered or not; offered: 101 to the first protocol offered; none: no 101. */
export const SWITCH_MODES = ['h2c', 'offered', 'none'] as const;
export type SwitchMode = (typeof SWITCH_MODES)[number];

/** Upgrade values: websocket, h2c, mixed lists, case and whitespace variants, and look-alikes. */
export const UPGRADE_OFFERS: readonly (readonly [number, string])[] = [
  [4, 'websocket'],
  [1, 'WebSocket'],
  [1, 'websocket/13'],
  [4, 'h2c'],
  [1, 'H2C'],
  [1, 'H2c'],
  [1, 'h2c/1'],
  [3, 'websocket, h2c'],
  [3, 'h2c, websocket'],
  [1, 'h2c,websocket'],
  [1, 'websocket,\th2c'],
  [1, 'H2C, WebSocket'],
  [1, 'websocket, h2c , foo/2'],
  [1, ', h2c,'],
  [1, 'TLS/1.2, h2c'],
  [1, 'h2c-14'],
  [1, 'xh2c'],
  [1, 'h2'],
  [1, 'HTTP/2.0'],
];

const CONNECTION_UPGRADE = [
  'Upgrade',
  'upgrade',
  'UPGRADE',
  'keep-alive, Upgrade',
  'Upgrade, HTTP2-Settings',
  'HTTP2-Settings, upgrade',
  'upgrade,\tHTTP2-Settings',
];
const UPGRADE_NAMES = ['Upgrade', 'Upgrade', 'upgrade', 'UPGRADE', 'uPgRaDe'];

/** Whether an Upgrade list (as a lenient app reads it) names h2c, in any case, with any version. */
export function offersH2c(upgrade: string): boolean {
  return upgrade.split(',').some((element) => {
    const p = element.trim();
    const slash = p.indexOf('/');
    return (slash === -1 ? p : p.slice(0, slash)).toLowerCase() === 'h2c';
  });
}

/** Header lines (without line endings) of an upgrade offer, and the x-fuzz-switch line. */
export function upgradeLines(rng: Rng): string[] {
  const offer = rng.weighted(UPGRADE_OFFERS);
  const lines: string[] = [];
  const connection = rng.pick(CONNECTION_UPGRADE);
  const named = (n: string) => (rng.chance(0.8) ? n : n.toLowerCase());
  if (rng.chance(0.15)) lines.push(`${named('Connection')}: keep-alive`);
  if (rng.chance(0.9)) lines.push(`${named('Connection')}: ${connection}`);
  // Now and then the offer comes in two lines, h2c in one of them.
  if (rng.chance(0.1)) {
    const pair = rng.chance(0.5) ? ['websocket', 'h2c'] : ['h2c', 'websocket'];
    for (const value of pair) lines.push(`${rng.pick(UPGRADE_NAMES)}: ${value}`);
  } else lines.push(`${rng.pick(UPGRADE_NAMES)}:${rng.pick([' ', '', '\t', '  '])}${offer}`);
  if (offersH2c(offer) && rng.chance(0.8)) lines.push('HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA');
  if (/websocket/i.test(offer) && rng.chance(0.7))
    lines.push('Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==', 'Sec-WebSocket-Version: 13');
  const mode = rng.weighted<SwitchMode>([
    [4, 'h2c'],
    [4, 'offered'],
    [2, 'none'],
  ]);
  lines.push(`${SWITCH_HEADER}: ${mode}`);
  return lines;
}

/** One upgrade offer: a GET to `target` (valid HTTP/1.1 whatever it offers), tagged `tag`. */
export function upgradeRequest(ctx: GenContext, target: string, host: string, tag: string): Buffer {
  const { rng } = ctx;
  const lines = [`GET ${target} HTTP/1.1`, `Host: ${host}`, `x-fuzz: ${tag}`, ...upgradeLines(rng)];
  if (rng.chance(0.6)) lines.splice(1 + rng.int(lines.length), 0, forgedH1Line(rng, forgedValue(ctx, tag)));
  return Buffer.from(lines.map((l) => `${l}\r\n`).join('') + '\r\n', 'latin1');
}

/** An HPACK block of literals without indexing, names and values raw (what the guard can read). */
function literalBlock(fields: readonly (readonly [string, string])[]): Buffer {
  const string = (s: string) => {
    const raw = Buffer.from(s, 'latin1');
    if (raw.length >= 127) throw new Error('literal too long for this encoder');
    return Buffer.concat([Buffer.from([raw.length]), raw]);
  };
  return Buffer.concat(fields.map(([n, v]) => Buffer.concat([Buffer.from([0x00]), string(n), string(v)])));
}

/**
 * What an h2c smuggler writes once the connection switched: the preface, SETTINGS and a request
 * (stream 1, the upgrade's, or 3, the next) with a forged identity and the tag; sent at once after
 * the upgrade request or after a pause (when a real smuggler has read the 101).
 */
export function smuggledH2(rng: Rng, authority: string, tag: string): Step[] {
  const fields: [string, string][] = [
    [':method', 'GET'],
    [':scheme', 'http'],
    [':path', `/smuggled/${tag}`],
    [':authority', authority],
    ['x-fuzz', tag],
    [ID_HEADER, `spiffe://forged/${tag}`],
  ];
  const streamId = rng.chance(0.7) ? 1 : 3;
  const bytes = Buffer.concat([
    CLIENT_PREFACE,
    settings([]),
    frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, streamId, literalBlock(fields)),
  ]);
  const write: Step = { write: bytes, inputs: 0 };
  return rng.chance(0.5) ? [write] : [{ waitMs: rng.pick([50, 150, 300]) }, write];
}
