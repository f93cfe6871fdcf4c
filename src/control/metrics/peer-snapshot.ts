// What one scrape of a proxy says about its traffic by peer (the proxy's *_peer_* families,
// src/proxy/telemetry/peer-metrics.ts), and what it did over a window with the peers a filter
// selects: `trellis stat --from` (inbound, by the client's identity) and `--to` (outbound, by the
// destination's namespace and workload). The snapshots go in a WindowHistory (window-history.ts)
// beside the golden ones. Memory: at most MAX_PEERS_PER_SNAPSHOT peers per snapshot (as many as a
// proxy has series of; past it, from a page that is not a proxy's, the first the page lists), each
// two numbers and its latency counts, shared with the snapshot before when it did not change.
import { bucketDeltas, type Direction } from '../../core/golden-metrics.ts';
import { parseSampleValue, type CumulativeBucket, type PromSample } from '../../core/prom-parse.ts';
import {
  MAX_PEERS,
  INBOUND_PEER_LATENCY,
  INBOUND_PEER_RESPONSES,
  OUTBOUND_PEER_LATENCY,
  OUTBOUND_PEER_RESPONSES,
} from '../../core/peer-metric-names.ts';
import type { Timed, WindowHistory } from './window-history.ts';
import { mergeBuckets } from './histogram-merge.ts';

/**
 * Peers kept per snapshot (per proxy and direction): every peer a proxy has series of (MAX_PEERS,
 * and the "other" of those past it), so none of a proxy's is left out; more only from a page that
 * is not a proxy's (those are counted: PeerSnapshot.dropped).
 */
export const MAX_PEERS_PER_SNAPSHOT = MAX_PEERS + 1;
/** Latency bounds kept per snapshot (the proxy has 19 and +Inf). */
const MAX_BOUNDS = 64;

/** One peer's totals since its proxy started. */
export interface PeerTotals {
  responses: number;
  successes: number;
  /** Cumulative latency counts, one per bound of the snapshot's `bounds`. */
  readonly latency: Float64Array;
}

export interface PeerSnapshot extends Timed {
  /** The latency bounds of every peer's counts (sorted; the last is +Inf on a proxy's page). */
  readonly bounds: readonly number[];
  /** By peer key (peerKey): inbound the client identity, outbound "namespace/workload". */
  readonly peers: ReadonlyMap<string, PeerTotals>;
  /** Peers of the page left out over MAX_PEERS_PER_SNAPSHOT. */
  readonly dropped: number;
}

/** What the selected peers did over a window. */
export interface PeerDelta {
  readonly responses: number;
  readonly successes: number;
  readonly seconds: number;
  readonly latencyBuckets: readonly CumulativeBucket[];
}

const FAMILIES: Record<Direction, { responses: string; bucket: string }> = {
  inbound: { responses: INBOUND_PEER_RESPONSES, bucket: `${INBOUND_PEER_LATENCY}_bucket` },
  outbound: { responses: OUTBOUND_PEER_RESPONSES, bucket: `${OUTBOUND_PEER_LATENCY}_bucket` },
};

/** The key of a series of `direction`: its client_id, or "dst_namespace/dst_workload"; null: none. */
export function peerKey(direction: Direction, labels: Readonly<Record<string, string>>): string | null {
  if (direction === 'inbound') return labels.client_id ?? null;
  const workload = labels.dst_workload;
  return workload === undefined ? null : `${labels.dst_namespace ?? ''}/${workload}`;
}

/** The `le` of a bucket sample, or null when it has none that reads as a number. */
function boundOf(s: PromSample): number | null {
  const le = parseSampleValue(s.labels.le ?? '');
  return le === null || Number.isNaN(le) ? null : le;
}

/** The peers of one direction on a scraped page. */
export function peerSnapshot(
  samples: readonly PromSample[],
  direction: Direction,
  atMs: number,
  previous: PeerSnapshot | null = null,
): PeerSnapshot {
  const { responses, bucket } = FAMILIES[direction];
  const seen = new Set<number>();
  for (const s of samples) {
    if (s.name !== bucket || seen.size >= MAX_BOUNDS) continue;
    const le = boundOf(s);
    if (le !== null) seen.add(le);
  }
  const bounds = [...seen].sort((a, b) => a - b);
  const boundIndex = new Map(bounds.map((le, i) => [le, i]));
  const peers = new Map<string, PeerTotals>();
  const dropped = new Set<string>();
  for (const s of samples) {
    if ((s.name !== responses && s.name !== bucket) || !(s.value >= 0)) continue;
    const key = peerKey(direction, s.labels);
    if (key === null) continue;
    let totals = peers.get(key);
    if (totals === undefined) {
      if (peers.size >= MAX_PEERS_PER_SNAPSHOT) {
        if (dropped.size < MAX_PEERS_PER_SNAPSHOT) dropped.add(key); // (a count, bounded too)
        continue;
      }
      totals = { responses: 0, successes: 0, latency: new Float64Array(bounds.length) };
      peers.set(key, totals);
    }
    if (s.name === responses) {
      totals.responses += s.value;
      if (s.labels.classification === 'success') totals.successes += s.value;
    } else {
      const i = boundIndex.get(boundOf(s) ?? NaN);
      if (i !== undefined) totals.latency[i]! += s.value;
    }
  }
  return shareUnchanged({ atMs, bounds, peers, dropped: dropped.size }, previous);
}

/**
 * The snapshot with what did not change since `previous` taken from it: the bounds, and the
 * totals of each peer with as many responses (every response is one latency observation, so its
 * counts are the same too). An idle peer then costs the history nothing per scrape.
 */
function shareUnchanged(snapshot: PeerSnapshot, previous: PeerSnapshot | null): PeerSnapshot {
  if (previous === null || !sameBounds(previous.bounds, snapshot.bounds)) return snapshot;
  const peers = new Map<string, PeerTotals>();
  for (const [key, totals] of snapshot.peers) {
    const before = previous.peers.get(key);
    const same =
      before !== undefined && before.responses === totals.responses && before.successes === totals.successes;
    peers.set(key, same ? before : totals);
  }
  return { ...snapshot, bounds: previous.bounds, peers };
}

function sameBounds(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((le, i) => le === b[i]);
}

/**
 * Whether the proxy restarted between two snapshots: a peer's count went down, or a peer is gone
 * (a proxy never forgets a peer series, and lists the same first ones).
 */
export function peersRestarted(older: PeerSnapshot, newer: PeerSnapshot): boolean {
  for (const [key, before] of older.peers) {
    const after = newer.peers.get(key);
    if (after === undefined || after.responses < before.responses || after.successes < before.successes)
      return true;
  }
  return false;
}

function bucketsOf(bounds: readonly number[], counts: Float64Array): CumulativeBucket[] {
  return bounds.map((le, i) => ({ le, count: counts[i]! }));
}

/**
 * What the peers `selected` picks did over the window (a proxy restarted in between: the newest
 * totals alone); null before two snapshots.
 */
export function peerDelta(
  history: WindowHistory<PeerSnapshot>,
  windowMs: number,
  selected: (key: string) => boolean,
): PeerDelta | null {
  const span = history.span(windowMs);
  if (span === null) return null;
  const { newest, base } = span;
  let responses = 0;
  let successes = 0;
  const histograms: CumulativeBucket[][] = [];
  for (const [key, now] of newest.peers) {
    if (!selected(key)) continue;
    const before = span.restarted ? undefined : base.peers.get(key);
    responses += now.responses - (before?.responses ?? 0);
    successes += now.successes - (before?.successes ?? 0);
    histograms.push(
      bucketDeltas(
        bucketsOf(newest.bounds, now.latency),
        before === undefined ? [] : bucketsOf(base.bounds, before.latency),
      ),
    );
  }
  return { responses, successes, seconds: span.seconds, latencyBuckets: mergeBuckets(histograms) };
}
