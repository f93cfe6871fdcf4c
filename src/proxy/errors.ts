// The reasons a proxy answers or closes a request itself. Each one appears in the
// `trellis-proxy-error` response header and as the `reason` label of trellis_proxy_errors_total,
// so the set is closed: label values never come from request input.
import { TrellisError } from '../core/errors.ts';

export const PROXY_ERROR_REASONS = [
  'bad-request', // malformed or ambiguous HTTP/1 request (400)
  'request-header-too-large', // request line or headers over the configured limits (431/414)
  'unknown-destination', // nothing says where the request should go (400)
  'no-endpoints', // a service the control plane knows has no endpoints (503)
  'connect-failed', // the upstream refused or was unreachable (502)
  'connect-timeout', // connecting to the upstream took too long (504)
  'upstream-reset', // the upstream closed or reset before a whole response (502)
  'upstream-bad-response', // the upstream's response could not be parsed unambiguously (502)
  'response-timeout', // the upstream did not answer in time (504)
  'idle-timeout', // a connection stayed idle too long (closed, no response)
  'detect-timeout', // protocol detection saw no bytes in time (connection handled as opaque)
  'shutting-down', // the proxy is draining (503)
  'loop-detected', // the request would be sent to the proxy itself (508)
  'h2-protocol-error', // an HTTP/2 peer broke the protocol (stream or connection reset)
  'identity-mismatch', // a meshed endpoint's certificate names another identity than discovery said (502)
  'tls-handshake-failed', // the mTLS handshake with a meshed peer failed (502; inbound: closed)
  'no-identity', // the proxy's own certificate did not arrive within the connect timeout (503)
  'forbidden', // inbound authorization policy denied the request or connection (403; TCP: closed)
  'proxy-request-refused', // inbound: a CONNECT or other request to relay elsewhere; inbound forwards only to its app (403)
  'upstream-busy', // the upstream's connection limit is reached and its wait queue full, or the wait too long (503)
  // Discovery (src/proxy/outbound/discovery.ts):
  'control-plane-unreachable', // a mesh name with no known endpoints while the control plane is unreachable (503)
  'unknown-port', // a service asked for on a port it does not have; the answer lists its ports (400)
  // Circuit breaking (src/proxy/balance/backend-guard.ts):
  'all-endpoints-tripped', // every endpoint of the backend is tripped by its failure accrual (503)
  'overflow', // the backend's max-pending-requests or an endpoint's max-connections is reached (503)
  // Routes (src/proxy/outbound/routes.ts):
  'route-not-found', // routes are attached to the service and no rule matches the request (404)
  'backend-not-found', // the matched rule's backend does not exist, or none has weight (500)
  'route-unsupported', // the matched rule uses a filter Trellis does not implement (500)
  'request-timeout', // the route's timeouts.request passed before the response (504)
  'backend-request-timeout', // the route's timeouts.backendRequest passed before the backend answered (504)
  // Faults and rate limits (src/core/routes/fault.ts, src/proxy/policy/rate-limit.ts):
  'fault-injected', // a route rule's HTTPFault aborted the request (the fault's status; 503 by default)
  'rate-limited', // inbound: an HTTPLocalRateLimitPolicy's limit is over (429)
  // src/proxy/fault.ts:
  'internal-error', // a fault of the proxy's own code: only the connection or stream it happened on is closed (500)
] as const;

/** Why a connection to an upstream could not be made (plain or mesh). */
export type ConnectFailureReason =
  'connect-failed' | 'connect-timeout' | 'identity-mismatch' | 'tls-handshake-failed' | 'no-identity';

export type ProxyErrorReason = (typeof PROXY_ERROR_REASONS)[number];

export const PROXY_ERROR_HEADER = 'trellis-proxy-error';

/** The HTTP status the proxy answers with for a reason (when it can still answer). */
export function statusForReason(reason: ProxyErrorReason): number {
  switch (reason) {
    case 'bad-request':
    case 'unknown-destination':
    case 'unknown-port':
      return 400;
    case 'request-header-too-large':
      return 431;
    case 'connect-failed':
    case 'upstream-reset':
    case 'upstream-bad-response':
    case 'h2-protocol-error':
    case 'identity-mismatch':
    case 'tls-handshake-failed':
      return 502;
    case 'connect-timeout':
    case 'response-timeout':
    case 'request-timeout':
    case 'backend-request-timeout':
      return 504;
    case 'route-not-found':
      return 404;
    case 'backend-not-found':
    case 'route-unsupported':
      return 500;
    case 'internal-error':
      return 500;
    case 'shutting-down':
    case 'no-endpoints':
    case 'idle-timeout':
    case 'detect-timeout':
    case 'no-identity':
    case 'upstream-busy':
    case 'control-plane-unreachable':
    case 'all-endpoints-tripped':
    case 'overflow':
      return 503;
    case 'forbidden':
    case 'proxy-request-refused':
      return 403;
    case 'loop-detected':
      return 508;
    case 'fault-injected':
      return 503;
    case 'rate-limited':
      return 429;
  }
}

/** Connecting to an upstream failed: `reason` is the proxy error reason to report. */
export class UpstreamConnectError extends TrellisError {
  readonly reason: ConnectFailureReason;
  constructor(reason: ConnectFailureReason, message: string, cause?: unknown) {
    super(`TRELLIS_ERR_${reason.toUpperCase().replaceAll('-', '_')}`, message, { cause });
    this.name = 'UpstreamConnectError';
    this.reason = reason;
  }
}
