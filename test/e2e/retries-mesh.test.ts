// Retries and timeouts through real proxies with mTLS (src/proxy/outbound/routes.ts retryAfter
// and attemptLimit, used by h1-session.ts and h2-exchange.ts): a request with a body is re-sent
// whole (kept up to 64 KiB), a chunked one is not; timeouts.request bounds every attempt and
// backoff together while timeouts.backendRequest bounds each; a Service's annotations ask for
// retries without any route (HTTP statuses for HTTP/1, gRPC statuses for gRPC, with the request
// message re-sent); the retry budget keeps a backend that fails everything from seeing much more
// than the client's requests.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import { writeServiceFile } from '../../src/control/discovery/local-state.ts';
import { writeRouteFile } from '../../src/control/routes/state-files.ts';
import { idOf, identityFor, startMeshWorld, type MeshWorld } from '../helpers/mesh-pki.ts';
import { metric, portOf } from '../helpers/running-proxy.ts';
import { routesFromYaml } from '../unit/routes-helpers.ts';
import { sendRequest, type Reply } from '../helpers/mesh-echo.ts';

/** One request through the client proxy (test/helpers/mesh-echo.ts sendRequest). */
function send(port: number, url: string, method = 'GET', body?: string | string[]): Promise<Reply> {
  return sendRequest(port, url, { method, ...(body === undefined ? {} : { body }) });
}

/**
 * An app that fails the first `failures` hits of each path with 503 (/down...: every hit), and
 * answers /slow... after 1.5 s; it records the bodies it got per path.
 */
async function startApp(failures: number) {
  const hits = new Map<string, number>();
  const bodies = new Map<string, string[]>();
  const server = http.createServer((req, res) => {
    const path = req.url ?? '';
    const n = (hits.get(path) ?? 0) + 1;
    hits.set(path, n);
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => (body += d));
    req.on('end', () => {
      bodies.set(path, [...(bodies.get(path) ?? []), body]);
      if (path.startsWith('/slow')) {
        setTimeout(() => res.writeHead(200).end('late'), 1500).unref();
        return;
      }
      if (path.startsWith('/down') || n <= failures) res.writeHead(503).end('unavailable');
      else res.writeHead(200).end(`ok after ${n}`);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as { port: number }).port,
    hits,
    bodies,
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}

const ROUTE = `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: retries, namespace: default }
spec:
  parentRefs: [{ group: "", kind: Service, name: web, port: 8080 }]
  rules:
    - matches: [{ path: { type: PathPrefix, value: /slow } }]
      timeouts: { request: 1s, backendRequest: 300ms }
      retry: { codes: [503], attempts: 10, backoff: 10ms }
      backendRefs: [{ name: web, port: 8080 }]
    - backendRefs: [{ name: web, port: 8080 }]
      retry: { codes: [503], attempts: 1, backoff: 10ms }
`;

async function routedWorld(world: MeshWorld, service: string, app: number): Promise<void> {
  const proxy = await world.proxy({ identity: await identityFor(world, service), app });
  await world.register(service, `${service}-1`, portOf(proxy, 'inbound'), idOf(service));
}

/** Asks until `ready` holds for the answer (the control plane's rescan and the proxy's watch). */
async function until(ask: () => Promise<Reply>, ready: (r: Reply) => boolean): Promise<Reply> {
  const deadline = Date.now() + 20_000;
  let r = await ask();
  while (!ready(r) && Date.now() < deadline) {
    await new Promise((done) => setTimeout(done, 200));
    r = await ask();
  }
  return r;
}

test(
  'HTTP/1 retries: bodies re-sent whole, timeouts across attempts, Service annotations',
  { timeout: 120_000 },
  async (t) => {
    const world = await startMeshWorld();
    t.after(() => world.close());
    const web = await startApp(1);
    const plain = await startApp(2);
    t.after(() => {
      web.close();
      plain.close();
    });
    await routedWorld(world, 'web', web.port);
    await routedWorld(world, 'plain', plain.port);
    for (const route of routesFromYaml(ROUTE, Date.now())) await writeRouteFile(world.root, route);
    await writeServiceFile(world.root, 'default', 'plain', {
      ports: [{ port: 8080, targetPort: 'http' }],
      annotations: { 'retry.trellis.io/http': '5xx', 'retry.trellis.io/limit': '2' },
    });
    await world.rescanRoutes();
    const client = await world.proxy({ identity: await identityFor(world, 'caller') });
    const out = portOf(client, 'outbound');
    await until(
      () => send(out, 'http://web.default:8080/warm'),
      (r) => r.status === 200,
    );

    await t.test('a request with a body (content-length) is retried with the same body', async () => {
      const r = await send(out, 'http://web.default:8080/post/1', 'POST', 'payload-'.repeat(1000));
      assert.equal(r.status, 200, r.body);
      assert.equal(web.hits.get('/post/1'), 2);
      assert.deepEqual(web.bodies.get('/post/1'), ['payload-'.repeat(1000), 'payload-'.repeat(1000)]);
    });

    await t.test('a body over 64 KiB and a chunked body are not retried', async () => {
      const big = await send(out, 'http://web.default:8080/post/big', 'POST', 'x'.repeat(64 * 1024 + 1));
      assert.equal(big.status, 503);
      assert.equal(web.hits.get('/post/big'), 1);
      const chunked = await send(out, 'http://web.default:8080/post/chunked', 'POST', ['a', 'b']);
      assert.equal(chunked.status, 503);
      assert.equal(web.hits.get('/post/chunked'), 1);
    });

    await t.test('timeouts.request bounds every attempt together: 504 request-timeout', async () => {
      const started = Date.now();
      const r = await send(out, 'http://web.default:8080/slow/1');
      const took = Date.now() - started;
      assert.equal(r.status, 504);
      assert.equal(r.headers['trellis-proxy-error'], 'request-timeout');
      assert.ok(took >= 900 && took < 5000, `took ${took} ms`);
      const attempts = web.hits.get('/slow/1') ?? 0;
      // Each attempt times out after 300 ms (backendRequest) and is retried, until the 1 s request
      // timeout: three or four attempts, never the eleven the attempts allow.
      assert.ok(attempts >= 2 && attempts <= 4, `${attempts} attempts`);
    });

    await t.test('a Service annotation asks for retries without any route', async () => {
      const before = metric(client, 'trellis_retries_total', { outcome: 'retried' });
      const r = await until(
        () => send(out, `http://plain.default:8080/a/${Date.now()}`),
        (reply) => reply.status === 200,
      );
      assert.equal(r.status, 200);
      assert.match(r.body, /^ok after 3$/);
      assert.ok(metric(client, 'trellis_retries_total', { outcome: 'retried' }) >= before + 2);
    });
  },
);

test(
  'the retry budget: a backend failing everything sees at most 1 + ratio of the requests',
  { timeout: 90_000 },
  async (t) => {
    const world = await startMeshWorld();
    t.after(() => world.close());
    const app = await startApp(0);
    t.after(() => app.close());
    await routedWorld(world, 'down', app.port);
    await writeServiceFile(world.root, 'default', 'down', {
      ports: [{ port: 8080, targetPort: 'http' }],
      annotations: {
        'retry.trellis.io/http': '503',
        'retry.trellis.io/limit': '3',
        'retry.trellis.io/budget-ratio': '0.2',
        'retry.trellis.io/budget-min-per-second': '0',
      },
    });
    await world.rescanRoutes();
    const client = await world.proxy({ identity: await identityFor(world, 'caller') });
    const out = portOf(client, 'outbound');
    // Wait until the policy is in force (a first request is retried).
    await until(
      () => send(out, `http://down.default:8080/down/warm-${Date.now()}`),
      () => metric(client, 'trellis_retries_total', { outcome: 'retried' }) > 0,
    );
    const before = [...app.hits.values()].reduce((a, b) => a + b, 0);
    const requests = 200;
    for (let i = 0; i < requests; i++) {
      const r = await send(out, `http://down.default:8080/down/${i}`);
      assert.equal(r.status, 503);
    }
    const seen = [...app.hits.values()].reduce((a, b) => a + b, 0) - before;
    // Three retries each would be 4x; the budget allows 20% of the requests (plus what the warm-up
    // requests deposited).
    assert.ok(seen <= requests * 1.3, `the backend saw ${seen} for ${requests} requests`);
    assert.ok(seen > requests, 'some requests were retried');
    assert.ok(metric(client, 'trellis_retries_total', { outcome: 'budget_exhausted' }) > 0);
  },
);

/** A gRPC app: the first call of each path answers trailers-only UNAVAILABLE, the next OK; it records the messages it got. */
async function startGrpcApp() {
  const hits = new Map<string, number>();
  const messages = new Map<string, string[]>();
  const deadlines: string[] = [];
  const server = http2.createServer();
  server.on('stream', (stream, headers) => {
    const path = String(headers[':path']);
    if (path.includes('Slow')) {
      // Never answers: the deadline the client gave (as the proxies pass it on) must end it.
      deadlines.push(String(headers['grpc-timeout']));
      stream.resume();
      return;
    }
    const n = (hits.get(path) ?? 0) + 1;
    hits.set(path, n);
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      messages.set(path, [...(messages.get(path) ?? []), Buffer.concat(chunks).toString('latin1')]);
      if (n === 1) {
        stream.respond(
          {
            ':status': 200,
            'content-type': 'application/grpc',
            'grpc-status': '14',
            'grpc-message': 'try later',
          },
          { endStream: true },
        );
        return;
      }
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(Buffer.concat(chunks));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as { port: number }).port,
    hits,
    messages,
    deadlines,
    close: () => server.close(),
  };
}

function grpcCall(
  port: number,
  path: string,
  message: Buffer,
  extra: Record<string, string> = {},
): Promise<Record<string, string>> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', reject);
    const req = session.request({
      ':method': 'POST',
      ':path': path,
      'content-type': 'application/grpc',
      te: 'trailers',
      ...extra,
    });
    const seen: Record<string, string> = {};
    let body = 0;
    req.on('response', (h) => Object.entries(h).forEach(([k, v]) => (seen[k] = String(v))));
    req.on('trailers', (h) => Object.entries(h).forEach(([k, v]) => (seen[k] = String(v))));
    req.on('data', (c: Buffer) => (body += c.length));
    req.on('error', reject);
    req.on('close', () => {
      session.close();
      seen['body-bytes'] = String(body);
      resolve(seen);
    });
    req.end(message);
  });
}

test(
  'gRPC retries by status name (Service annotation): the message is sent again',
  { timeout: 90_000 },
  async (t) => {
    const world = await startMeshWorld();
    t.after(() => world.close());
    const app = await startGrpcApp();
    t.after(() => app.close());
    await routedWorld(world, 'grpc', app.port);
    await writeServiceFile(world.root, 'default', 'grpc', {
      ports: [{ port: 8080, targetPort: 'http' }],
      annotations: { 'retry.trellis.io/grpc': 'unavailable' },
    });
    await world.rescanRoutes();
    const client = await world.proxy({
      identity: await identityFor(world, 'caller'),
      config: { destinations: [{ listen: '127.0.0.1:0', target: 'grpc.default:8080', protocol: 'h2' }] },
    });
    const bound = portOf(client, 'destination-0');
    // A gRPC message: 5-byte prefix, then the payload.
    const payload = Buffer.from('hello retries');
    const message = Buffer.concat([Buffer.from([0, 0, 0, 0, payload.length]), payload]);
    const deadline = Date.now() + 20_000;
    let i = 0;
    let r = await grpcCall(bound, `/trellis.test.Echo/Call${i}`, message);
    while (r['grpc-status'] !== '0' && Date.now() < deadline) {
      await new Promise((done) => setTimeout(done, 200));
      r = await grpcCall(bound, `/trellis.test.Echo/Call${++i}`, message);
    }
    assert.equal(r['grpc-status'], '0', JSON.stringify(r));
    const path = `/trellis.test.Echo/Call${i}`;
    assert.equal(app.hits.get(path), 2);
    assert.deepEqual(app.messages.get(path), [message.toString('latin1'), message.toString('latin1')]);
    assert.equal(r['body-bytes'], String(message.length));
    // grpc-timeout: honoured by the proxies (DEADLINE_EXCEEDED when it passes) and passed on with
    // what is left of it.
    const started = Date.now();
    const late = await grpcCall(bound, '/trellis.test.Echo/Slow', message, { 'grpc-timeout': '400m' });
    const took = Date.now() - started;
    assert.equal(late['grpc-status'], '4', JSON.stringify(late));
    assert.equal(late['trellis-proxy-error'], 'request-timeout');
    assert.ok(took >= 350 && took < 3000, `took ${took} ms`);
    assert.equal(app.deadlines.length, 1);
    const passed = /^([0-9]+)m$/.exec(app.deadlines[0]!);
    assert.ok(passed !== null && Number(passed[1]) <= 400 && Number(passed[1]) > 100, app.deadlines[0]);
  },
);
