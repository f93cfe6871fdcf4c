// The names of the proxy's per-peer metric families and their special label values: the proxy
// writes them (src/proxy/telemetry/peer-metrics.ts), the control plane's collector reads them for
// `trellis stat --from/--to` (src/control/metrics/peer-snapshot.ts).

export const INBOUND_PEER_RESPONSES = 'trellis_inbound_peer_response_total';
export const INBOUND_PEER_LATENCY = 'trellis_inbound_peer_response_latency_seconds';
export const OUTBOUND_PEER_RESPONSES = 'trellis_outbound_peer_response_total';
export const OUTBOUND_PEER_LATENCY = 'trellis_outbound_peer_response_latency_seconds';

/**
 * Distinct peers per direction a proxy gives series of their own (then "other"). Lower than the
 * 1,000 of the connection counters: each peer has a latency histogram (24 lines on the page; 1,000
 * peers each way made a 5.3 MB page, near the collector's 8 MB limit), and the control plane keeps
 * every peer of a proxy in its 10-minute history.
 */
export const MAX_PEERS = 250;

/** client_id of a client without a verified identity (plain text). */
export const UNAUTHENTICATED_CLIENT = 'unauthenticated';
/** dst_workload of a target discovery gave no workload for (dst_namespace is then ""). */
export const UNKNOWN_WORKLOAD = 'unknown';
/** client_id, or dst_workload (with dst_namespace ""), of the peers past the proxy's bound. */
export const OVERFLOW_PEER = 'other';
