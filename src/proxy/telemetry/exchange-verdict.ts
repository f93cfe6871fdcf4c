// Whether a finished exchange counts as a failure, the one rule of every family that classifies
// exchanges (trellis_response_total, the route series, the per-peer series): the exchange's own
// verdict (`failed`: a transport error, a failing grpc-status), no valid status (0: none was
// sent), or a 5xx.
export function isFailedExchange(status: number, failed: boolean): boolean {
  return failed || !(Number.isInteger(status) && status >= 100 && status < 500);
}
