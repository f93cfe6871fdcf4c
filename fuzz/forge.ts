// Forged client identities: the values and spellings of `trellis-client-id` that the fuzzers put
// in requests (HTTP/1 header lines in many positions and spellings, HTTP/2 fields, raw lines in
// opaque streams). A forged value carries the tag of the input that sent it, so a forged value
// seen by the app names its reproducer; an impersonation uses another principal's real identity.
import type { Rng } from './rng.ts';

export const ID_HEADER = 'trellis-client-id';
export const FORGED_PREFIX = 'spiffe://forged/';

/** What a lane may claim to be: its tag, and real identities it is not (impersonation targets). */
export interface ForgeContext {
  readonly rng: Rng;
  readonly impersonate: readonly string[];
}

/** A forged value: mostly spiffe://forged/<tag>, sometimes another principal's identity. */
export function forgedValue(ctx: ForgeContext, tag: string): string {
  const { rng } = ctx;
  if (ctx.impersonate.length > 0 && rng.chance(0.15)) return rng.pick(ctx.impersonate);
  return rng.weighted([
    [10, `${FORGED_PREFIX}${tag}`],
    [1, `${FORGED_PREFIX}${tag}/ns/default/sa/admin`],
    [1, `  ${FORGED_PREFIX}${tag}`],
    [1, `${FORGED_PREFIX}${tag}, spiffe://forged/list`],
  ]);
}

/** The header name spelled as a case-insensitive recipient would still read it. */
export function nameVariant(rng: Rng): string {
  return rng.weighted<string>([
    [6, ID_HEADER],
    [2, 'Trellis-Client-Id'],
    [1, 'TRELLIS-CLIENT-ID'],
    [2, mixedCase(rng, ID_HEADER)],
    // What CGI/PHP/WSGI servers read as the same field (HTTP_TRELLIS_CLIENT_ID).
    [1, 'trellis_client_id'],
    [1, mixedCase(rng, 'trellis_client-id')],
  ]);
}

function mixedCase(rng: Rng, s: string): string {
  let out = '';
  for (const c of s) out += rng.chance(0.5) ? c.toUpperCase() : c;
  return out;
}

/**
 * One HTTP/1 header line (without its line ending) carrying `value`: a valid spelling (case, OWS
 * with spaces or tabs, no OWS), or, when `invalid`, one a lenient parser might still take (space
 * before the colon, leading whitespace, NUL or DEL in the name, obs-fold continuation).
 */
export function forgedH1Line(rng: Rng, value: string, invalid = false): string {
  const name = nameVariant(rng);
  if (!invalid) {
    return rng.weighted<string>([
      [8, `${name}: ${value}`],
      [3, `${name}:${value}`],
      [2, `${name}:\t${value}\t`],
      [2, `${name}:   ${value}   `],
    ]);
  }
  return rng.weighted<string>([
    [1, `${name} : ${value}`],
    [1, `${name}\t: ${value}`],
    [1, ` ${name}: ${value}`],
    [1, `\t${name}: ${value}`],
    [1, `${name}\x00: ${value}`],
    [1, `${name}\x7f: ${value}`],
    [1, `x-folded: a\r\n ${name}: ${value}`],
    [1, `${name}: ${value}\r\n\t${FORGED_PREFIX}folded`],
    [1, `${name}: \r\n ${value}`],
    [1, `${name.replace(/-/g, '_')}: ${value}`],
    [1, `${name}: ${value}\x00`],
  ]);
}

/** An HTTP/2 field carrying `value`: the lower-case name (valid) and malformed spellings. */
export function forgedH2Field(rng: Rng, value: string): [string, string] {
  return rng.weighted<[string, string]>([
    [40, [ID_HEADER, value]],
    [2, [nameVariant(rng), value]],
    [1, [`${ID_HEADER} `, value]],
    [1, [ID_HEADER, `${value}\r\nx-injected: 1`]],
    [1, [ID_HEADER, ` ${value}`]],
    [1, [`${ID_HEADER}\x00`, value]],
    [1, [ID_HEADER.replace(/-/g, '_'), value]],
  ]);
}
