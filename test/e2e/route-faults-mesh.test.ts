// Fault injection on the data path (src/core/routes/fault.ts, outbound/routes.ts): HTTPRoute and
// GRPCRoute rules that name an HTTPFault through ExtensionRef, served by the control plane's
// Routes API from the state folder, through real proxies with mTLS. An abort of 100% answers
// every request with the fault's status and `trellis-proxy-error: fault-injected` and the backend
// never sees one; 50% aborts about half; a delay holds the request at least its time; a delay
// longer than timeouts.request ends in 504; an ExtensionRef naming no HTTPFault answers 500 as
// before; a gRPC abort is a trailers-only answer with the fault's grpc-status.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import { parse } from 'yaml';
import { validateFault } from '../../src/core/routes/fault.ts';
import { writeRouteFile } from '../../src/control/routes/state-files.ts';
import { idOf, identityFor, startMeshWorld } from '../helpers/mesh-pki.ts';
import { grpcCall, proxiedRequest } from '../helpers/mesh-echo.ts';
import { metric, portOf } from '../helpers/running-proxy.ts';
import { routesFromYaml } from '../unit/routes-helpers.ts';

/** An app that answers 200 "ok" (HTTP/1, or gRPC over HTTP/2) and counts what it sees. */
async function startApp(h2 = false): Promise<{ port: number; seen: () => number; close(): void }> {
  let seen = 0;
  const server = h2
    ? http2.createServer().on('stream', (stream) => {
        seen++;
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
        stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
        stream.end();
        stream.resume();
      })
    : http.createServer((req, res) => {
        seen++;
        req.resume();
        res.end('ok');
      });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as { port: number }).port,
    seen: () => seen,
    close: () => server.close(),
  };
}

const FAULTS = `
apiVersion: traffic.trellis.dev/v1alpha1
kind: HTTPFault
metadata: { name: abort-all, namespace: default }
spec: { abort: { httpStatus: 503 } }
---
apiVersion: traffic.trellis.dev/v1alpha1
kind: HTTPFault
metadata: { name: abort-half, namespace: default }
spec: { abort: { httpStatus: 500, percentage: 50 } }
---
apiVersion: traffic.trellis.dev/v1alpha1
kind: HTTPFault
metadata: { name: slow, namespace: default }
spec: { delay: { fixedDelay: 400ms } }
---
apiVersion: traffic.trellis.dev/v1alpha1
kind: HTTPFault
metadata: { name: grpc-down, namespace: default }
spec: { abort: { grpcStatus: RESOURCE_EXHAUSTED } }
`;

const ref = (name: string) =>
  `[{ type: ExtensionRef, extensionRef: { group: traffic.trellis.dev, kind: HTTPFault, name: ${name} } }]`;

const ROUTES = `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: faults, namespace: default }
spec:
  parentRefs: [{ group: "", kind: Service, name: web, port: 8080 }]
  rules:
    - matches: [{ path: { type: PathPrefix, value: /abort } }]
      filters: ${ref('abort-all')}
      backendRefs: [{ name: web, port: 8080 }]
    - matches: [{ path: { type: PathPrefix, value: /half } }]
      filters: ${ref('abort-half')}
      backendRefs: [{ name: web, port: 8080 }]
    - matches: [{ path: { type: PathPrefix, value: /slow } }]
      filters: ${ref('slow')}
      backendRefs: [{ name: web, port: 8080 }]
    - matches: [{ path: { type: PathPrefix, value: /too-slow } }]
      timeouts: { request: 150ms }
      filters: ${ref('slow')}
      backendRefs: [{ name: web, port: 8080 }]
    - matches: [{ path: { type: PathPrefix, value: /missing } }]
      filters: ${ref('nosuch')}
      backendRefs: [{ name: web, port: 8080 }]
    - matches: [{ path: { type: PathPrefix, value: /ok } }]
      backendRefs: [{ name: web, port: 8080 }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: { name: grpc-faults, namespace: default }
spec:
  parentRefs: [{ group: "", kind: Service, name: grpc, port: 8080 }]
  rules:
    - matches: [{ method: { service: trellis.test.Echo, method: Down } }]
      filters: ${ref('grpc-down')}
      backendRefs: [{ name: grpc, port: 8080 }]
    - matches: [{ method: { service: trellis.test.Echo, method: Slow } }]
      filters: ${ref('slow')}
      backendRefs: [{ name: grpc, port: 8080 }]
    - backendRefs: [{ name: grpc, port: 8080 }]
`;

test('HTTPFaults abort and delay routed requests on the client proxy', { timeout: 120_000 }, async (t) => {
  const world = await startMeshWorld();
  t.after(() => world.close());
  const app = await startApp();
  const grpcApp = await startApp(true);
  t.after(() => {
    app.close();
    grpcApp.close();
  });
  const server = await world.proxy({ identity: await identityFor(world, 'web'), app: app.port });
  const grpcServer = await world.proxy({ identity: await identityFor(world, 'grpc'), app: grpcApp.port });
  await world.register('web', 'web-1', portOf(server, 'inbound'), idOf('web'));
  await world.register('grpc', 'grpc-1', portOf(grpcServer, 'inbound'), idOf('grpc'));
  for (const doc of FAULTS.split(/^---$/m)) {
    const { fault } = validateFault(parse(doc));
    assert.ok(fault !== null);
    await writeRouteFile(world.root, fault);
  }
  for (const route of routesFromYaml(ROUTES, Date.now())) await writeRouteFile(world.root, route);
  await world.rescanRoutes();

  const client = await world.proxy({
    identity: await identityFor(world, 'caller'),
    config: { destinations: [{ listen: '127.0.0.1:0', target: 'grpc.default:8080', protocol: 'h2' }] },
  });
  const out = portOf(client, 'outbound');
  const ask = (path: string) => proxiedRequest(out, 'web.default:8080', path);

  // Until the proxy has the routes (its first request waits for them; the files may come later).
  const deadline = Date.now() + 20_000;
  let first = await ask('/abort');
  while (first.status !== 503 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 200));
    first = await ask('/abort');
  }

  await t.test('abort 100%: every request 503 fault-injected, the backend sees none', async () => {
    const before = app.seen();
    const faults = metric(client, 'trellis_route_faults_total', { kind: 'abort' });
    for (let i = 0; i < 20; i++) {
      const r = await ask(`/abort/${i}`);
      assert.equal(r.status, 503);
      assert.equal(r.headers['trellis-proxy-error'], 'fault-injected');
    }
    assert.equal(app.seen(), before);
    assert.equal(metric(client, 'trellis_route_faults_total', { kind: 'abort' }), faults + 20);
    // The same backend is reached through a rule without a fault.
    assert.equal((await ask('/ok')).status, 200);
    assert.equal(app.seen(), before + 1);
  });

  await t.test('abort 50%: about half of 300 requests, the rest reach the backend', async () => {
    const before = app.seen();
    let aborted = 0;
    const n = 300;
    for (let i = 0; i < n; i++) {
      const r = await ask('/half');
      if (r.status === 500) {
        assert.equal(r.headers['trellis-proxy-error'], 'fault-injected');
        aborted++;
      } else assert.equal(r.status, 200);
    }
    // Binomial(300, 0.5): sd ~ 8.7; 5 sd either side.
    assert.ok(Math.abs(aborted - n / 2) <= 44, `aborted ${aborted} of ${n}`);
    assert.equal(app.seen() - before, n - aborted);
  });

  await t.test('delay: the response comes after at least the delay, from the backend', async () => {
    const started = performance.now();
    const r = await ask('/slow');
    const took = performance.now() - started;
    assert.equal(r.status, 200);
    assert.equal(r.body, 'ok');
    assert.ok(took >= 400, `answered after ${took} ms`);
  });

  await t.test('a delay longer than timeouts.request: 504 request-timeout, never forwarded', async () => {
    const before = app.seen();
    const r = await ask('/too-slow');
    assert.equal(r.status, 504);
    assert.equal(r.headers['trellis-proxy-error'], 'request-timeout');
    assert.equal(app.seen(), before);
  });

  await t.test('an ExtensionRef naming no HTTPFault: 500 route-unsupported, as before', async () => {
    const r = await ask('/missing');
    assert.equal(r.status, 500);
    assert.equal(r.headers['trellis-proxy-error'], 'route-unsupported');
  });

  await t.test('a client that goes away during a delay: the request is never forwarded', async () => {
    const before = app.seen();
    await new Promise<void>((resolve) => {
      const req = http.request({
        host: '127.0.0.1',
        port: out,
        path: 'http://web.default:8080/slow',
        agent: false,
      });
      req.on('error', () => resolve());
      req.end();
      // A reset, not a FIN: a half-closed HTTP/1 client still gets its response.
      setTimeout(() => {
        req.socket?.resetAndDestroy();
        resolve();
      }, 100);
    });
    await new Promise((r) => setTimeout(r, 600));
    assert.equal(app.seen(), before);
  });

  const bound = portOf(client, 'destination-0');
  const session = http2.connect(`http://127.0.0.1:${bound}`);
  t.after(() => session.close());
  const h2Call = async (path: string) => (await grpcCall(session, path)).headers;
  await t.test('gRPC: an abort is a trailers-only answer with the fault grpc-status', async () => {
    const before = grpcApp.seen();
    const r = await h2Call('/trellis.test.Echo/Down');
    assert.equal(r[':status'], '200');
    assert.equal(r['grpc-status'], '8');
    assert.equal(r['trellis-proxy-error'], 'fault-injected');
    assert.equal(grpcApp.seen(), before);
    const ok = await h2Call('/trellis.test.Echo/Up');
    assert.equal(ok['grpc-status'], '0');
  });

  await t.test('gRPC: a delay holds the stream, then it reaches the backend', async () => {
    const started = performance.now();
    const r = await h2Call('/trellis.test.Echo/Slow');
    assert.ok(performance.now() - started >= 400);
    assert.equal(r['grpc-status'], '0');
  });

  await t.test('gRPC: a stream cancelled during a delay is never forwarded', async () => {
    const before = grpcApp.seen();
    const session = http2.connect(`http://127.0.0.1:${bound}`);
    session.on('error', () => undefined);
    const req = session.request({
      ':method': 'POST',
      ':path': '/trellis.test.Echo/Slow',
      'content-type': 'application/grpc',
      te: 'trailers',
    });
    req.on('error', () => undefined);
    req.end();
    await new Promise((r) => setTimeout(r, 100));
    req.close(http2.constants.NGHTTP2_CANCEL);
    await new Promise((r) => setTimeout(r, 600));
    session.close();
    assert.equal(grpcApp.seen(), before);
  });
});
