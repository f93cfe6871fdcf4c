// RequestMirror through real proxies with mTLS (src/proxy/outbound/mirror.ts): a routed request
// is copied, body and all, to the mirror's Service; the copy's answer is ignored and a slow
// mirror never slows the primary; a rule with percent 0 mirrors nothing; HTTP/2 requests are
// mirrored as HTTP/2; a copy is never mirrored again.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import { writeRouteFile } from '../../src/control/routes/state-files.ts';
import { idOf, identityFor, startMeshWorld, type MeshWorld } from '../helpers/mesh-pki.ts';
import { metric, portOf } from '../helpers/running-proxy.ts';
import { routesFromYaml } from '../unit/routes-helpers.ts';
import { sendRequest } from '../helpers/mesh-echo.ts';

interface Seen {
  method: string;
  path: string;
  body: string;
  mirrored: boolean;
  protocol: string;
}

/** An app (HTTP/1 and h2c) that records what it got; `delayMs` holds every answer. */
async function startApp(name: string, delayMs: number) {
  const seen: Seen[] = [];
  const handler = (
    req: http.IncomingMessage | http2.Http2ServerRequest,
    res: http.ServerResponse | http2.Http2ServerResponse,
  ) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => (body += d));
    req.on('end', () => {
      seen.push({
        method: req.method ?? '',
        path: req.url ?? '',
        body,
        mirrored: req.headers['trellis-mirrored'] !== undefined,
        protocol: req.httpVersion,
      });
      const answer = () => (res as http.ServerResponse).writeHead(200, { 'x-app': name }).end(name);
      if (delayMs > 0) setTimeout(answer, delayMs).unref();
      else answer();
    });
  };
  const server = http2.createServer({ allowHTTP1: true } as http2.ServerOptions, handler as never);
  // allowHTTP1 applies to TLS servers only: a plain server takes h2c; HTTP/1 goes to a second one.
  const h1 = http.createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  await new Promise<void>((r) => h1.listen(0, '127.0.0.1', r));
  return {
    h2Port: (server.address() as { port: number }).port,
    h1Port: (h1.address() as { port: number }).port,
    seen,
    close: () => {
      server.close();
      h1.closeAllConnections();
      h1.close();
    },
  };
}

const ROUTE = `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: mirrored, namespace: default }
spec:
  parentRefs: [{ group: "", kind: Service, name: web, port: 8080 }]
  rules:
    - matches: [{ path: { type: PathPrefix, value: /none } }]
      filters:
        - type: RequestMirror
          requestMirror: { backendRef: { name: shadow, port: 8080 }, percent: 0 }
      backendRefs: [{ name: web, port: 8080 }]
    - filters:
        - type: RequestMirror
          requestMirror: { backendRef: { name: shadow, port: 8080 } }
      backendRefs: [{ name: web, port: 8080 }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: mirrored-h2, namespace: default }
spec:
  parentRefs: [{ group: "", kind: Service, name: web2, port: 8080 }]
  rules:
    - filters:
        - type: RequestMirror
          requestMirror: { backendRef: { name: shadow2, port: 8080 } }
      backendRefs: [{ name: web2, port: 8080 }]
`;

/** A POST through the client proxy, and how long its answer took. */
async function post(
  port: number,
  url: string,
  body: string,
): Promise<{ status: number; body: string; ms: number }> {
  const started = Date.now();
  const reply = await sendRequest(port, url, { method: 'POST', body });
  return { status: reply.status, body: reply.body, ms: Date.now() - started };
}

async function serve(world: MeshWorld, service: string, port: number): Promise<void> {
  const proxy = await world.proxy({ identity: await identityFor(world, service), app: port });
  await world.register(service, `${service}-1`, portOf(proxy, 'inbound'), idOf(service));
}

async function eventually(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!check() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.ok(check(), what);
}

test('RequestMirror copies routed requests and never slows the primary', { timeout: 120_000 }, async (t) => {
  const world = await startMeshWorld();
  t.after(() => world.close());
  const web = await startApp('web', 0);
  const shadow = await startApp('shadow', 3000);
  const web2 = await startApp('web2', 0);
  const shadow2 = await startApp('shadow2', 0);
  t.after(() => [web, shadow, web2, shadow2].forEach((a) => a.close()));
  await serve(world, 'web', web.h1Port);
  await serve(world, 'shadow', shadow.h1Port);
  await serve(world, 'web2', web2.h2Port);
  await serve(world, 'shadow2', shadow2.h2Port);
  for (const route of routesFromYaml(ROUTE, Date.now())) await writeRouteFile(world.root, route);
  await world.rescanRoutes();
  const client = await world.proxy({ identity: await identityFor(world, 'caller') });
  const out = portOf(client, 'outbound');
  // Until the route is in force (the first mirror is seen).
  const deadline = Date.now() + 20_000;
  while (shadow.seen.length === 0 && Date.now() < deadline) {
    await post(out, 'http://web.default:8080/warm', 'w');
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.ok(shadow.seen.length > 0, 'the mirror got the warm-up requests');

  await t.test(
    'the copy has the method, path and body; the primary is not held by the slow mirror',
    async () => {
      const r = await post(out, 'http://web.default:8080/orders?id=7', 'order-body');
      assert.equal(r.status, 200);
      assert.equal(r.body, 'web');
      assert.ok(r.ms < 2000, `the primary took ${r.ms} ms while the mirror holds its answer 3 s`);
      await eventually(() => shadow.seen.some((s) => s.path === '/orders?id=7'), 'the mirror got the copy');
      const copy = shadow.seen.find((s) => s.path === '/orders?id=7')!;
      assert.deepEqual(
        { method: copy.method, body: copy.body, mirrored: copy.mirrored },
        {
          method: 'POST',
          body: 'order-body',
          mirrored: true,
        },
      );
      assert.equal(
        web.seen.find((s) => s.path === '/orders?id=7')?.mirrored,
        false,
        'the primary is not marked',
      );
    },
  );

  await t.test('percent 0 mirrors nothing', async () => {
    for (let i = 0; i < 5; i++)
      assert.equal((await post(out, `http://web.default:8080/none/${i}`, 'x')).status, 200);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(shadow.seen.filter((s) => s.path.startsWith('/none')).length, 0);
  });

  await t.test('an HTTP/2 request is mirrored as HTTP/2', async () => {
    const session = http2.connect(`http://127.0.0.1:${out}`);
    t.after(() => session.close());
    const answer = await new Promise<string>((resolve, reject) => {
      const req = session.request({
        ':method': 'POST',
        ':path': '/h2/call',
        ':authority': 'web2.default:8080',
      });
      let text = '';
      req.setEncoding('utf8');
      req.on('data', (d: string) => (text += d));
      req.on('end', () => resolve(text));
      req.on('error', reject);
      req.end('h2-body');
    });
    assert.equal(answer, 'web2');
    await eventually(() => shadow2.seen.some((s) => s.path === '/h2/call'), 'the h2 mirror got the copy');
    const copy = shadow2.seen.find((s) => s.path === '/h2/call')!;
    assert.deepEqual(
      { body: copy.body, mirrored: copy.mirrored, protocol: copy.protocol },
      {
        body: 'h2-body',
        mirrored: true,
        protocol: '2.0',
      },
    );
    // Answered copies count as sent (the slow mirror's are still out); the shadow has the copy
    // before the proxy has read its answer, so the count may come a moment later.
    await eventually(
      () => metric(client, 'trellis_route_mirrors_total', { outcome: 'sent' }) >= 1,
      'an answered copy counts as sent',
    );
  });
});
