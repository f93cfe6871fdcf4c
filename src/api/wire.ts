// The protobuf wire format, by hand: the small runtime under the message codecs that
// scripts/gen-api.ts generates into src/api/gen/codecs/. It exists so that a proxy can speak the
// control-plane APIs without @grpc/proto-loader and protobufjs, which parse the .proto files at
// run time and cost several MB of memory in every proxy.
//
// In two halves: wire-reader.ts (defensive decoding: malformed bytes throw a WireError, never
// anything else, and never hang) and wire-writer.ts (encoding). Generated code imports this file.
//
// 64-bit integers are JS numbers, as proto-loader gives them with `longs: Number`: exact within
// 2^53, rounded beyond (the same rounding as protobufjs's LongBits.toNumber).
export * from './wire-reader.ts';
export * from './wire-writer.ts';
