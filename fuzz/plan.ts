// What the generators produce and the sender executes: a batch is a list of connection plans, each
// a channel (plain TCP or mutual TLS with one of the mesh's ALPN protocols) and steps (writes,
// waits, a half-close). Plans are plain data, so a finding's reproducer is the plan itself.
import { hash32 } from './rng.ts';

/** How a plan's connection is made: plain TCP, or mTLS with the fuzzer's identity and this ALPN. */
export type Channel = 'plain' | 'mtls-h2h1' | 'mtls-h2' | 'mtls-http1' | 'mtls-tcp';

export const MTLS_ALPN: Readonly<Record<Exclude<Channel, 'plain'>, string>> = {
  'mtls-h2h1': 'trellis-h2h1/1',
  'mtls-h2': 'trellis-h2/1',
  'mtls-http1': 'trellis-http1/1',
  'mtls-tcp': 'trellis-tcp/1',
};

/** The listeners of the two proxies, as the campaign names them. */
export const LISTENERS = [
  'server-inbound',
  'server-outbound',
  'server-admin',
  'client-mesh',
  'client-outbound',
  'client-inbound',
  'client-admin',
] as const;
export type ListenerName = (typeof LISTENERS)[number];

/** Generator families; `flood` repeats one frame many times and is counted apart. */
export const FAMILIES = ['http1', 'h2', 'tls', 'opaque', 'stall', 'flood'] as const;
export type Family = (typeof FAMILIES)[number];

/**
 * A write counts `inputs` (HTTP/1 request messages, TLS ClientHellos, opaque chunks); `flood`
 * writes count their repeated frames in `flood` instead. HTTP/2 frames are counted by a `ping`
 * step after them: it writes a PING and waits for its ACK, which the peer sends only after it
 * has processed every frame before it; without the ACK they are not counted.
 */
export type Step =
  | { readonly write: Buffer; readonly inputs: number; readonly flood?: number }
  | { readonly ping: Buffer; readonly ack: Buffer; readonly inputs: number }
  | { readonly waitMs: number }
  | { readonly end: true };

export interface ConnPlan {
  readonly channel: Channel;
  readonly steps: readonly Step[];
  /** Which generator made it and how, for people reading a reproducer. */
  readonly note: string;
  /** Never read what the proxy answers (floods whose answers must pile up in the proxy). */
  readonly noRead?: boolean;
  /**
   * HTTP/1: count at most as many requests as responses came back (a request after one the proxy
   * refused is never read).
   */
  readonly countResponses?: boolean;
  /** HTTP/1: which requests are valid by construction (a refusal of one is a finding). */
  readonly validRequests?: readonly boolean[];
}

export interface Batch {
  readonly index: number;
  readonly lane: string;
  readonly listener: ListenerName;
  readonly family: Family;
  readonly plans: readonly ConnPlan[];
}

export function planInputs(plan: ConnPlan): { inputs: number; flood: number } {
  let inputs = 0;
  let flood = 0;
  for (const s of plan.steps) {
    if ('write' in s) flood += s.flood ?? 0;
    if ('inputs' in s) inputs += s.inputs;
  }
  return { inputs, flood };
}

/** Two base-36 characters that a mutated tag (a digit changed, inserted, dropped) rarely keeps. */
function tagCheck(batch: number | string, plan: number | string, input: number | string): string {
  return (hash32(`${batch}.${plan}.${input}`) % 1296).toString(36).padStart(2, '0');
}

/**
 * The tag carried by a plan's inputs (x-fuzz header, forged identities): b<batch>.<plan>.<input>
 * and a check, so that a tag the mutators changed names no input rather than the wrong one.
 */
export function tagOf(batch: number, plan: number, input: number): string {
  return `b${batch}.${plan}.${input}~${tagCheck(batch, plan, input)}`;
}

/** The batch and plan a (well-formed, checked) tag in `text` names, or null. */
export function parseTag(text: string): { batch: number; plan: number } | null {
  const m = /b(\d{1,9})\.(\d{1,6})\.(\d{1,6})~([0-9a-z]{2})/.exec(text);
  if (m === null || tagCheck(m[1]!, m[2]!, m[3]!) !== m[4]) return null;
  return { batch: Number(m[1]), plan: Number(m[2]) };
}
