// The inbound HTTP/2 stream hook (src/proxy/mesh/inbound-h2.ts): the client-identity header is
// the proxy's to set, in the request head and in its trailers (found by the red team: a forged
// value in trailers reached the app); a stream over its rate limit is refused with the gRPC status.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type * as http2 from 'node:http2';
import { inboundStreamHook } from '../../src/proxy/mesh/inbound-h2.ts';
import { InboundPolicy } from '../../src/proxy/mesh/inbound-policy.ts';
import { ProxyMetrics } from '../../src/proxy/telemetry/metrics.ts';
import { silentLogger } from '../../src/core/log.ts';

test('the identity header is replaced in the head and removed from request trailers', () => {
  const metrics = new ProxyMetrics();
  const policy = new InboundPolicy({
    authorizer: null,
    clientIdHeader: 'trellis-client-id',
    metrics,
    log: silentLogger,
  });
  const hook = inboundStreamHook(policy, { metrics, accessLog: null });
  const stream = new EventEmitter() as unknown as http2.ServerHttp2Stream;
  const headers: http2.IncomingHttpHeaders = {
    ':method': 'POST',
    ':path': '/',
    'trellis-client-id': 'spiffe://forged',
  };
  const handled = hook(stream, headers, {
    connTarget: { host: '127.0.0.1', port: 1 },
    identity: 'spiffe://real',
    ip: '127.0.0.1',
  });
  assert.equal(handled, false);
  assert.equal(headers['trellis-client-id'], 'spiffe://real');
  const trailers: http2.IncomingHttpHeaders = { 'trellis-client-id': 'spiffe://forged', 'x-other': 'kept' };
  (stream as unknown as EventEmitter).emit('trailers', trailers);
  assert.deepEqual(trailers, { 'x-other': 'kept' });
});

test('a gRPC stream over its rate limit: trailers-only RESOURCE_EXHAUSTED, rate-limited', () => {
  const metrics = new ProxyMetrics();
  const allowed = { allowed: true, server: 's', policy: 'p', audited: false };
  const policy = new InboundPolicy({
    authorizer: {
      checkConnection: () => allowed,
      checkRequest: () => allowed,
      rateLimit: (_port, identity) => (identity === 'spiffe://greedy' ? 'identity' : null),
      protocolOf: () => 'grpc',
      onChange: () => () => undefined,
      close: () => undefined,
    },
    clientIdHeader: '',
    metrics,
    log: silentLogger,
  });
  const hook = inboundStreamHook(policy, { metrics, accessLog: null });
  const sent: http2.OutgoingHttpHeaders[] = [];
  const stream = Object.assign(new EventEmitter(), {
    endAfterHeaders: true,
    closed: false,
    respond: (h: http2.OutgoingHttpHeaders) => sent.push(h),
    end: () => undefined,
    resume: () => undefined,
    close: () => undefined,
  }) as unknown as http2.ServerHttp2Stream;
  const ask = (identity: string) =>
    hook(
      stream,
      { ':method': 'POST', ':path': '/pkg.Svc/M', 'content-type': 'application/grpc' },
      { connTarget: { host: '127.0.0.1', port: 1 }, identity, ip: '127.0.0.1' },
    );
  assert.equal(ask('spiffe://other'), false);
  assert.equal(ask('spiffe://greedy'), true);
  assert.equal(sent[0]?.[':status'], 200);
  assert.equal(sent[0]?.['grpc-status'], '8');
  assert.equal(sent[0]?.['trellis-proxy-error'], 'rate-limited');
});
