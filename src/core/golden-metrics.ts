// The golden metrics of a proxy as read from its /metrics page, and the window math over
// successive scrapes: counter and histogram deltas (a restart resets them) and the quantile of a
// histogram, as Prometheus's rate() and histogram_quantile() compute them. Shared by the CLI's
// live table (`trellis demo`, src/cli/live-view.ts) and the control plane's metrics collector
// (`trellis stat`, src/control/metrics/collector.ts). Metric names are the proxy's
// (src/proxy/telemetry/metrics.ts).
import { histogramBuckets, sumSamples, type CumulativeBucket, type PromSample } from './prom-parse.ts';

export type Direction = 'inbound' | 'outbound';

/** What one scrape of one proxy says about one direction of traffic. */
export interface ProxySnapshot {
  readonly atMs: number;
  readonly responses: number;
  readonly successes: number;
  readonly latencyBuckets: readonly CumulativeBucket[];
  readonly tcpOpen: number;
  /** Bytes read from and written to accepted connections (counted when they close). */
  readonly readBytes: number;
  readonly writeBytes: number;
}

/** Reads the proxy metrics of one direction (names from src/proxy/telemetry/metrics.ts). */
export function snapshotFromSamples(
  samples: readonly PromSample[],
  direction: Direction,
  atMs: number,
): ProxySnapshot {
  const dir = { direction };
  return {
    atMs,
    responses: sumSamples(samples, 'trellis_response_total', dir),
    successes: sumSamples(samples, 'trellis_response_total', { direction, classification: 'success' }),
    latencyBuckets: histogramBuckets(samples, 'trellis_response_latency_seconds', dir),
    tcpOpen: sumSamples(samples, 'trellis_tcp_open_connections', dir),
    readBytes: sumSamples(samples, 'trellis_tcp_read_bytes_total', dir),
    writeBytes: sumSamples(samples, 'trellis_tcp_write_bytes_total', dir),
  };
}

/**
 * The q-quantile (0..1) of a cumulative histogram, as Prometheus's histogram_quantile() computes
 * it: find the bucket holding rank q*total and interpolate linearly inside it (the first bucket
 * starts at 0). A rank in the +Inf bucket gives the highest finite bound. Null without data.
 */
export function histogramQuantile(q: number, buckets: readonly CumulativeBucket[]): number | null {
  if (buckets.length === 0 || Number.isNaN(q)) return null;
  const last = buckets[buckets.length - 1]!;
  if (last.le !== Infinity) return null;
  // Deltas of floats can dip by rounding: force the counts to be non-decreasing.
  const counts: number[] = [];
  let running = 0;
  for (const b of buckets) counts.push((running = Math.max(running, b.count)));
  const total = counts[counts.length - 1]!;
  if (!(total > 0)) return null;
  const rank = Math.min(Math.max(q, 0), 1) * total;
  let i = 0;
  while (counts[i]! < rank || counts[i] === 0) i++; // ends: the last count is total > 0
  if (buckets[i]!.le === Infinity) return i === 0 ? null : buckets[i - 1]!.le;
  const lower = i === 0 ? 0 : buckets[i - 1]!.le;
  const upper = buckets[i]!.le;
  if (i === 0 && upper <= 0) return upper;
  const before = i === 0 ? 0 : counts[i - 1]!;
  const inBucket = counts[i]! - before;
  return lower + ((upper - lower) * (rank - before)) / inBucket;
}

/**
 * newer - older per bound (bounds missing from `older` count from 0). When any count went down
 * the process restarted: the newer snapshot is then the whole delta.
 */
export function bucketDeltas(
  newer: readonly CumulativeBucket[],
  older: readonly CumulativeBucket[],
): CumulativeBucket[] {
  const before = new Map(older.map((b) => [b.le, b.count]));
  const deltas = newer.map((b) => ({ le: b.le, count: b.count - (before.get(b.le) ?? 0) }));
  return deltas.some((d) => d.count < 0) ? [...newer] : deltas;
}
