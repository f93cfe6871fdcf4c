// OTLP/gRPC's trace service (opentelemetry-proto, collector/trace/v1/trace_service.proto) as
// grpc-js wants it, with pass-through (de)serializers: the request is an ExportTraceServiceRequest
// already written by the proxy (src/proxy/telemetry/trace-otlp.ts) or read by the control plane
// (src/control/traces/otlp-decode.ts), so grpc-js only frames bytes. Used by the proxy's exporter,
// the control plane's embedded collector and the test and benchmark receivers. Nothing here loads
// grpc-js (the type import is erased).
import type * as grpc from '@grpc/grpc-js';

export const TRACE_EXPORT_METHOD = '/opentelemetry.proto.collector.trace.v1.TraceService/Export';

/** Bytes in, the same bytes out. */
export const passThrough = (bytes: Buffer): Buffer => bytes;

/** TraceService with its one unary method, Export, on raw bytes. */
export const traceServiceDefinition: grpc.ServiceDefinition<{ Export: grpc.UntypedHandleCall }> = {
  Export: {
    path: TRACE_EXPORT_METHOD,
    requestStream: false,
    responseStream: false,
    requestSerialize: passThrough,
    requestDeserialize: passThrough,
    responseSerialize: passThrough,
    responseDeserialize: passThrough,
  },
};
