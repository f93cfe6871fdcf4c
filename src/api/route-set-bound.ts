// How many bytes one trellis.route.v1 RouteSet (route.proto) may take, one fact for both ends:
// the proxy's watch (src/proxy/route/watch-client.ts) refuses a larger message, and the control
// plane (src/control/routes/route-bound.ts) sends at most ROUTE_SET_ROUTE_BYTES of routes, of the
// HTTPFaults they name and of their unresolved backends, leaving the rest for the Service's
// traffic annotations and framing (the API server holds at most 256 KiB of annotations per
// object; `trellis apply` takes only the known names, each value at most 1,024 characters). A
// route beyond the bound is not sent and says so in its status (RouteSetTooLarge).
//
// The receive limit is grpc-js's default, written out: a proxy of an older release (which has
// that default) takes every set a control plane of this release sends.

/** The largest RouteSet message the proxy accepts. */
export const ROUTE_SET_MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

/** The bytes of routes (with their faults and unresolved backends) the control plane puts in one RouteSet. */
export const ROUTE_SET_ROUTE_BYTES = ROUTE_SET_MAX_MESSAGE_BYTES - 1024 * 1024;
