// Findings on disk: each distinct finding (by signature) gets one reproducer file in the run's
// results folder, written when it is first seen, with the seed, the batch, the lane, the ports
// and the evidence; and the input itself: the plan that caused it when the evidence names it
// (its tag), else the whole batch when it is small, else nothing (then replay regenerates the
// batch from the seed). Repeats are counted. `--replay FILE` sends a reproducer again.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Ports } from './context.ts';
import type { Finding } from './judge.ts';
import type { Batch, ConnPlan, Step } from './plan.ts';

const MAX_EMBEDDED_BYTES = 4 * 1024 * 1024;
const PREVIEW_CHARS = 3000;

export interface StoredStep {
  /** Base64 of what is written (`ping`: a PING frame, whose ACK frame is `ack`). */
  readonly write?: string;
  readonly ping?: string;
  readonly ack?: string;
  /** The bytes as latin1 text (escaped by JSON), cut at PREVIEW_CHARS, for reading. */
  readonly text?: string;
  readonly inputs?: number;
  readonly flood?: number;
  readonly waitMs?: number;
  readonly end?: true;
}

export interface StoredPlan {
  readonly channel: ConnPlan['channel'];
  readonly note: string;
  readonly noRead?: boolean;
  readonly countResponses?: boolean;
  readonly validRequests?: readonly boolean[];
  readonly steps: readonly StoredStep[];
}

export interface Reproducer {
  readonly kind: Finding['kind'];
  readonly summary: string;
  readonly signature: string;
  readonly seed: number;
  readonly batch: number | null;
  readonly lane: string | null;
  readonly listener: string | null;
  readonly plan: number | null;
  readonly ports: Ports;
  readonly detail: Finding['detail'];
  /** The input: one plan, the batch, or null (regenerate the batch from seed, batch and lane). */
  readonly plans: readonly StoredPlan[] | null;
  readonly replay: string;
}

function storeStep(s: Step): StoredStep {
  if ('write' in s) {
    return {
      write: s.write.toString('base64'),
      text: s.write.latin1Slice(0, Math.min(s.write.length, PREVIEW_CHARS)),
      inputs: s.inputs,
      ...(s.flood !== undefined ? { flood: s.flood } : {}),
    };
  }
  if ('ping' in s)
    return { ping: s.ping.toString('base64'), ack: s.ack.toString('base64'), inputs: s.inputs };
  return s;
}

/** A plan as JSON-friendly data: its fields, with the bytes of its steps in base64. */
export function storePlan(p: ConnPlan): StoredPlan {
  return { ...p, steps: p.steps.map(storeStep) };
}

export function loadPlan(p: StoredPlan): ConnPlan {
  const steps: Step[] = p.steps.map((s): Step => {
    if (s.write !== undefined)
      return {
        write: Buffer.from(s.write, 'base64'),
        inputs: s.inputs ?? 0,
        ...(s.flood !== undefined ? { flood: s.flood } : {}),
      };
    if (s.ping !== undefined && s.ack !== undefined)
      return {
        ping: Buffer.from(s.ping, 'base64'),
        ack: Buffer.from(s.ack, 'base64'),
        inputs: s.inputs ?? 0,
      };
    if (s.waitMs !== undefined) return { waitMs: s.waitMs };
    return { end: true };
  });
  return { ...p, steps };
}

function planBytes(plans: readonly ConnPlan[]): number {
  let n = 0;
  for (const p of plans) for (const s of p.steps) if ('write' in s) n += s.write.length;
  return n;
}

export interface FindingSummary {
  readonly signature: string;
  readonly kind: Finding['kind'];
  readonly summary: string;
  count: number;
  readonly file: string;
  /** Distinct variants seen (offending characters...), at most MAX_VARIANTS. */
  readonly variants: string[];
}

const MAX_VARIANTS = 40;

export class FindingLog {
  private readonly dir: string;
  private readonly seed: number;
  private readonly ports: Ports;
  private readonly bySignature = new Map<string, FindingSummary>();

  constructor(dir: string, seed: number, ports: Ports) {
    this.dir = dir;
    this.seed = seed;
    this.ports = ports;
  }

  /** Records a finding; returns its summary entry and whether it is new. */
  record(f: Finding, batch: Batch | null): { entry: FindingSummary; isNew: boolean } {
    const known = this.bySignature.get(f.signature);
    if (known !== undefined) {
      known.count++;
      if (
        f.variant !== undefined &&
        !known.variants.includes(f.variant) &&
        known.variants.length < MAX_VARIANTS
      )
        known.variants.push(f.variant);
      return { entry: known, isNew: false };
    }
    mkdirSync(this.dir, { recursive: true });
    const file = join(
      this.dir,
      `finding-${String(this.bySignature.size + 1).padStart(3, '0')}-${f.kind}.json`,
    );
    let plans: StoredPlan[] | null = null;
    const culprit = f.plan !== null ? batch?.plans[f.plan] : undefined;
    if (culprit !== undefined) plans = [storePlan(culprit)];
    else if (batch !== null && planBytes(batch.plans) <= MAX_EMBEDDED_BYTES)
      plans = batch.plans.map(storePlan);
    const reproducer: Reproducer = {
      kind: f.kind,
      summary: f.summary,
      signature: f.signature,
      seed: this.seed,
      batch: f.batch,
      lane: f.lane,
      listener: batch?.listener ?? null,
      plan: culprit !== undefined ? f.plan : null,
      ports: this.ports,
      detail: f.detail,
      plans,
      replay: `node fuzz/run.ts --replay ${file}`,
    };
    writeFileSync(file, JSON.stringify(reproducer, null, 2) + '\n');
    const entry: FindingSummary = {
      signature: f.signature,
      kind: f.kind,
      summary: f.summary,
      count: 1,
      file,
      variants: f.variant !== undefined ? [f.variant] : [],
    };
    this.bySignature.set(f.signature, entry);
    return { entry, isNew: true };
  }

  all(): FindingSummary[] {
    return [...this.bySignature.values()];
  }
}
