// Prometheus HTTP service discovery (`http_sd_configs`) for the proxies a control plane knows:
// GET /api/prometheus/targets on the control plane's HTTP API answers a JSON list of target
// groups, one per registered workload instance with a proxy, in the shape Prometheus expects:
//
//   [{"targets": ["127.0.0.1:41913"], "labels": {"namespace": "shop", "workload": "web", "pod": "web-1a2b"}}]
//
// The labels name where the proxy runs, never a direction (a proxy serves both); the series of a
// proxy carry `direction` themselves. `trellis prometheus-config` (src/cli/prometheus-config.ts)
// prints a scrape configuration that points Prometheus here.
import type { ScrapeTarget } from './collector.ts';

/** The path of the discovery endpoint on the control plane's HTTP API. */
export const PROMETHEUS_SD_PATH = '/api/prometheus/targets';

/** One target group of Prometheus's HTTP service discovery. */
export interface HttpSdGroup {
  readonly targets: readonly string[];
  readonly labels: Readonly<Record<string, string>>;
}

/**
 * One group per instance whose proxy has an admin listener (its /metrics), sorted by namespace,
 * workload and instance so that the answer is stable between refreshes.
 */
export function prometheusTargets(targets: readonly ScrapeTarget[]): HttpSdGroup[] {
  return targets
    .filter((t): t is ScrapeTarget & { admin: string } => t.admin !== null)
    .map((t) => ({
      key: `${t.namespace}\u0000${t.workload}\u0000${t.instance}`,
      group: {
        targets: [t.admin],
        labels: { namespace: t.namespace, workload: t.workload, pod: t.instance },
      },
    }))
    .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
    .map(({ group }) => group);
}
