// The names of the proxy's per-route metric families and of their labels (the Gateway API's
// parent, route and backend, as Linkerd's outbound_http_route_* families name them): the proxy
// writes them (src/proxy/telemetry/route-metrics.ts), the control plane's collector reads them
// for `trellis routes` (src/control/metrics/route-snapshot.ts).

export const ROUTE_REQUESTS = 'trellis_route_requests_total';
export const ROUTE_DURATION = 'trellis_route_request_duration_seconds';
export const ROUTE_RETRIES = 'trellis_route_retries_total';

/** The labels of every route series, in order (the families add `outcome`). */
export const ROUTE_LABELS = [
  'parent_namespace',
  'parent_name',
  'parent_port',
  'route_kind',
  'route_namespace',
  'route_name',
  'backend_namespace',
  'backend_name',
  'backend_port',
] as const;
