// Spans of the answers a client proxy makes itself from a route's decision, through real proxies
// with mTLS: a RequestRedirect, an HTTPFault abort, a rule whose backend does not exist (500
// backend-not-found) and a request no rule matches (404 route-not-found) each get the CLIENT span
// of a sampled request, with the status answered, the rule in trellis.route, and the
// trellis-proxy-error reason where there is one; over HTTP/1 and HTTP/2.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import { parse } from 'yaml';
import { validateFault } from '../../src/core/routes/fault.ts';
import { writeRouteFile } from '../../src/control/routes/state-files.ts';
import { idOf, identityFor, startMeshWorld } from '../helpers/mesh-pki.ts';
import { proxiedRequest } from '../helpers/mesh-echo.ts';
import { portOf } from '../helpers/running-proxy.ts';
import { startOtlpReceiver, type ReceivedSpan } from '../helpers/otlp-receiver.ts';
import { routesFromYaml } from '../unit/routes-helpers.ts';

const T = '4bf92f3577b34da6a3ce929d0e0e4736';
const P = '00f067aa0ba902b7';
const SAMPLED = { traceparent: `00-${T}-${P}-01` };

const FAULT = `
apiVersion: traffic.trellis.dev/v1alpha1
kind: HTTPFault
metadata: { name: abort-all, namespace: default }
spec: { abort: { httpStatus: 503 } }
`;

const ROUTES = `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: answers, namespace: default }
spec:
  parentRefs: [{ group: "", kind: Service, name: web, port: 8080 }]
  rules:
    - name: moved
      matches: [{ path: { type: PathPrefix, value: /moved } }]
      filters: [{ type: RequestRedirect, requestRedirect: { hostname: elsewhere.example, statusCode: 302 } }]
    - name: abort
      matches: [{ path: { type: PathPrefix, value: /abort } }]
      filters: [{ type: ExtensionRef, extensionRef: { group: traffic.trellis.dev, kind: HTTPFault, name: abort-all } }]
      backendRefs: [{ name: web, port: 8080 }]
    - name: gone
      matches: [{ path: { type: PathPrefix, value: /gone } }]
      backendRefs: [{ name: nowhere, port: 8080 }]
    - name: ok
      matches: [{ path: { type: PathPrefix, value: /ok } }]
      backendRefs: [{ name: web, port: 8080 }]
`;

/** One HTTP/2 GET to 127.0.0.1:`port` (a destination listener); resolves with its status. */
function h2Get(port: number, path: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', reject);
    const req = session.request({ ':path': path, ...headers });
    let status = 0;
    req.on('response', (h) => (status = Number(h[':status'])));
    req.on('error', reject);
    req.resume();
    req.on('close', () => {
      session.close();
      resolve(status);
    });
    req.end();
  });
}

const clientSpansOf = (spans: ReceivedSpan[], path: string) =>
  spans.filter((s) => s.attributes['url.path'] === path && s.kind === 'SPAN_KIND_CLIENT');

test('answers the proxy makes from a route get their CLIENT span', { timeout: 120_000 }, async (t) => {
  const receiver = await startOtlpReceiver();
  t.after(() => receiver.close());
  const world = await startMeshWorld();
  t.after(() => world.close());
  let seen = 0;
  const app = http.createServer((req, res) => {
    seen++;
    req.resume();
    res.end('ok');
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  t.after(() => app.close());
  const server = await world.proxy({
    identity: await identityFor(world, 'web'),
    app: (app.address() as { port: number }).port,
  });
  await world.register('web', 'web-1', portOf(server, 'inbound'), idOf('web'));
  const { fault } = validateFault(parse(FAULT));
  assert.ok(fault !== null);
  await writeRouteFile(world.root, fault);
  for (const route of routesFromYaml(ROUTES, Date.now())) await writeRouteFile(world.root, route);
  await world.rescanRoutes();
  const client = await world.proxy({
    identity: await identityFor(world, 'caller'),
    config: {
      tracing: { collector: receiver.url, sampleRatio: 0, batchDelayMs: 20 },
      destinations: [{ listen: '127.0.0.1:0', target: 'web.default:8080', protocol: 'h2' }],
    },
  });
  const out = portOf(client, 'outbound');
  const h2 = portOf(client, 'destination-0');
  const ask = (path: string) => proxiedRequest(out, 'web.default:8080', path, SAMPLED);
  // Until the proxy has the routes.
  const deadline = Date.now() + 20_000;
  while ((await ask('/abort/warm')).status !== 503 && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 200));

  const cases = [
    { path: '/moved', status: 302, rule: 'moved', reason: undefined },
    { path: '/abort', status: 503, rule: 'abort', reason: 'fault-injected' },
    { path: '/gone', status: 500, rule: 'gone', reason: 'backend-not-found' },
    { path: '/unrouted', status: 404, rule: undefined, reason: 'route-not-found' },
  ];
  for (const protocol of ['http1', 'h2'] as const) {
    for (const c of cases) {
      const path = `${c.path}/${protocol}`;
      const status = protocol === 'http1' ? (await ask(path)).status : await h2Get(h2, path, SAMPLED);
      assert.equal(status, c.status, path);
      if (c.status === 302 && protocol === 'http1')
        assert.equal((await ask(path)).headers.location, 'http://elsewhere.example:8080/moved/http1');
      const [span] = clientSpansOf(await receiver.waitFor((s) => clientSpansOf(s, path).length > 0), path);
      assert.ok(span !== undefined, `${path}: a CLIENT span`);
      assert.equal(span.traceId, T, path);
      assert.equal(span.parentSpanId, P, path);
      assert.equal(span.attributes['http.response.status_code'], c.status, path);
      assert.equal(
        span.attributes['trellis.route'],
        c.rule === undefined ? undefined : 'default/answers',
        path,
      );
      assert.equal(span.attributes['trellis.route.rule'], c.rule, path);
      assert.equal(span.attributes['trellis.proxy_error'], c.reason, path);
      // A CLIENT span's 4xx and 5xx are errors, a redirect is not.
      assert.equal(span.status.code, c.status >= 400 ? 'STATUS_CODE_ERROR' : 'STATUS_CODE_UNSET', path);
    }
  }
  assert.equal(seen, 0, 'no answer came from the app');
});
