// Attacks on traffic management through a real HTTP/2 forwarder (src/proxy/http/h2-exchange.ts,
// in-process, test/fixtures/grpc-proxy-harness.ts) and a real app on loopback.
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { test } from 'node:test';
import { startProxyHarness } from '../fixtures/grpc-proxy-harness.ts';

/** A gRPC app that answers OK `delayMs` after a call's end, recording the grpc-timeout it got. */
async function startSlowGrpcApp(delayMs: number) {
  const deadlines: string[] = [];
  const server = http2.createServer();
  server.on('stream', (stream, headers) => {
    deadlines.push(String(headers['grpc-timeout']));
    stream.resume();
    stream.on('end', () => {
      const timer = setTimeout(() => {
        if (stream.destroyed) return;
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
        stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
        stream.end(Buffer.from([0, 0, 0, 0, 0]));
      }, delayMs);
      stream.once('close', () => clearTimeout(timer));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as { port: number }).port,
    deadlines,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

/** One unary gRPC call through `address`: the status (from the head or the trailers) and what the proxy said. */
async function grpcCall(address: string, headers: Record<string, string>): Promise<Record<string, string>> {
  const session = http2.connect(`http://${address}`);
  session.on('error', () => {});
  try {
    return await new Promise((resolve, reject) => {
      const req = session.request({
        ':method': 'POST',
        ':path': '/trellis.test.Echo/Call',
        'content-type': 'application/grpc',
        te: 'trailers',
        ...headers,
      });
      const seen: Record<string, string> = {};
      req.on('response', (h) => {
        for (const [k, v] of Object.entries(h)) seen[k] = String(v);
      });
      req.on('trailers', (h) => {
        for (const [k, v] of Object.entries(h)) seen[k] = String(v);
      });
      req.resume();
      req.on('end', () => resolve(seen));
      req.on('error', reject);
      req.end(Buffer.from([0, 0, 0, 0, 0]));
    });
  } finally {
    session.close();
  }
}

test('a grpc-timeout longer than a Node timer holds (720H, 99999999S) is a long deadline, not an instant one', async (t) => {
  const app = await startSlowGrpcApp(100);
  t.after(() => app.close());
  const proxy = await startProxyHarness({ connTarget: { host: '127.0.0.1', port: app.port } });
  t.after(() => proxy.close());
  for (const deadline of ['720H', '99999999S', '3000000S']) {
    const answer = await grpcCall(proxy.address, { 'grpc-timeout': deadline });
    assert.equal(answer['grpc-status'], '0', `${deadline}: ${JSON.stringify(answer)}`);
  }
  // Each was sent on with what was left of it (whole seconds past 8 digits of milliseconds).
  assert.equal(app.deadlines.length, 3);
  for (const sent of app.deadlines) assert.match(sent, /^[0-9]{1,8}S$/);
});
