// `trellis prometheus-config`: prints a Prometheus scrape configuration for a running mesh. One job
// finds every registered proxy through the control plane's HTTP service discovery
// (GET /api/prometheus/targets, src/control/metrics/prometheus-sd.ts) and scrapes its admin
// listener's /metrics; another scrapes the control plane's own /metrics. The YAML holds only
// `scrape_configs`, so it can be saved as prometheus.yml or merged into an existing one.
import { ConfigError } from '../core/errors.ts';
import { PROMETHEUS_SD_PATH } from '../control/metrics/prometheus-sd.ts';
import { findControlPlane } from './control-api.ts';
import { parseDuration } from '../core/duration.ts';
import { type FlagSpec, formatHelp, parseInterleaved } from './flags.ts';
import { CONTROL_FLAG, STATE_FLAG, stateFolder } from './targeting.ts';
import { SUMMARIES } from './summaries.ts';

export const summary = SUMMARIES['prometheus-config'];

const FLAGS: FlagSpec[] = [
  {
    name: 'scrape-interval',
    kind: 'string',
    help: 'how often Prometheus scrapes and refreshes the proxy list (default 15s; 1s..1h)',
  },
  STATE_FLAG,
  CONTROL_FLAG,
];

const USAGE = `Usage: trellis prometheus-config [options]

Prints a Prometheus scrape configuration (YAML) for the mesh of the running control plane:
job trellis-proxies discovers every registered proxy through the control plane's HTTP service
discovery (${PROMETHEUS_SD_PATH}) and scrapes its /metrics, labelled with namespace, workload and
pod; job trellis-control-plane scrapes the control plane's own /metrics. Example:

  trellis prometheus-config > prometheus.yml && prometheus --config.file=prometheus.yml`;

const MIN_INTERVAL_MS = 1000;
const MAX_INTERVAL_MS = 3600_000;

export async function run(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(formatHelp(USAGE, FLAGS) + '\n');
    return 0;
  }
  const { values, rest } = parseInterleaved(argv, FLAGS);
  if (rest.length > 0)
    throw new ConfigError('', `trellis prometheus-config: unexpected argument '${rest[0]}'`);
  const raw = values.get('scrape-interval') as string | undefined;
  const intervalMs = raw === undefined ? 15_000 : parseDuration('--scrape-interval', raw);
  if (intervalMs < MIN_INTERVAL_MS || intervalMs > MAX_INTERVAL_MS) {
    throw new ConfigError('--scrape-interval', `must be between 1s and 1h, got '${raw}'`);
  }
  const api = await findControlPlane({
    control: values.get('control') as string | undefined,
    stateFlag: values.get('state') as string | undefined,
    root: stateFolder(values.get('state') as string | undefined),
  });
  process.stdout.write(prometheusConfig(api.base, intervalMs));
  return 0;
}

/** A duration as Prometheus writes them: "15s", "1m30s" is "90s", "1500ms". */
export function prometheusDuration(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

/** The scrape configuration for the control plane at `base` ("http://HOST:PORT"). */
export function prometheusConfig(base: string, intervalMs: number): string {
  const url = new URL(base);
  const interval = prometheusDuration(intervalMs);
  return `# Prometheus scrape configuration for the Trellis mesh of the control plane at ${url.host}
# (printed by \`trellis prometheus-config\`; metric families: docs/metrics.md).
scrape_configs:
  - job_name: trellis-proxies
    scrape_interval: ${interval}
    metrics_path: /metrics
    http_sd_configs:
      - url: ${url.origin}${PROMETHEUS_SD_PATH}
        refresh_interval: ${interval}
  - job_name: trellis-control-plane
    scrape_interval: ${interval}
    metrics_path: /metrics
    static_configs:
      - targets: ['${url.host}']
        labels: { component: control-plane }
`;
}
