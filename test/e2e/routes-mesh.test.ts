// Gateway API routes on the data path (src/proxy/outbound/routes.ts, h1-session.ts): a client
// proxy routes HTTP/1 requests to a Service by the HTTPRoute attached to it, served by the
// control plane's Routes API from the state folder. Path matches with the spec's precedence, a
// weighted split across two Services, request and response header filters, a prefix rewrite, a
// redirect, 404 when no rule matches, 500 for a backend that does not exist, and a route applies
// to the Service only (a request straight to an endpoint is not routed).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import { writeRouteFile } from '../../src/control/routes/state-files.ts';
import { idOf, identityFor, startMeshWorld } from '../helpers/mesh-pki.ts';
import { metric, portOf } from '../helpers/running-proxy.ts';
import { routesFromYaml } from '../unit/routes-helpers.ts';
import { sendRequest } from '../helpers/mesh-echo.ts';

/** GET `url` through 127.0.0.1:`port` (mesh-echo's one request helper). */
const get = (port: number, url: string) => sendRequest(port, url);

/** An app that answers with its name, the path it got and its x-route header. */
async function startApp(name: string): Promise<{ port: number; hits: Map<string, number>; close(): void }> {
  const hits = new Map<string, number>();
  const server = http.createServer((req, res) => {
    const path = req.url ?? '';
    const n = (hits.get(path) ?? 0) + 1;
    hits.set(path, n);
    // /flaky...: 503 on the first hit of each path; /down...: always 503 (the retry tests).
    if ((path.startsWith('/flaky') && n === 1) || path.startsWith('/down')) {
      req.resume();
      res.writeHead(503).end('unavailable');
      return;
    }
    const answer = () =>
      res.end(JSON.stringify({ app: name, path: req.url, route: req.headers['x-route'] ?? null }));
    // /slow...: answers after 1.5 s (the route timeouts' test).
    if (req.url?.startsWith('/slow') === true) setTimeout(answer, 1500);
    else answer();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as { port: number }).port, hits, close: () => server.close() };
}

const ROUTE = `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: web-routes, namespace: default }
spec:
  parentRefs: [{ group: "", kind: Service, name: web, port: 8080 }]
  rules:
    - matches: [{ path: { type: PathPrefix, value: /v2 } }]
      filters:
        - type: RequestHeaderModifier
          requestHeaderModifier: { set: [{ name: x-route, value: to-v2 }] }
        - type: ResponseHeaderModifier
          responseHeaderModifier: { add: [{ name: x-served-by, value: route }] }
        - type: URLRewrite
          urlRewrite: { path: { type: ReplacePrefixMatch, replacePrefixMatch: /new } }
      backendRefs: [{ name: web-v2, port: 8080 }]
    - matches: [{ path: { type: Exact, value: /v2/exact } }]
      backendRefs: [{ name: web, port: 8080 }]
    - matches: [{ path: { type: Exact, value: /old } }]
      filters:
        - type: RequestRedirect
          requestRedirect: { hostname: example.com, statusCode: 301 }
    - matches: [{ path: { type: PathPrefix, value: /split } }]
      backendRefs: [{ name: web, port: 8080, weight: 1 }, { name: web-v2, port: 8080, weight: 1 }]
    - matches: [{ path: { type: PathPrefix, value: /gone } }]
      backendRefs: [{ name: nosuch, port: 8080 }]
    - matches: [{ path: { type: PathPrefix, value: /flaky } }, { path: { type: PathPrefix, value: /down } }]
      retry: { codes: [503], attempts: 2, backoff: 10ms }
      backendRefs: [{ name: web, port: 8080 }]
    - matches: [{ path: { type: PathPrefix, value: /slow-backend } }]
      timeouts: { request: 10s, backendRequest: 300ms }
      backendRefs: [{ name: web, port: 8080 }]
    - matches: [{ path: { type: PathPrefix, value: /slow-request } }]
      timeouts: { request: 300ms }
      backendRefs: [{ name: web, port: 8080 }]
`;

test('HTTPRoutes route HTTP/1 requests to a Service on the client proxy', { timeout: 90_000 }, async (t) => {
  const world = await startMeshWorld();
  t.after(() => world.close());
  const v1 = await startApp('v1');
  const v2 = await startApp('v2');
  t.after(() => {
    v1.close();
    v2.close();
  });
  const s1 = await world.proxy({ identity: await identityFor(world, 'web'), app: v1.port });
  const s2 = await world.proxy({ identity: await identityFor(world, 'web-v2'), app: v2.port });
  await world.register('web', 'web-1', portOf(s1, 'inbound'), idOf('web'));
  await world.register('web-v2', 'web-v2-1', portOf(s2, 'inbound'), idOf('web-v2'));
  for (const route of routesFromYaml(ROUTE, Date.now())) await writeRouteFile(world.root, route);

  const client = await world.proxy({ identity: await identityFor(world, 'caller') });
  const out = portOf(client, 'outbound');
  const ask = (path: string) => get(out, `http://web.default:8080${path}`);

  // The control plane picks the route file up within its rescan: wait until the proxy has it.
  const deadline = Date.now() + 20_000;
  let first = await ask('/nothing');
  while (first.status !== 404 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 200));
    first = await ask('/nothing');
  }

  await t.test('a request no rule matches gets 404 route-not-found', () => {
    assert.equal(first.status, 404);
    assert.equal(first.headers['trellis-proxy-error'], 'route-not-found');
  });

  await t.test('PathPrefix with filters: backend, rewritten path, request and response headers', async () => {
    const r = await ask('/v2/hello?q=1');
    assert.equal(r.status, 200);
    assert.deepEqual(JSON.parse(r.body), { app: 'v2', path: '/new/hello?q=1', route: 'to-v2' });
    assert.equal(r.headers['x-served-by'], 'route');
    // Element-wise: /v2example is not under /v2.
    assert.equal((await ask('/v2example')).status, 404);
  });

  await t.test('a path with dot-segments is matched and sent as the app would resolve it', async () => {
    // As sent, /gone/... would match the rule whose backend does not exist (500).
    for (const path of ['/gone/../v2/hello', '/gone/%2e%2e/v2/hello']) {
      const r = await ask(path);
      assert.equal(r.status, 200, path);
      assert.deepEqual(JSON.parse(r.body), { app: 'v2', path: '/new/hello', route: 'to-v2' });
    }
  });

  await t.test('an Exact path wins over a PathPrefix', async () => {
    const r = await ask('/v2/exact');
    assert.deepEqual(JSON.parse(r.body), { app: 'v1', path: '/v2/exact', route: null });
    assert.equal(r.headers['x-served-by'], undefined);
  });

  await t.test('RequestRedirect: the proxy answers 301 with the Location', async () => {
    const r = await ask('/old?a=b');
    assert.equal(r.status, 301);
    assert.equal(r.headers.location, 'http://example.com:8080/old?a=b');
  });

  await t.test('a weighted split sends traffic to both backends', async () => {
    const seen = new Map<string, number>();
    for (let i = 0; i < 60; i++) {
      const app = (JSON.parse((await ask(`/split/${i}`)).body) as { app: string }).app;
      seen.set(app, (seen.get(app) ?? 0) + 1);
    }
    assert.ok((seen.get('v1') ?? 0) >= 10 && (seen.get('v2') ?? 0) >= 10, JSON.stringify([...seen]));
  });

  await t.test('a backend that does not exist gets 500 backend-not-found', async () => {
    const r = await ask('/gone');
    assert.equal(r.status, 500);
    assert.equal(r.headers['trellis-proxy-error'], 'backend-not-found');
  });

  await t.test('route timeouts: 504 naming which one passed', async () => {
    const backend = await ask('/slow-backend');
    assert.equal(backend.status, 504);
    assert.equal(backend.headers['trellis-proxy-error'], 'backend-request-timeout');
    const request = await ask('/slow-request');
    assert.equal(request.status, 504);
    assert.equal(request.headers['trellis-proxy-error'], 'request-timeout');
  });

  await t.test('retry: a status the rule names is retried, within attempts', async () => {
    const before = metric(client, 'trellis_retries_total', { outcome: 'retried' });
    const flaky = await ask('/flaky/1');
    assert.equal(flaky.status, 200, 'the second attempt answered');
    assert.equal(v1.hits.get('/flaky/1'), 2);
    const down = await ask('/down/1');
    assert.equal(down.status, 503, 'the last answer when every attempt failed');
    assert.equal(v1.hits.get('/down/1'), 3, 'attempts: 2 retries after the first');
    assert.equal(metric(client, 'trellis_retries_total', { outcome: 'retried' }), before + 3);
    // A request with a body is re-sent with it (retries-mesh.test.ts has the body cases).
    const posted = await new Promise<number>((resolve, reject) => {
      const req = http.request(
        {
          host: '127.0.0.1',
          port: out,
          method: 'POST',
          path: 'http://web.default:8080/flaky/post',
          agent: false,
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      req.end('payload');
    });
    assert.equal(posted, 200);
    assert.equal(v1.hits.get('/flaky/post'), 2);
  });

  await t.test('route metrics name the parent, the route and the backend', () => {
    const route = {
      parent_name: 'web',
      parent_port: '8080',
      route_kind: 'HTTPRoute',
      route_name: 'web-routes',
    };
    const v2Ok = metric(client, 'trellis_route_requests_total', {
      ...route,
      backend_name: 'web-v2',
      outcome: 'success',
    });
    assert.ok(v2Ok >= 3, `web-v2 successes: ${v2Ok}`);
    assert.equal(
      metric(client, 'trellis_route_requests_total', { ...route, backend_name: 'web', outcome: 'timeout' }),
      2,
      'the two route timeouts',
    );
    assert.ok(metric(client, 'trellis_route_retries_total', { ...route, outcome: 'retried' }) >= 3);
    assert.ok(metric(client, 'trellis_route_request_duration_seconds_count', { ...route }) >= v2Ok);
  });

  await t.test('a request sent straight to an endpoint is not routed', async () => {
    const r = await get(out, `http://127.0.0.1:${v1.port}/nothing`);
    assert.equal(r.status, 200);
    assert.equal((JSON.parse(r.body) as { app: string }).app, 'v1');
  });
});

/** An HTTP/2 app that answers every stream as a gRPC server would, naming itself and the x-route it got. */
async function startH2App(name: string): Promise<{ port: number; close(): void }> {
  const server = http2.createServer();
  server.on('stream', (stream, headers) => {
    stream.respond(
      {
        ':status': 200,
        'content-type': 'application/grpc',
        'x-app': name,
        'x-got-route': String(headers['x-route'] ?? ''),
      },
      { waitForTrailers: true },
    );
    stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
    stream.end();
    stream.resume();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as { port: number }).port, close: () => server.close() };
}

function h2Call(port: number, path: string, grpc = true): Promise<Record<string, string>> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', reject);
    const req = session.request({
      ':method': 'POST',
      ':path': path,
      ...(grpc ? { 'content-type': 'application/grpc', te: 'trailers' } : {}),
    });
    const seen: Record<string, string> = {};
    req.on('response', (h) => {
      for (const [k, v] of Object.entries(h)) seen[k] = String(v);
    });
    req.on('trailers', (h) => {
      for (const [k, v] of Object.entries(h)) seen[k] = String(v);
    });
    req.on('error', reject);
    req.on('close', () => {
      session.close();
      resolve(seen);
    });
    req.resume();
    req.end();
  });
}

const GRPC_ROUTE = `
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: { name: grpc-routes, namespace: default }
spec:
  parentRefs: [{ group: "", kind: Service, name: grpc, port: 8080 }]
  rules:
    - matches: [{ method: { service: trellis.test.Echo, method: Unary } }]
      filters:
        - type: RequestHeaderModifier
          requestHeaderModifier: { add: [{ name: x-route, value: unary }] }
      backendRefs: [{ name: grpc-v2, port: 8080 }]
    - matches: [{ method: { service: trellis.test.Echo } }]
      backendRefs: [{ name: grpc, port: 8080 }]
`;

test('GRPCRoutes route gRPC streams to a Service on the client proxy', { timeout: 90_000 }, async (t) => {
  const world = await startMeshWorld();
  t.after(() => world.close());
  const v1 = await startH2App('v1');
  const v2 = await startH2App('v2');
  t.after(() => {
    v1.close();
    v2.close();
  });
  const s1 = await world.proxy({ identity: await identityFor(world, 'grpc'), app: v1.port });
  const s2 = await world.proxy({ identity: await identityFor(world, 'grpc-v2'), app: v2.port });
  await world.register('grpc', 'grpc-1', portOf(s1, 'inbound'), idOf('grpc'));
  await world.register('grpc-v2', 'grpc-v2-1', portOf(s2, 'inbound'), idOf('grpc-v2'));
  for (const route of routesFromYaml(GRPC_ROUTE, Date.now())) await writeRouteFile(world.root, route);
  // A listener bound for the Service, as an app's gRPC channel to it would be.
  const client = await world.proxy({
    identity: await identityFor(world, 'caller'),
    config: { destinations: [{ listen: '127.0.0.1:0', target: 'grpc.default:8080', protocol: 'h2' }] },
  });
  const bound = portOf(client, 'destination-0');

  const deadline = Date.now() + 20_000;
  let unknown = await h2Call(bound, '/other.Service/Call');
  while (unknown['trellis-proxy-error'] !== 'route-not-found' && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 200));
    unknown = await h2Call(bound, '/other.Service/Call');
  }

  await t.test('a method no rule matches: gRPC UNIMPLEMENTED, route-not-found', () => {
    assert.equal(unknown['trellis-proxy-error'], 'route-not-found');
    assert.equal(unknown['grpc-status'], '12');
  });

  await t.test('the most specific rule (service and method) wins, with its header filter', async () => {
    const r = await h2Call(bound, '/trellis.test.Echo/Unary');
    assert.equal(r['x-app'], 'v2');
    assert.equal(r['x-got-route'], 'unary');
    assert.equal(r['grpc-status'], '0');
    const other = await h2Call(bound, '/trellis.test.Echo/Stream');
    assert.equal(other['x-app'], 'v1');
    assert.equal(other['x-got-route'], '');
  });

  await t.test('a request that is not gRPC is not matched against GRPCRoutes', async () => {
    const r = await h2Call(bound, '/other.Service/Call', false);
    assert.equal(r['x-app'], 'v1');
  });
});
