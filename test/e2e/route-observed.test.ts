// The route an exchange matched, as a live tap and a trace show it, through real proxies with mTLS:
// a request a Gateway API route forwarded carries the route ("NAMESPACE/NAME", its kind and the
// matched rule's name or index) in the client proxy's outbound tap event and the `trellis.route`
// / `trellis.route.rule` attributes of its CLIENT span (the OTLP the test receiver decodes); a
// request to a Service without routes, or that no rule matches, has route null in the tap and no
// route attribute; one the proxy answers on a rule's word (a redirect) names that rule. Over
// HTTP/1, HTTP/2 and gRPC (the GRPCRoute of a Service that also has an HTTPRoute).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import { writeRouteFile } from '../../src/control/routes/state-files.ts';
import { openTap } from '../helpers/admin-tap.ts';
import { idOf, identityFor, startMeshWorld } from '../helpers/mesh-pki.ts';
import { portOf } from '../helpers/running-proxy.ts';
import { sendRequest } from '../helpers/mesh-echo.ts';
import { startOtlpReceiver, type ReceivedSpan } from '../helpers/otlp-receiver.ts';
import { routesFromYaml } from '../unit/routes-helpers.ts';

const T = '4bf92f3577b34da6a3ce929d0e0e4736';
const SAMPLED = { traceparent: `00-${T}-00f067aa0ba902b7-01` };

const ROUTES = `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: web-split, namespace: default }
spec:
  parentRefs: [{ group: "", kind: Service, name: web, port: 8080 }]
  rules:
    - name: api
      matches: [{ path: { type: PathPrefix, value: /api } }]
      backendRefs: [{ name: web, port: 8080 }]
    - backendRefs: [{ name: web, port: 8080 }]
    - name: moved
      matches: [{ path: { type: PathPrefix, value: /moved } }]
      filters: [{ type: RequestRedirect, requestRedirect: { hostname: example.org } }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: grpc-plain, namespace: default }
spec:
  parentRefs: [{ group: "", kind: Service, name: grpc, port: 8080 }]
  rules:
    - backendRefs: [{ name: grpc, port: 8080 }]
    - matches: [{ path: { type: PathPrefix, value: /moved } }]
      filters: [{ type: RequestRedirect, requestRedirect: { hostname: example.org } }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: { name: grpc-calls, namespace: default }
spec:
  parentRefs: [{ group: "", kind: Service, name: grpc, port: 8080 }]
  rules:
    - name: echo
      matches: [{ method: { service: t.Echo } }]
      backendRefs: [{ name: grpc, port: 8080 }]
`;

/** One HTTP/2 request to `port` (prior knowledge); resolves with its status and grpc-status. */
function h2Request(
  port: number,
  path: string,
  grpc: boolean,
  headers: Record<string, string> = {},
): Promise<{ status: number; grpcStatus: string }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', reject);
    const req = session.request({
      ':method': grpc ? 'POST' : 'GET',
      ':path': path,
      ...(grpc ? { 'content-type': 'application/grpc', te: 'trailers' } : {}),
      ...headers,
    });
    let status = 0;
    let grpcStatus = '';
    req.on('response', (h) => {
      status = Number(h[':status']);
      grpcStatus = String(h['grpc-status'] ?? grpcStatus);
    });
    req.on('trailers', (h) => (grpcStatus = String(h['grpc-status'] ?? grpcStatus)));
    req.on('error', reject);
    req.resume();
    req.on('close', () => {
      session.close();
      resolve({ status, grpcStatus });
    });
    req.end(grpc ? Buffer.from([0, 0, 0, 0, 0]) : undefined);
  });
}

/** An HTTP/2 app: gRPC calls answer OK in trailers, other requests 200. */
async function startH2App() {
  const server = http2.createServer();
  server.on('stream', (stream, headers) => {
    stream.resume();
    stream.on('end', () => {
      if (String(headers['content-type']).startsWith('application/grpc')) {
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
        stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
        stream.end(Buffer.from([0, 0, 0, 0, 0]));
      } else stream.respond({ ':status': 200 }, { endStream: true });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as { port: number }).port, close: () => server.close() };
}

async function startH1App() {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(200).end('ok'));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as { port: number }).port,
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}

const clientSpan = (spans: ReceivedSpan[], path: string) =>
  spans.find((s) => s.attributes['url.path'] === path && s.kind === 'SPAN_KIND_CLIENT');

test(
  'tap events and spans name the route that forwarded a request, HTTP/1, HTTP/2 and gRPC; none without one',
  { timeout: 120_000 },
  async (t) => {
    const receiver = await startOtlpReceiver();
    t.after(() => receiver.close());
    const world = await startMeshWorld();
    t.after(() => world.close());
    const h1App = await startH1App();
    t.after(() => h1App.close());
    const h2App = await startH2App();
    t.after(() => h2App.close());
    const web = await world.proxy({ identity: await identityFor(world, 'web'), app: h1App.port });
    const grpc = await world.proxy({ identity: await identityFor(world, 'grpc'), app: h2App.port });
    await world.register('web', 'web-1', portOf(web, 'inbound'), idOf('web'));
    await world.register('bare', 'bare-1', portOf(web, 'inbound'), idOf('web'));
    await world.register('grpc', 'grpc-1', portOf(grpc, 'inbound'), idOf('grpc'));
    await world.register('bare2', 'bare2-1', portOf(grpc, 'inbound'), idOf('grpc'));
    for (const route of routesFromYaml(ROUTES, Date.now())) await writeRouteFile(world.root, route);
    await world.rescanRoutes();
    const client = await world.proxy({
      identity: await identityFor(world, 'caller'),
      config: {
        tracing: { collector: receiver.url, sampleRatio: 0, batchDelayMs: 20 },
        destinations: [
          { listen: '127.0.0.1:0', target: 'grpc.default:8080', protocol: 'h2' },
          { listen: '127.0.0.1:0', target: 'bare2.default:8080', protocol: 'h2' },
        ],
      },
    });
    const out = portOf(client, 'outbound');
    const grpcPort = portOf(client, 'destination-0');
    const bare2Port = portOf(client, 'destination-1');
    const tap = await openTap(t, client.addresses.admin!);

    // HTTP/1: a named rule, an unnamed one (its index), and a Service without routes.
    const sampled = { headers: SAMPLED };
    assert.equal((await sendRequest(out, 'http://web.default:8080/api/h1', sampled)).status, 200);
    assert.equal((await sendRequest(out, 'http://web.default:8080/other/h1', sampled)).status, 200);
    assert.equal((await sendRequest(out, 'http://bare.default:8080/bare/h1', sampled)).status, 200);
    // HTTP/2: the Service's HTTPRoute for a plain request, its GRPCRoute for a gRPC call.
    assert.equal((await h2Request(grpcPort, '/plain/h2', false, SAMPLED)).status, 200);
    assert.equal((await h2Request(grpcPort, '/t.Echo/Call', true, SAMPLED)).grpcStatus, '0');
    assert.equal((await h2Request(bare2Port, '/bare/h2', false, SAMPLED)).status, 200);
    // Answered by the proxy on a rule's word (a redirect), or because no rule matched.
    assert.equal((await sendRequest(out, 'http://web.default:8080/moved/h1', sampled)).status, 302);
    assert.equal((await h2Request(grpcPort, '/moved/h2', false, SAMPLED)).status, 302);
    assert.notEqual((await h2Request(grpcPort, '/other.Svc/Call', true, SAMPLED)).grpcStatus, '0');
    assert.equal((await h2Request(bare2Port, '/t.Echo/Bare', true, SAMPLED)).grpcStatus, '0');

    const expected: Record<string, [string | null, string | null, string | null]> = {
      '/api/h1': ['default/web-split', 'HTTPRoute', 'api'],
      '/other/h1': ['default/web-split', 'HTTPRoute', '1'],
      '/bare/h1': [null, null, null],
      '/plain/h2': ['default/grpc-plain', 'HTTPRoute', '0'],
      '/t.Echo/Call': ['default/grpc-calls', 'GRPCRoute', 'echo'],
      '/bare/h2': [null, null, null],
      '/t.Echo/Bare': [null, null, null],
      '/moved/h1': ['default/web-split', 'HTTPRoute', 'moved'],
      '/moved/h2': ['default/grpc-plain', 'HTTPRoute', '1'],
      '/other.Svc/Call': [null, null, null],
    };
    const paths = Object.keys(expected);
    const outboundEvent = (path: string) =>
      tap.find((l) => l.type === 'exchange' && l.direction === 'outbound' && l.path === path);
    const deadline = Date.now() + 10_000;
    while (paths.some((p) => outboundEvent(p) === undefined) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
    // (A redirect the proxy answers itself gets no span: only tap events are checked for it.)
    const traced = paths.filter((p) => !p.startsWith('/moved/'));
    const spans = await receiver.waitFor((s) => traced.every((p) => clientSpan(s, p) !== undefined));

    for (const path of paths) {
      const [route, kind, rule] = expected[path]!;
      const event = outboundEvent(path);
      assert.ok(event !== undefined, `a tap event for ${path}`);
      assert.deepEqual([event.route, event.route_kind, event.route_rule], [route, kind, rule], `tap ${path}`);
      if (!traced.includes(path)) continue;
      const span = clientSpan(spans, path)!;
      assert.equal(span.traceId, T);
      assert.equal(span.attributes['trellis.route'], route ?? undefined, `span ${path}`);
      assert.equal(span.attributes['trellis.route.rule'], rule ?? undefined, `span rule ${path}`);
      assert.equal('trellis.route' in span.attributes, route !== null);
    }
  },
);
