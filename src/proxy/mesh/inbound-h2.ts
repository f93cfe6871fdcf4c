// What the inbound HTTP/2 path does with each stream before the usual forwarding
// (http/h2-exchange.ts): the client-identity header is removed as sent and set to the verified
// identity (mTLS) when there is one; authorization policy is asked (denied: 403, or gRPC
// PERMISSION_DENIED, naming the policy); CONNECT is refused (403 proxy-request-refused), as on
// HTTP/1. Plaintext HTTP/2 to the inbound listener takes the same
// path with no identity. (HTTP/1 requests from other proxies arrive on their own connections:
// inbound-h2h1.ts.)
import type * as http2 from 'node:http2';
import { refuseStream, type RefusalRecords } from '../http/h2-refuse.ts';
import type { InboundPolicy } from './inbound-policy.ts';
import { refusalReason, type InboundStreamHook } from '../policy/inbound-hooks.ts';
import { deleteClientIdFields } from '../policy/client-id-field.ts';
import { forwardedAddress, forwardHeadersFor } from '../inbound/forwarded-for.ts';

export function inboundStreamHook(policy: InboundPolicy, records: RefusalRecords): InboundStreamHook {
  const idHeader = policy.clientIdHeader;
  return (stream, headers, conn) => {
    if (idHeader !== '') {
      deleteClientIdFields(headers, idHeader);
      if (conn.identity !== null) headers[idHeader] = conn.identity;
      // In trailers too: the forwarder sends the trailers object this listener has cleaned.
      stream.once('trailers', (trailers: http2.IncomingHttpHeaders) =>
        deleteClientIdFields(trailers, idHeader),
      );
    }
    if (policy.appendForwardedFor) forwardHeadersFor(headers, forwardedAddress(conn.ip));
    if (headers[':method'] === 'CONNECT') {
      // The inbound listener relays nothing (as HTTP/1's CONNECT, http/h1-tunnel.ts): an app that
      // honoured it would open a tunnel for anyone who reaches the workload.
      const message = 'CONNECT is not relayed by an inbound listener';
      refuseStream(
        stream,
        headers,
        { reason: 'proxy-request-refused', message },
        records,
        'inbound',
        conn.identity ?? conn.ip,
        records.metrics.peers.inbound(conn.identity),
      );
      return true;
    }
    const target = conn.connTarget;
    if (target !== null) {
      const denied = policy.checkRequest(
        target.port,
        conn.identity,
        conn.ip,
        String(headers[':method'] ?? ''),
        String(headers[':path'] ?? ''),
      );
      if (denied !== null) {
        // 403 (gRPC: PERMISSION_DENIED in a trailers-only response), naming the policy that decided;
        // 429 (gRPC: RESOURCE_EXHAUSTED) over a rate limit.
        refuseStream(
          stream,
          headers,
          { reason: refusalReason(denied), message: denied, headerValue: denied },
          records,
          'inbound',
          conn.identity ?? conn.ip,
          records.metrics.peers.inbound(conn.identity),
        );
        return true;
      }
    }
    return false;
  };
}
