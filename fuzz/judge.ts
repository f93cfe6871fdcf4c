// The oracle's verdicts on what reached the app and the bystander: a trellis-client-id value that
// is not the verified identity of the lane's client (forged), one in trailers, a forwarded head
// that breaks the grammar or the limits, an Upgrade offer that still names h2c (the proxy drops
// it), a request that reached the app as HTTP/2 on a connection a 101 switched (h2c smuggling),
// and any connection an inbound listener opened to the bystander (an open proxy). Each request is
// attributed to its batch by its tag (x-fuzz header, or the tag inside a forged value), else to
// the batch running when it arrived.
import { offersH2c } from './gen-upgrade.ts';
import type { Seen } from './oracle-app.ts';
import { parseTag } from './plan.ts';

export const FINDING_KINDS = [
  'crash',
  'hang',
  'listener-down',
  'probe-wrong-answer',
  'memory-bound',
  'forged-identity',
  'forged-identity-in-trailers',
  'forwarded-invalid-http1',
  'forwarded-over-limit',
  'forwarded-h2c-upgrade',
  'h2-after-upgrade',
  'refused-valid-http1',
  'open-proxy',
  'log-flood',
  'app-connection-amplification',
] as const;
export type FindingKind = (typeof FINDING_KINDS)[number];

export interface Finding {
  readonly kind: FindingKind;
  readonly summary: string;
  readonly batch: number | null;
  readonly lane: string | null;
  /** The plan (connection) of the batch that caused it, when the evidence names it. */
  readonly plan: number | null;
  /** Findings with the same signature are one finding seen again. */
  readonly signature: string;
  /** What differs between findings of one signature (an offending character): collected. */
  readonly variant?: string;
  readonly detail: Readonly<Record<string, unknown>>;
}

export interface LaneExpectation {
  readonly lane: string;
  /** Identities the app may be told for this lane's requests (the verified client's, if any). */
  readonly allowedIds: ReadonlySet<string>;
  /** An inbound-side listener: it must never open a connection anywhere but to its app. */
  readonly bystanderForbidden: boolean;
}

export const PROBE_PATH = '/__probe/';
/**
 * How long after a batch its late connections may still arrive: a request may wait for room in an
 * upstream pool for up to twice the proxies' connect timeout (2 x 5 s, the HTTP/2 pools) and then
 * connect. 3 s gave false open-proxy findings on a busy machine (both campaigns of 2026-12-07).
 * Tagged connections are attributed by their tag whenever they come.
 */
const LATE_MS = 12_000;
const KEEP_BATCHES = 64;

function valueClass(value: string, allowed: ReadonlySet<string>): string {
  if (value.includes('spiffe://forged/')) return 'forged-value';
  if (value.startsWith('spiffe://')) return 'another-identity';
  return allowed.size === 0 ? 'any-value' : 'other-value';
}

export class Judge {
  private readonly expectations = new Map<number, LaneExpectation>();
  private current = -1;
  private found: Finding[] = [];
  /** Until when an untagged bystander connection may still be a late one of a lane that may reach it. */
  private lateBystanderUntil = 0;
  private readonly now: () => number;

  constructor(now: () => number = () => Date.now()) {
    this.now = now;
  }
  /** Requests the app saw by batch (for the report). */
  readonly reached = new Map<number, number>();

  begin(batch: number, expectation: LaneExpectation): void {
    const previous = this.expectations.get(this.current);
    if (previous !== undefined && !previous.bystanderForbidden)
      this.lateBystanderUntil = this.now() + LATE_MS;
    this.expectations.set(batch, expectation);
    this.current = batch;
    for (const old of this.expectations.keys()) if (old < batch - KEEP_BATCHES) this.expectations.delete(old);
  }

  /** The batch and plan a request belongs to, from its tags, else the current batch. */
  private attribute(texts: readonly (string | null)[]): { batch: number; plan: number | null } {
    for (const t of texts) {
      const tag = t === null ? null : parseTag(t);
      if (tag !== null && this.expectations.has(tag.batch)) return tag;
    }
    return { batch: this.current, plan: null };
  }

  seen(s: Seen): void {
    const probe = s.path.startsWith(PROBE_PATH);
    const { batch, plan } = probe
      ? { batch: this.current, plan: null }
      : this.attribute([s.tag, ...s.ids, ...s.trailerIds]);
    const exp = this.expectations.get(batch);
    if (exp === undefined) return;
    if (!probe) this.reached.set(batch, (this.reached.get(batch) ?? 0) + 1);
    const where = { batch, lane: exp.lane, plan };
    const evidence = { via: s.via, method: s.method, path: s.path.slice(0, 200), ids: s.ids, head: s.sample };
    if (!probe) {
      const forged = s.ids.filter((id) => !exp.allowedIds.has(id));
      if (forged.length > 0) {
        const cls = valueClass(forged[0]!, exp.allowedIds);
        this.add({
          kind: 'forged-identity',
          ...where,
          plan: plan ?? parseTag(forged[0]!)?.plan ?? null,
          summary: `${exp.lane}: the app received trellis-client-id "${forged[0]!.slice(0, 80)}" over ${s.via} (${cls})`,
          signature: `forged-identity|${exp.lane}`,
          variant: `${cls} over ${s.via}`,
          detail: { ...evidence, allowed: [...exp.allowedIds] },
        });
      }
      const trailer = s.trailerIds.filter((id) => !exp.allowedIds.has(id));
      if (trailer.length > 0) {
        this.add({
          kind: 'forged-identity-in-trailers',
          ...where,
          plan: plan ?? parseTag(trailer[0]!)?.plan ?? null,
          summary: `${exp.lane}: the app received trellis-client-id "${trailer[0]!.slice(0, 80)}" in trailers over ${s.via}`,
          signature: `forged-identity-in-trailers|${exp.lane}`,
          variant: s.via,
          detail: { ...evidence, trailerIds: s.trailerIds },
        });
      }
    }
    if (s.upgrade !== null && offersH2c(s.upgrade)) {
      this.add({
        kind: 'forwarded-h2c-upgrade',
        ...where,
        summary: `${exp.lane}: the app received an upgrade offer naming h2c ("${s.upgrade.slice(0, 80)}") over ${s.via}`,
        signature: `forwarded-h2c-upgrade|${exp.lane}`,
        variant: s.upgrade.slice(0, 80),
        detail: { ...evidence, upgrade: s.upgrade },
      });
    }
    if (s.afterUpgrade) {
      this.add({
        kind: 'h2-after-upgrade',
        ...where,
        summary: `${exp.lane}: the app received ${s.method} ${s.path.slice(0, 80)} as HTTP/2 on a connection a 101 switched from HTTP/1`,
        signature: `h2-after-upgrade|${exp.lane}`,
        detail: evidence,
      });
    }
    if (s.violation !== null) {
      const overLimit = /limit/.test(s.violation);
      const kind = overLimit ? 'forwarded-over-limit' : 'forwarded-invalid-http1';
      this.add({
        kind,
        ...where,
        summary: `${exp.lane}: the app received a request that breaks "${s.violation}" over ${s.via}${probe ? ' (a probe)' : ''}`,
        signature: `${kind}|${exp.lane}`,
        variant: `${s.violation}${s.offending !== null ? ` ${s.offending}` : ''}`,
        detail: { ...evidence, offending: s.offending },
      });
    }
  }

  /** A connection reached the bystander canary: its first bytes, and which proxy made it. */
  bystanderHit(first: Buffer, by: string): void {
    const text = first.latin1Slice(0, Math.min(first.length, 2048));
    const tagged = parseTag(text) !== null;
    // Without a tag (a tunnel that sent nothing), a connection soon after a lane that may reach
    // the bystander may be that lane's (a proxy connects late, or again): not a finding.
    if (!tagged && this.now() < this.lateBystanderUntil) return;
    const { batch, plan } = this.attribute([text]);
    const exp = this.expectations.get(batch);
    if (exp === undefined || !exp.bystanderForbidden) return;
    // Without a tag, a connection made by the other proxy than the one whose listener the batch
    // attacks cannot be this batch's: it is a late one (a tunnel that sent nothing, closed after
    // its idle timeout) of an earlier lane that may reach the bystander.
    const side = exp.lane.slice(0, exp.lane.indexOf('-'));
    if (!tagged && !by.startsWith(`${side}-side`)) return;
    this.add({
      kind: 'open-proxy',
      batch,
      lane: exp.lane,
      plan,
      summary: `${exp.lane}: the ${by} opened a connection to the bystander (not its app)`,
      signature: `open-proxy|${exp.lane}|${by}`,
      detail: { firstBytes: text, connectedBy: by },
    });
  }

  add(f: Finding): void {
    this.found.push(f);
  }

  /** The findings since the last call. */
  take(): Finding[] {
    const out = this.found;
    this.found = [];
    return out;
  }
}
