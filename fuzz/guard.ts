// Keeps the campaign's traffic to its own processes when it cannot run in a network namespace of
// its own (not root): a mutated Host, CONNECT target or absolute-form URI could otherwise name
// some other service on this machine, and a proxy would connect there. Every authority a plan's
// bytes name must be one the lane allows (the app, the bystander, the mesh service), or the plan
// is dropped; HTTP/2 header blocks are decoded (HPACK, as the proxy would) and checked the same
// way, and a plan is cut at the first frame the check cannot follow.
import { HpackDecoder } from '../src/proxy/h2/hpack.ts';
import { CLIENT_PREFACE, Flag, FrameType } from './h2-frames.ts';
import type { ConnPlan, Step } from './plan.ts';

const AUTHORITY_PATTERNS = [
  /\bhost[ \t]*:[ \t]*([^\r\n]*)/gi,
  /CONNECT[ \t]+([^ \t\r\n]*)/gi,
  /[a-z][a-z0-9+.-]*:\/\/([^/?# \t\r\n]*)/gi,
];

function allowedAuthority(value: string, allowed: ReadonlySet<string>): boolean {
  return allowed.has(value.trim().toLowerCase());
}

/** Whether every authority spelled in `text` (latin1) is allowed. */
export function textAuthoritiesAllowed(text: string, allowed: ReadonlySet<string>): boolean {
  for (const re of AUTHORITY_PATTERNS) {
    re.lastIndex = 0;
    for (let m = re.exec(text); m !== null; m = re.exec(text))
      if (!allowedAuthority(m[1]!, allowed)) return false;
  }
  return true;
}

/** The byte offset up to which an HTTP/2 stream's header blocks name only allowed authorities. */
function h2SafePrefix(bytes: Buffer, allowed: ReadonlySet<string>): number {
  const decoder = new HpackDecoder(4096, 1 << 20);
  let pos = bytes.subarray(0, CLIENT_PREFACE.length).equals(CLIENT_PREFACE) ? CLIENT_PREFACE.length : 0;
  let block: Buffer[] | null = null;
  let blockStart = pos;
  while (pos + 9 <= bytes.length) {
    const length = bytes.readUIntBE(pos, 3);
    const type = bytes[pos + 3]!;
    const flags = bytes[pos + 4]!;
    const end = pos + 9 + length;
    if (length > 16_384 || end > bytes.length) return block === null ? pos : blockStart;
    let payload = bytes.subarray(pos + 9, end);
    if (type === FrameType.HEADERS || (type === FrameType.CONTINUATION && block !== null)) {
      if (type === FrameType.HEADERS) {
        if (block !== null) return blockStart;
        blockStart = pos;
        if (flags & Flag.PADDED)
          payload = payload.subarray(1, Math.max(1, payload.length - (payload[0] ?? 0)));
        if (flags & Flag.PRIORITY) payload = payload.subarray(5);
      }
      block = [...(block ?? []), payload];
      if (flags & Flag.END_HEADERS) {
        try {
          const fields = decoder.decode(Buffer.concat(block));
          for (let i = 0; i < fields.length; i += 2) {
            const name = fields[i]!;
            if ((name === ':authority' || name === 'host') && !allowedAuthority(fields[i + 1]!, allowed))
              return blockStart;
            if (name === ':path' && !textAuthoritiesAllowed(fields[i + 1]!, allowed)) return blockStart;
          }
        } catch {
          return blockStart;
        }
        block = null;
      }
    } else if (block !== null) return blockStart;
    pos = end;
  }
  return bytes.length;
}

/** The plan's steps with their writes cut after `keep` bytes in all. */
function cut(steps: readonly Step[], keep: number): Step[] {
  const out: Step[] = [];
  let left = keep;
  for (const s of steps) {
    if (!('write' in s)) {
      out.push(s);
      continue;
    }
    if (left <= 0) break;
    out.push(s.write.length <= left ? s : { ...s, write: s.write.subarray(0, left) });
    left -= s.write.length;
  }
  return out;
}

/** The plan made safe (maybe cut short), or null when it must not be sent at all. */
export function guardPlan(plan: ConnPlan, family: string, allowed: ReadonlySet<string>): ConnPlan | null {
  const bytes = Buffer.concat(plan.steps.flatMap((s) => ('write' in s ? [s.write] : [])));
  if (family === 'h2' || family === 'flood') {
    const safe = h2SafePrefix(bytes, allowed);
    return safe === bytes.length
      ? plan
      : { ...plan, steps: cut(plan.steps, safe), note: `${plan.note} (cut by the guard)` };
  }
  return textAuthoritiesAllowed(bytes.latin1Slice(0, bytes.length), allowed) ? plan : null;
}
