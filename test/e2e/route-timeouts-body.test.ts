// A route's timeouts cover the whole response, its body too (src/proxy/outbound/routes.ts
// responseBodyLimit, as the Gateway API intends and Envoy does): an upstream that sends its head
// at once and then trickles the body past `timeouts.request` or `timeouts.backendRequest` is cut
// off there (HTTP/1: the connection closes; HTTP/2: the stream is reset) and the reason counted.
// Without a route timeout the same slow body runs to its end. Through real proxies with mTLS.
// Before, the timer stopped at the response head and the trickle ran for as long as it liked.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import { writeRouteFile } from '../../src/control/routes/state-files.ts';
import { idOf, identityFor, startMeshWorld } from '../helpers/mesh-pki.ts';
import { metric, portOf } from '../helpers/running-proxy.ts';
import { routesFromYaml } from '../unit/routes-helpers.ts';
import { sendRequest } from '../helpers/mesh-echo.ts';

const TRICKLE_BYTES = 20; // one every 100 ms: 2 s
const ROUTE = `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: timeouts, namespace: default }
spec:
  parentRefs: [{ group: "", kind: Service, name: web, port: 8080 }]
  rules:
    - matches: [{ path: { type: PathPrefix, value: /request } }]
      timeouts: { request: 500ms }
      backendRefs: [{ name: web, port: 8080 }]
    - matches: [{ path: { type: PathPrefix, value: /attempt } }]
      timeouts: { backendRequest: 500ms }
      backendRefs: [{ name: web, port: 8080 }]
    - backendRefs: [{ name: web, port: 8080 }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: timeouts-h2, namespace: default }
spec:
  parentRefs: [{ group: "", kind: Service, name: web2, port: 8080 }]
  rules:
    - matches: [{ path: { type: PathPrefix, value: /request } }]
      timeouts: { request: 500ms }
      backendRefs: [{ name: web2, port: 8080 }]
    - backendRefs: [{ name: web2, port: 8080 }]
`;

/** What the trickling app needs of node:http's and node:http2's compatibility responses alike. */
interface TrickleResponse {
  readonly destroyed: boolean;
  writeHead(status: number, headers: Record<string, string>): unknown;
  write(chunk: string): boolean;
  end(): unknown;
  on(event: 'close', listener: () => void): unknown;
}

interface Cut {
  readonly status: number;
  readonly bytes: number;
  readonly complete: boolean;
  readonly ms: number;
}

/** HTTP/1 GET through the client proxy's outbound listener: what arrived and whether it ended. */
function getH1(port: number, path: string): Promise<Cut> {
  const started = Date.now();
  return new Promise((resolve) => {
    let status = 0;
    let bytes = 0;
    const req = http.get(
      { host: '127.0.0.1', port, path: `http://web.default:8080${path}`, agent: false },
      (res) => {
        status = res.statusCode ?? 0;
        res.on('data', (d: Buffer) => (bytes += d.length));
        res.on('end', () => resolve({ status, bytes, complete: res.complete, ms: Date.now() - started }));
        res.on('error', () => resolve({ status, bytes, complete: false, ms: Date.now() - started }));
      },
    );
    req.on('error', () => resolve({ status, bytes, complete: false, ms: Date.now() - started }));
    req.setTimeout(10_000, () => req.destroy());
  });
}

/** The same over HTTP/2 (h2c to the outbound listener, the Service as :authority; its app speaks HTTP/2). */
function getH2(port: number, path: string): Promise<Cut> {
  const started = Date.now();
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on('error', () => {});
  return new Promise((resolve) => {
    let status = 0;
    let bytes = 0;
    const req = session.request({ ':path': path, ':authority': 'web2.default:8080' });
    req.on('response', (h) => (status = Number(h[':status'])));
    req.on('data', (d: Buffer) => (bytes += d.length));
    req.on('error', () => {});
    req.on('close', () => {
      resolve({
        status,
        bytes,
        complete: req.rstCode === http2.constants.NGHTTP2_NO_ERROR,
        ms: Date.now() - started,
      });
      session.close();
    });
  });
}

test(
  'a route timeout cuts off a response body still coming; without one it runs to its end',
  { timeout: 120_000 },
  async (t) => {
    const world = await startMeshWorld();
    t.after(() => world.close());
    // The same app over HTTP/1 (web) and HTTP/2 (web2): the head at once, then a byte every 100 ms.
    const trickle = (res: TrickleResponse) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      let sent = 0;
      const timer = setInterval(() => {
        if (res.destroyed) return clearInterval(timer);
        res.write('.');
        if (++sent === TRICKLE_BYTES) {
          clearInterval(timer);
          res.end();
        }
      }, 100);
      res.on('close', () => clearInterval(timer));
    };
    const apps = [
      http.createServer((_req, res) => trickle(res)),
      http2.createServer((_req, res) => trickle(res)),
    ];
    for (const [i, app] of apps.entries()) {
      await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
      t.after(() => {
        if (app instanceof http.Server) app.closeAllConnections();
        app.close();
      });
      const service = i === 0 ? 'web' : 'web2';
      const port = (app.address() as { port: number }).port;
      const server = await world.proxy({ identity: await identityFor(world, service), app: port });
      await world.register(service, `${service}-1`, portOf(server, 'inbound'), idOf(service));
    }
    for (const route of routesFromYaml(ROUTE, Date.now())) await writeRouteFile(world.root, route);
    await world.rescanRoutes();
    const client = await world.proxy({ identity: await identityFor(world, 'caller') });
    const out = portOf(client, 'outbound');
    // Until the route is served: /request cut short (the app answers every path the same way).
    const deadline = Date.now() + 20_000;
    for (;;) {
      const r = await getH1(out, '/request/warm');
      if (!r.complete || Date.now() > deadline) break;
    }
    const cut = (reason: string) => metric(client, 'trellis_proxy_errors_total', { reason });

    await t.test('HTTP/1: timeouts.request and backendRequest close the connection mid-body', async () => {
      const before = await cut('request-timeout');
      const r = await getH1(out, '/request/1');
      assert.equal(r.status, 200);
      assert.equal(r.complete, false, `the body ran to its end (${r.bytes} bytes in ${r.ms} ms)`);
      assert.ok(r.bytes < TRICKLE_BYTES, `${r.bytes} bytes`);
      assert.ok(r.ms >= 400 && r.ms < 1900, `cut after ${r.ms} ms`);
      assert.equal(await cut('request-timeout'), before + 1);
      const beforeAttempt = await cut('backend-request-timeout');
      const a = await getH1(out, '/attempt/1');
      assert.equal(a.complete, false, `the body ran to its end (${a.bytes} bytes in ${a.ms} ms)`);
      assert.equal(await cut('backend-request-timeout'), beforeAttempt + 1);
    });

    await t.test('HTTP/2: the stream is reset mid-body', async () => {
      const before = await cut('request-timeout');
      const r = await getH2(out, '/request/2');
      assert.equal(r.status, 200);
      assert.equal(r.complete, false, `the body ran to its end (${r.bytes} bytes in ${r.ms} ms)`);
      assert.ok(r.ms >= 400 && r.ms < 1900, `cut after ${r.ms} ms`);
      assert.equal(await cut('request-timeout'), before + 1);
    });

    await t.test('without a route timeout the slow body completes, HTTP/1 and HTTP/2', async () => {
      const h1 = await getH1(out, '/free/1');
      assert.deepEqual([h1.status, h1.complete, h1.bytes], [200, true, TRICKLE_BYTES]);
      const h2 = await getH2(out, '/free/2');
      assert.deepEqual([h2.status, h2.complete, h2.bytes], [200, true, TRICKLE_BYTES]);
      const reply = await sendRequest(out, 'http://web.default:8080/free/3');
      assert.equal(reply.body.length, TRICKLE_BYTES);
    });
  },
);
