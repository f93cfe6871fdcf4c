// A proxy's Tracer from its configuration (tracing.*): none without a collector, else one that
// exports over OTLP/HTTP with the resource naming this proxy's workload.
import type { Logger } from '../../core/log.ts';
import type { ProxyConfig } from '../config.ts';
import type { ProxyMetrics } from './metrics.ts';
import { OtlpHttpExporter } from './trace-export.ts';
import { Tracer } from './trace-tracer.ts';

export function startTracer(
  config: ProxyConfig,
  metrics: ProxyMetrics,
  log: Logger,
  ownIdentity: () => string | null,
): Tracer | null {
  const t = config.tracing;
  if (t.collector === undefined) return null;
  const workload = config.workload;
  const serviceName = t.serviceName ?? (workload.name !== '' ? workload.name : 'trellis-proxy');
  const sink = new OtlpHttpExporter({
    collector: t.collector,
    resource: {
      attributes: [
        ['service.name', serviceName],
        ['service.namespace', workload.namespace],
        ['telemetry.sdk.name', 'trellis'],
        ['telemetry.sdk.language', 'nodejs'],
      ],
      scopeName: 'trellis-proxy',
      scopeVersion: '',
    },
    maxQueuedSpans: t.maxQueuedSpans,
    maxBatchSpans: t.maxBatchSpans,
    batchDelayMs: t.batchDelayMs,
    exportTimeoutMs: t.exportTimeoutMs,
    metrics,
    log: log.child({ component: 'tracing' }),
  });
  return new Tracer({ sampleRatio: t.sampleRatio, sink, ownIdentity });
}
