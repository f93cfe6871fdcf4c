// Spans of the requests that are not one plain forward, through real proxies with mTLS: a route
// that retries gives each attempt its own CLIENT span (siblings under the caller's span, retry
// counts 0, 1, ..., each the parent of the SERVER span its attempt reached), HTTP/1 and gRPC, and
// under one INTERNAL request span when the proxy started the trace itself; a sampled request the
// proxy refuses (denied by policy, over a rate limit) still gets its SERVER span, which ends
// with the refusal's status and the trellis-proxy-error reason.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import { writeServiceFile } from '../../src/control/discovery/local-state.ts';
import { writeRouteFile } from '../../src/control/routes/state-files.ts';
import type { Decision, InboundAuthorizer } from '../../src/proxy/policy/types.ts';
import { idOf, identityFor, startMeshWorld } from '../helpers/mesh-pki.ts';
import { portOf } from '../helpers/running-proxy.ts';
import { sendRequest, type Reply } from '../helpers/mesh-echo.ts';
import { startOtlpReceiver, type ReceivedSpan } from '../helpers/otlp-receiver.ts';
import { routesFromYaml } from '../unit/routes-helpers.ts';

const T = '4bf92f3577b34da6a3ce929d0e0e4736';
const P = '00f067aa0ba902b7';
const SAMPLED = { traceparent: `00-${T}-${P}-01` };

const ROUTE = `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: retries, namespace: default }
spec:
  parentRefs: [{ group: "", kind: Service, name: web, port: 8080 }]
  rules:
    - backendRefs: [{ name: web, port: 8080 }]
      retry: { codes: [503], attempts: 2, backoff: 10ms }
`;

/** An app that answers the first hit of each /flaky... path 503, everything else 200. */
async function startApp() {
  const hits = new Map<string, number>();
  const server = http.createServer((req, res) => {
    const path = req.url ?? '';
    const n = (hits.get(path) ?? 0) + 1;
    hits.set(path, n);
    req.resume();
    req.on('end', () => res.writeHead(path.startsWith('/flaky') && n === 1 ? 503 : 200).end('x'));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as { port: number }).port,
    hits,
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}

/** The reason of a refusal's trellis-proxy-error header ("forbidden: default:deny" -> forbidden). */
const reasonOf = (r: Reply) => String(r.headers['trellis-proxy-error']).split(':')[0];

const ofPath = (spans: ReceivedSpan[], path: string, kind: string) =>
  spans.filter((s) => s.attributes['url.path'] === path && s.kind === kind);

/**
 * A caller's proxy and web's (app: startApp) over mTLS, ROUTE in force, both exporting to an OTLP
 * receiver; the caller's proxy starts a trace for `callerRatio` of the requests without one.
 */
async function retryingMesh(t: { after(fn: () => unknown): void }, callerRatio: number) {
  const receiver = await startOtlpReceiver();
  t.after(() => receiver.close());
  const world = await startMeshWorld();
  t.after(() => world.close());
  const app = await startApp();
  t.after(() => app.close());
  const tracing = (sampleRatio: number) => ({
    tracing: { collector: receiver.url, sampleRatio, batchDelayMs: 20 },
  });
  const server = await world.proxy({
    identity: await identityFor(world, 'web'),
    app: app.port,
    config: { ...tracing(0), workload: { name: 'web', namespace: 'default' } },
  });
  await world.register('web', 'web-1', portOf(server, 'inbound'), idOf('web'));
  for (const route of routesFromYaml(ROUTE, Date.now())) await writeRouteFile(world.root, route);
  await world.rescanRoutes();
  const client = await world.proxy({
    identity: await identityFor(world, 'caller'),
    config: tracing(callerRatio),
  });
  const out = portOf(client, 'outbound');
  // The route is in force once a first failure is retried.
  const deadline = Date.now() + 20_000;
  let warm: Reply;
  let n = 0;
  do warm = await sendRequest(out, `http://web.default:8080/flaky-warm-${n++}`);
  while (warm.status !== 200 && Date.now() < deadline);
  assert.equal(warm.status, 200);
  return { receiver, app, out };
}

test(
  'a retried request: one CLIENT span per attempt, each the parent of its SERVER span',
  { timeout: 120_000 },
  async (t) => {
    const { receiver, app, out } = await retryingMesh(t, 0);

    const r = await sendRequest(out, 'http://web.default:8080/flaky', { headers: SAMPLED });
    assert.equal(r.status, 200);
    assert.equal(app.hits.get('/flaky'), 2);
    const spans = await receiver.waitFor(
      (s) =>
        ofPath(s, '/flaky', 'SPAN_KIND_CLIENT').length >= 2 &&
        ofPath(s, '/flaky', 'SPAN_KIND_SERVER').length >= 2,
    );
    await new Promise((done) => setTimeout(done, 200)); // nothing more comes
    const clients = ofPath(receiver.spans, '/flaky', 'SPAN_KIND_CLIENT').sort(
      (a, b) => Number(a.attributes['trellis.retry_count']) - Number(b.attributes['trellis.retry_count']),
    );
    const servers = ofPath(spans, '/flaky', 'SPAN_KIND_SERVER');
    assert.equal(clients.length, 2, 'one CLIENT span per attempt');
    assert.equal(servers.length, 2);
    const [first, second] = clients as [ReceivedSpan, ReceivedSpan];
    for (const c of clients) {
      assert.equal(c.traceId, T);
      assert.equal(c.parentSpanId, P, "every attempt is a child of the caller's span");
    }
    assert.notEqual(first.spanId, second.spanId);
    assert.equal(first.attributes['trellis.retry_count'], 0);
    assert.equal(second.attributes['trellis.retry_count'], 1);
    assert.equal(second.attributes['http.request.resend_count'], 1);
    assert.equal(first.attributes['http.response.status_code'], 503);
    assert.equal(first.status.code, 'STATUS_CODE_ERROR');
    assert.equal(second.attributes['http.response.status_code'], 200);
    assert.equal(second.status.code, 'STATUS_CODE_UNSET');
    assert.ok(second.startNanos >= first.endNanos, 'the retry starts after the failed attempt ended');
    // Each attempt reached the server proxy carrying its own span as the parent.
    assert.deepEqual(servers.map((s) => s.parentSpanId).sort(), [first.spanId, second.spanId].sort());
    const byParent = new Map(servers.map((s) => [s.parentSpanId, s]));
    assert.equal(byParent.get(first.spanId)!.attributes['http.response.status_code'], 503);
    assert.equal(byParent.get(second.spanId)!.attributes['http.response.status_code'], 200);
  },
);

/** An authorizer that admits connections and decides requests by path: /denied is refused. */
function pathAuthorizer(limited: () => boolean): InboundAuthorizer {
  const decision = (allowed: boolean): Decision => ({
    allowed,
    server: 'default/web',
    policy: allowed ? 'default/open' : 'default:deny',
    audited: false,
  });
  return {
    checkConnection: () => decision(true),
    checkRequest: (_port, _peer, request) => decision(!request.path.startsWith('/denied')),
    rateLimit: () => (limited() ? 'total' : null),
    protocolOf: () => null,
    onChange: () => () => {},
    close() {},
  };
}

test(
  'a sampled request the proxy refuses gets its SERVER span, with the status and the reason',
  { timeout: 120_000 },
  async (t) => {
    const receiver = await startOtlpReceiver();
    t.after(() => receiver.close());
    const world = await startMeshWorld();
    t.after(() => world.close());
    const app = await startApp();
    t.after(() => app.close());
    let limited = false;
    const server = await world.proxy({
      identity: await identityFor(world, 'web'),
      app: app.port,
      authorizer: pathAuthorizer(() => limited),
      config: {
        tracing: { collector: receiver.url, sampleRatio: 0, batchDelayMs: 20 },
        workload: { name: 'web', namespace: 'default' },
      },
    });
    await world.register('web', 'web-1', portOf(server, 'inbound'), idOf('web'));
    const client = await world.proxy({ identity: await identityFor(world, 'caller') });
    const out = portOf(client, 'outbound');
    const inbound = portOf(server, 'inbound');

    const refusedSpan = async (path: string) => {
      const [s] = await receiver.waitFor((spans) => ofPath(spans, path, 'SPAN_KIND_SERVER').length > 0);
      return ofPath(receiver.spans, path, 'SPAN_KIND_SERVER')[0] ?? s!;
    };

    // Over the mesh (mTLS, the HTTP/1-over-HTTP/2 inbound).
    const denied = await sendRequest(out, 'http://web.default:8080/denied/mesh', { headers: SAMPLED });
    assert.equal(denied.status, 403);
    {
      const s = await refusedSpan('/denied/mesh');
      assert.equal(s.traceId, T);
      assert.equal(s.attributes['http.response.status_code'], 403);
      assert.equal(s.attributes['trellis.proxy_error'], reasonOf(denied));
      assert.equal(s.status.code, 'STATUS_CODE_ERROR');
      assert.equal(s.attributes['trellis.client.identity'], idOf('caller'));
    }
    // Plain HTTP/1 to the inbound listener.
    const plain = await sendRequest(inbound, '/denied/plain', { headers: SAMPLED });
    assert.equal(plain.status, 403);
    {
      const s = await refusedSpan('/denied/plain');
      assert.equal(s.traceId, T);
      assert.equal(s.parentSpanId, P);
      assert.equal(s.attributes['http.response.status_code'], 403);
      assert.equal(s.attributes['trellis.proxy_error'], reasonOf(plain));
    }
    // Over the rate limit: 429.
    limited = true;
    const over = await sendRequest(out, 'http://web.default:8080/limited', { headers: SAMPLED });
    assert.equal(over.status, 429);
    {
      const s = await refusedSpan('/limited');
      assert.equal(s.attributes['http.response.status_code'], 429);
      assert.equal(s.attributes['trellis.proxy_error'], reasonOf(over));
    }
    limited = false;
    // An unsampled refused request makes no span.
    const unsampled = await sendRequest(out, 'http://web.default:8080/denied/unsampled', {
      headers: { traceparent: `00-${T}-${P}-00` },
    });
    assert.equal(unsampled.status, 403);
    await new Promise((done) => setTimeout(done, 300));
    assert.equal(ofPath(receiver.spans, '/denied/unsampled', 'SPAN_KIND_SERVER').length, 0);
    assert.equal(app.hits.size, 0, 'nothing refused reached the app');
  },
);

/** A gRPC app whose first call of each path answers trailers-only UNAVAILABLE, the next OK. */
async function startGrpcApp() {
  const hits = new Map<string, number>();
  const server = http2.createServer();
  server.on('stream', (stream, headers) => {
    const path = String(headers[':path']);
    const n = (hits.get(path) ?? 0) + 1;
    hits.set(path, n);
    stream.resume();
    stream.on('end', () => {
      if (n === 1) {
        stream.respond(
          { ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '14' },
          { endStream: true },
        );
        return;
      }
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(Buffer.from([0, 0, 0, 0, 0]));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as { port: number }).port, hits, close: () => server.close() };
}

/** One unary gRPC call; resolves with its grpc-status. */
function grpcCall(port: number, path: string, headers: Record<string, string> = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', reject);
    const req = session.request({
      ':method': 'POST',
      ':path': path,
      'content-type': 'application/grpc',
      te: 'trailers',
      ...headers,
    });
    let status = '';
    req.on('response', (h) => (status = String(h['grpc-status'] ?? status)));
    req.on('trailers', (h) => (status = String(h['grpc-status'] ?? status)));
    req.on('error', reject);
    req.resume();
    req.on('close', () => {
      session.close();
      resolve(status);
    });
    req.end(Buffer.from([0, 0, 0, 0, 0]));
  });
}

test('a retried gRPC call: one CLIENT span per attempt, over HTTP/2', { timeout: 120_000 }, async (t) => {
  const receiver = await startOtlpReceiver();
  t.after(() => receiver.close());
  const world = await startMeshWorld();
  t.after(() => world.close());
  const app = await startGrpcApp();
  t.after(() => app.close());
  const tracing = { tracing: { collector: receiver.url, sampleRatio: 0, batchDelayMs: 20 } };
  const server = await world.proxy({
    identity: await identityFor(world, 'grpc'),
    app: app.port,
    config: tracing,
  });
  await world.register('grpc', 'grpc-1', portOf(server, 'inbound'), idOf('grpc'));
  await writeServiceFile(world.root, 'default', 'grpc', {
    ports: [{ port: 8080, targetPort: 'http' }],
    annotations: { 'retry.trellis.io/grpc': 'unavailable' },
  });
  await world.rescanRoutes();
  const client = await world.proxy({
    identity: await identityFor(world, 'caller'),
    config: {
      ...tracing,
      destinations: [{ listen: '127.0.0.1:0', target: 'grpc.default:8080', protocol: 'h2' }],
    },
  });
  const bound = portOf(client, 'destination-0');
  // The annotation is in force once a first failure is retried.
  const deadline = Date.now() + 20_000;
  let i = 0;
  while ((await grpcCall(bound, `/t.Echo/Warm${i++}`)) !== '0' && Date.now() < deadline)
    await new Promise((done) => setTimeout(done, 200));

  assert.equal(await grpcCall(bound, '/t.Echo/Traced', SAMPLED), '0');
  assert.equal(app.hits.get('/t.Echo/Traced'), 2);
  const spans = await receiver.waitFor((s) => ofPath(s, '/t.Echo/Traced', 'SPAN_KIND_CLIENT').length >= 2);
  await new Promise((done) => setTimeout(done, 200)); // nothing more comes
  const clients = ofPath(receiver.spans, '/t.Echo/Traced', 'SPAN_KIND_CLIENT');
  assert.equal(clients.length, 2, 'one CLIENT span per attempt');
  assert.deepEqual(clients.map((c) => c.attributes['trellis.retry_count']).sort(), [0, 1]);
  for (const c of clients) {
    assert.equal(c.traceId, T);
    assert.equal(c.parentSpanId, P);
    assert.equal(c.attributes['url.path'], '/t.Echo/Traced');
  }
  assert.notEqual(clients[0]!.spanId, clients[1]!.spanId);
  const servers = ofPath(spans.length > 0 ? receiver.spans : spans, '/t.Echo/Traced', 'SPAN_KIND_SERVER');
  assert.deepEqual(
    servers.map((s) => s.parentSpanId).sort(),
    clients.map((c) => c.spanId).sort(),
    'each attempt reached the server carrying its own span',
  );
});

test(
  'a retried request without trace context: the proxy starts one trace, every attempt in it',
  { timeout: 120_000 },
  async (t) => {
    // The caller's proxy starts a trace for every request that comes without one.
    const { receiver, app, out } = await retryingMesh(t, 1);

    const r = await sendRequest(out, 'http://web.default:8080/flaky-root');
    assert.equal(r.status, 200);
    assert.equal(app.hits.get('/flaky-root'), 2);
    await receiver.waitFor(
      (s) =>
        ofPath(s, '/flaky-root', 'SPAN_KIND_CLIENT').length >= 2 &&
        ofPath(s, '/flaky-root', 'SPAN_KIND_SERVER').length >= 2,
    );
    await new Promise((done) => setTimeout(done, 300)); // nothing more comes
    const all = receiver.spans.filter((s) => s.attributes['url.path'] === '/flaky-root');
    const clients = ofPath(all, '/flaky-root', 'SPAN_KIND_CLIENT');
    const servers = ofPath(all, '/flaky-root', 'SPAN_KIND_SERVER');
    assert.equal(new Set(all.map((s) => s.traceId)).size, 1, 'one trace');
    assert.equal(clients.length, 2, 'one CLIENT span per attempt');
    assert.equal(servers.length, 2);
    // One root: the request's own span, the common parent of its attempts (a span the proxy makes
    // because the trace starts here and there is no caller's span to be the siblings' parent).
    const roots = all.filter((s) => s.parentSpanId === '');
    assert.equal(roots.length, 1, 'one root span');
    const root = roots[0]!;
    assert.equal(root.kind, 'SPAN_KIND_INTERNAL');
    assert.equal(root.attributes['http.response.status_code'], 200);
    assert.equal(root.attributes['trellis.retry_count'], 1);
    assert.equal(root.status.code, 'STATUS_CODE_UNSET');
    const [first, second] = clients.sort(
      (a, b) => Number(a.attributes['trellis.retry_count']) - Number(b.attributes['trellis.retry_count']),
    ) as [ReceivedSpan, ReceivedSpan];
    for (const c of clients) {
      assert.equal(c.parentSpanId, root.spanId, 'every attempt is a child of the request span');
      assert.equal(c.flags & 0x300, 0x100, "the attempts' parent is local (has_is_remote, not remote)");
    }
    assert.equal(first.attributes['trellis.retry_count'], 0);
    assert.equal(first.attributes['http.response.status_code'], 503);
    assert.equal(second.attributes['trellis.retry_count'], 1);
    assert.ok(root.startNanos <= first.startNanos && root.endNanos >= second.endNanos);
    assert.deepEqual(servers.map((s) => s.parentSpanId).sort(), [first.spanId, second.spanId].sort());
  },
);
