// Where and how spans are exported: the collector URL and the OTLP protocol, read the way the
// OpenTelemetry convention reads them (OTEL_EXPORTER_OTLP_PROTOCOL = grpc | http/protobuf, ports
// 4317 and 4318). The protocol is the explicit setting (tracing.protocol, --trace-protocol) when
// given, else the URL's scheme says it:
//
//   http://H:P, https://H:P     OTLP/HTTP protobuf, POST {url}/v1/traces (or OTLP/gRPC when the
//                               protocol is grpc: plaintext for http, TLS for https)
//   grpc://H:P, grpcs://H:P     OTLP/gRPC, TraceService/Export; plaintext or TLS; port 4317 when
//                               none is given
//
// Only this file decides; the proxy's configuration schema, `trellis up` and the exporter ask it.

export type OtlpProtocol = 'grpc' | 'http/protobuf';
export const OTLP_PROTOCOLS: readonly OtlpProtocol[] = ['grpc', 'http/protobuf'];

/** The default port of an OTLP/gRPC collector. */
export const OTLP_GRPC_PORT = 4317;

export interface TraceEndpoint {
  readonly protocol: OtlpProtocol;
  /** Whether the connection to the collector is TLS (https://, grpcs://; system CAs). */
  readonly tls: boolean;
  /** The URL as given (OTLP/HTTP: the base URL). */
  readonly url: URL;
}

const SCHEMES: Readonly<Record<string, { protocol: OtlpProtocol | null; tls: boolean }>> = {
  'http:': { protocol: null, tls: false },
  'https:': { protocol: null, tls: true },
  'grpc:': { protocol: 'grpc', tls: false },
  'grpcs:': { protocol: 'grpc', tls: true },
};

/** The endpoint of a collector URL and an optional protocol, or why they do not make one. */
export function traceEndpoint(collector: string, protocol?: OtlpProtocol): TraceEndpoint | string {
  if (!URL.canParse(collector))
    return `expected a URL (http://, https://, grpc:// or grpcs://), got '${collector}'`;
  const url = new URL(collector);
  const scheme = SCHEMES[url.protocol];
  if (scheme === undefined || url.hostname === '')
    return `expected an http://, https://, grpc:// or grpcs:// URL with a host, got '${collector}'`;
  if (scheme.protocol === 'grpc' && protocol === 'http/protobuf')
    return `${url.protocol}// is OTLP/gRPC, but the protocol is http/protobuf: use http:// or https://`;
  return { protocol: protocol ?? scheme.protocol ?? 'http/protobuf', tls: scheme.tls, url };
}

/** The collector URL with the protocol in its scheme (http: -> grpc:, https: -> grpcs: for gRPC). */
export function collectorUrlOf(endpoint: TraceEndpoint): string {
  if (endpoint.protocol !== 'grpc' || !/^https?:$/.test(endpoint.url.protocol)) return endpoint.url.href;
  return `${endpoint.tls ? 'grpcs' : 'grpc'}://${grpcAddress(endpoint)}`;
}

/** "host:port" of a gRPC collector ("[v6]:port"); port 4317 for grpc(s):// without one. */
export function grpcAddress(endpoint: TraceEndpoint): string {
  const { url } = endpoint;
  const port =
    url.port !== ''
      ? url.port
      : url.protocol === 'https:'
        ? '443'
        : url.protocol === 'http:'
          ? '80'
          : String(OTLP_GRPC_PORT);
  return `${url.hostname}:${port}`;
}
