// Adding up cumulative histograms of several proxies (or several series) before a quantile is
// taken, as Prometheus's sum by (le) does: per bound, the sum of each histogram's count at that
// bound. A histogram without that bound counts what it has at its largest bound below it (a
// cumulative count never drops), so histograms with different bounds still merge into one that
// never decreases. Latency quantiles in milliseconds are read from the result.
import { histogramQuantile } from '../../core/golden-metrics.ts';
import type { CumulativeBucket } from '../../core/prom-parse.ts';

/** The sum of cumulative histograms (each sorted by bound), over the union of their bounds. */
export function mergeBuckets(histograms: readonly (readonly CumulativeBucket[])[]): CumulativeBucket[] {
  const bounds = [...new Set(histograms.flatMap((h) => h.map((b) => b.le)))].sort((a, b) => a - b);
  const at = histograms.map(() => -1);
  return bounds.map((le) => {
    let count = 0;
    for (let i = 0; i < histograms.length; i++) {
      const h = histograms[i]!;
      let j = at[i]!;
      while (j + 1 < h.length && h[j + 1]!.le <= le) j++;
      at[i] = j;
      if (j >= 0) count += h[j]!.count;
    }
    return { le, count };
  });
}

/** The q-quantile of a merged latency histogram in seconds, as milliseconds to 0.01; null without data. */
export function quantileMs(q: number, buckets: readonly CumulativeBucket[]): number | null {
  const seconds = histogramQuantile(q, buckets);
  return seconds === null ? null : Math.round(seconds * 1e5) / 100;
}
