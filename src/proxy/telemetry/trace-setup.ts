// A proxy's Tracer from its configuration (tracing.*): none without a collector, else one that
// exports over OTLP/HTTP or OTLP/gRPC (trace-endpoint.ts decides which) with the resource naming
// this proxy's workload, and the collector's bearer token when one is configured.
import { readFileSync } from 'node:fs';
import { readControlFileSync } from '../../api/control-file.ts';
import { ConfigError } from '../../core/errors.ts';
import type { Logger } from '../../core/log.ts';
import type { ProxyConfig } from '../config.ts';
import type { ProxyMetrics } from './metrics.ts';
import { grpcAddress, traceEndpoint } from './trace-endpoint.ts';
import { SpanExporter, type SpanTransport } from './trace-export.ts';
import { OtlpGrpcTransport } from './trace-export-grpc.ts';
import { OtlpHttpTransport } from './trace-export-http.ts';
import { Tracer } from './trace-tracer.ts';
import { FollowingTransport, ownCollectorOf } from './trace-follow.ts';
import { locateControlPlane } from '../resolve/control-plane-address.ts';

/** A token a header can carry: printable ASCII without spaces, at most 1024 characters. */
const TOKEN = /^[\x21-\x7e]{1,1024}$/;

/** The headers (or gRPC metadata) every export carries: the bearer token of `file`, if any. */
export function exportHeaders(file: string | undefined): Record<string, string> {
  if (file === undefined) return {};
  let token: string;
  try {
    token = readFileSync(file, 'utf8').trim();
  } catch (error) {
    throw new ConfigError(
      'tracing.bearerTokenFile',
      `cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? error}`,
    );
  }
  if (!TOKEN.test(token))
    throw new ConfigError('tracing.bearerTokenFile', `${file}: expected 1 to 1024 printable characters`);
  return { authorization: `Bearer ${token}` };
}

/** The transport for a validated tracing configuration with a collector. */
export function spanTransport(t: ProxyConfig['tracing'] & { collector: string }): SpanTransport {
  const endpoint = traceEndpoint(t.collector, t.protocol);
  if (typeof endpoint === 'string') throw new ConfigError('tracing.collector', endpoint);
  const headers = exportHeaders(t.bearerTokenFile);
  return endpoint.protocol === 'grpc'
    ? new OtlpGrpcTransport(grpcAddress(endpoint), endpoint.tls, headers)
    : new OtlpHttpTransport(endpoint.url, headers);
}

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
  const configured = spanTransport({ ...t, collector: t.collector });
  // The control plane's own collector (the control file this proxy follows names it, with its token
  // file): followed to wherever the control plane restarts. Any other collector stays as configured.
  const file = config.controlPlane.file;
  const own = file === undefined ? null : ownCollectorOf(readControlFileSync(file));
  const followed = own !== null && (own.collector === t.collector || own.tokenFile === t.bearerTokenFile);
  const transport =
    file !== undefined && followed
      ? new FollowingTransport({
          file,
          collector: t.collector,
          transport: configured,
          transportFor: (collector, tokenFile) =>
            spanTransport({ ...t, collector, bearerTokenFile: tokenFile }),
          locator: locateControlPlane(''),
          onMove: () => sink.collectorMoved(),
          log: log.child({ component: 'tracing' }),
        })
      : configured;
  const sink = new SpanExporter(
    {
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
    },
    transport,
  );
  // Started with an older address than the file's (`trellis run` restarting its proxy after the
  // control plane moved): exports go to the file's now.
  if (transport instanceof FollowingTransport) transport.look();
  return new Tracer({ sampleRatio: t.sampleRatio, sink, ownIdentity });
}
