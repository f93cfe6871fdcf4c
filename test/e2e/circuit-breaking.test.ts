// Circuit breaking through real proxies with mTLS (src/proxy/balance/backend-guard.ts): a client
// proxy sends HTTP/1 requests to a Service whose balancer.trellis.io/* annotations (in its state
// file, carried with its route set) ask for consecutive failure accrual or a pending limit. An
// endpoint always answering 500 trips after max-failures (alone: 503 all-endpoints-tripped at
// once); a healthy one joins and gets every request until the penalty ends; then exactly one
// probe; both failing: 503 all-endpoints-tripped at once; a slow backend
// holding max-pending-requests: 503 overflow at once; without the annotation nothing changes.
// The admin's /debug/breakers shows the breakers and trellis_breaker_events_total counts. And
// gRPC over HTTP/2: UNAVAILABLE counts as a failure, NOT_FOUND does not.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import { writeServiceFile } from '../../src/control/discovery/local-state.ts';
import { idOf, identityFor, startMeshWorld, type MeshWorld } from '../helpers/mesh-pki.ts';
import { metric, portOf } from '../helpers/running-proxy.ts';
import type { RunningProxy } from '../../src/proxy/proxy.ts';
import { sendRequest } from '../helpers/mesh-echo.ts';

/** GET `url` through 127.0.0.1:`port` (mesh-echo's one request helper). */
const get = (port: number, url: string) => sendRequest(port, url);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** An app answering `status()` (200 or 500); /hold waits until release(). */
async function startApp(status: () => number) {
  let hits = 0;
  const held: http.ServerResponse[] = [];
  const server = http.createServer((req, res) => {
    hits++;
    req.resume();
    if (req.url === '/hold') {
      held.push(res);
      return;
    }
    res.writeHead(status()).end('app');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as { port: number }).port,
    get hits() {
      return hits;
    },
    get held() {
      return held.length;
    },
    release() {
      for (const res of held.splice(0)) res.writeHead(200).end('released');
    },
    close() {
      server.closeAllConnections();
      server.close();
    },
  };
}
type App = Awaited<ReturnType<typeof startApp>>;

/** A workload of `service` behind its own meshed proxy. */
async function workload(world: MeshWorld, service: string, name: string, app: App): Promise<void> {
  const proxy = await world.proxy({ identity: await identityFor(world, service), app: app.port });
  await world.register(service, name, portOf(proxy, 'inbound'), idOf(service));
}

/** Sets a Service's annotations in its state file (after register wrote it). */
async function annotate(
  world: MeshWorld,
  service: string,
  annotations: Record<string, string>,
): Promise<void> {
  await writeServiceFile(world.root, 'default', service, {
    ports: [{ port: 8080, targetPort: 'http' }],
    annotations,
  });
  await world.rescanRoutes();
}

/** The client proxy's /debug/breakers, through its admin listener. */
async function breakers(
  client: RunningProxy,
): Promise<{ backend: string; endpoints: { state: string }[] }[]> {
  const r = await get(portOf(client, 'admin'), '/debug/breakers');
  assert.equal(r.status, 200);
  return JSON.parse(r.body) as { backend: string; endpoints: { state: string }[] }[];
}

/** Waits (bounded) until the client proxy guards `backend`. */
async function untilGuarded(client: RunningProxy, backend: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (!(await breakers(client)).some((b) => b.backend === backend)) {
    assert.ok(Date.now() < deadline, `the client proxy never guarded ${backend}`);
    await sleep(100);
  }
}

const PENALTY_MS = 8000;

test('circuit breaking on the client proxy, per backend endpoint', { timeout: 120_000 }, async (t) => {
  const world = await startMeshWorld();
  t.after(() => world.close());
  let goodStatus = 200;
  const good = await startApp(() => goodStatus);
  const bad = await startApp(() => 500);
  const slow = await startApp(() => 200);
  const plainBad = await startApp(() => 500);
  t.after(() => [good, bad, slow, plainBad].forEach((a) => a.close()));
  // The failing endpoint first, alone: which endpoint the balancer prefers does not matter.
  await workload(world, 'web', 'web-bad', bad);
  await workload(world, 'slow', 'slow-1', slow);
  await workload(world, 'plain', 'plain-1', plainBad);
  await annotate(world, 'web', {
    'balancer.trellis.io/failure-accrual': 'consecutive',
    'balancer.trellis.io/failure-accrual-max-failures': '3',
    'balancer.trellis.io/failure-accrual-min-penalty': `${PENALTY_MS}ms`,
    'balancer.trellis.io/failure-accrual-max-penalty': `${PENALTY_MS * 4}ms`,
    'balancer.trellis.io/failure-accrual-jitter-ratio': '0',
  });
  await annotate(world, 'slow', { 'balancer.trellis.io/max-pending-requests': '2' });

  const client = await world.proxy({ identity: await identityFor(world, 'caller') });
  const out = portOf(client, 'outbound');
  const ask = (service: string, path = '/') => get(out, `http://${service}.default:8080${path}`);
  let tripped = 0;

  await t.test('an endpoint answering 500 trips after 3 failures; alone, requests fail fast', async () => {
    assert.equal((await ask('web')).status, 500);
    await untilGuarded(client, 'web.default:8080');
    for (let i = 0; i < 10 && bad.hits < 3; i++) assert.equal((await ask('web')).status, 500);
    assert.equal(bad.hits, 3);
    tripped = Date.now();
    const r = await ask('web');
    assert.equal(r.status, 503);
    assert.equal(r.headers['trellis-proxy-error'], 'all-endpoints-tripped');
    assert.equal(bad.hits, 3);
    assert.equal(metric(client, 'trellis_breaker_events_total', { event: 'tripped' }), 1);
    assert.equal(metric(client, 'trellis_breaker_events_total', { event: 'all_tripped' }), 1);
  });

  await t.test('a healthy endpoint joins: it gets every request during the penalty', async () => {
    await workload(world, 'web', 'web-good', good);
    // Until the client proxy has the new endpoint (bounded).
    for (let i = 0; i < 100 && (await ask('web')).status !== 200; i++) await sleep(50);
    for (let i = 0; i < 10; i++) assert.equal((await ask('web')).status, 200);
    assert.ok(Date.now() - tripped < PENALTY_MS, 'the requests above all fell within the penalty');
    assert.equal(bad.hits, 3, 'no request reached the tripped endpoint during its penalty');
    const view = (await breakers(client)).find((b) => b.backend === 'web.default:8080')!;
    assert.deepEqual(view.endpoints.map((e) => e.state).sort(), ['closed', 'open']);
  });

  await t.test('after the penalty it gets exactly one probe; the failed probe trips it again', async () => {
    await sleep(Math.max(0, tripped + PENALTY_MS + 300 - Date.now()));
    const statuses: number[] = [];
    for (let i = 0; i < 10; i++) statuses.push((await ask('web')).status);
    assert.equal(bad.hits, 4, 'exactly one probe');
    assert.deepEqual(statuses.slice(1), Array(9).fill(200), 'the probe was the first request');
    assert.equal(statuses[0], 500);
    assert.equal(metric(client, 'trellis_breaker_events_total', { event: 'probe' }), 1);
    assert.equal(metric(client, 'trellis_breaker_events_total', { event: 'reopened' }), 1);
  });

  await t.test('every endpoint tripped: 503 all-endpoints-tripped at once', async () => {
    goodStatus = 500;
    // The healthy one fails too: 3 failures trip it (the other is in its second penalty).
    for (let i = 0; i < 3; i++) assert.equal((await ask('web')).status, 500);
    const started = Date.now();
    const r = await ask('web');
    assert.equal(r.status, 503);
    assert.equal(r.headers['trellis-proxy-error'], 'all-endpoints-tripped');
    // Not after discovery's 3 s fail-fast wait, nor the response timeout: at once.
    assert.ok(Date.now() - started < 2500);
    assert.equal(metric(client, 'trellis_breaker_events_total', { event: 'tripped' }), 2);
    goodStatus = 200;
  });

  await t.test(
    'max-pending-requests: over the limit 503 overflow at once while a slow backend holds requests',
    async () => {
      await ask('slow');
      await untilGuarded(client, 'slow.default:8080');
      const heldReplies = [ask('slow', '/hold'), ask('slow', '/hold')];
      const deadline = Date.now() + 10_000;
      while (slow.held < 2) {
        assert.ok(Date.now() < deadline, 'the app never held two requests');
        await sleep(20);
      }
      const over = await ask('slow');
      assert.equal(over.status, 503);
      assert.equal(over.headers['trellis-proxy-error'], 'overflow');
      assert.equal(slow.held, 2, 'the refused request never reached the app');
      slow.release();
      for (const r of await Promise.all(heldReplies)) assert.equal(r.status, 200);
      assert.equal((await ask('slow')).status, 200, 'room again');
      assert.equal(
        metric(client, 'trellis_breaker_events_total', { backend: 'slow.default:8080', event: 'overflow' }),
        1,
      );
    },
  );

  await t.test(
    'without the annotation nothing changes: every request reaches a failing endpoint',
    async () => {
      for (let i = 0; i < 10; i++) assert.equal((await ask('plain')).status, 500);
      assert.equal(plainBad.hits, 10);
      assert.equal(
        (await breakers(client)).some((b) => b.backend === 'plain.default:8080'),
        false,
      );
    },
  );
});

/** A gRPC app: a trailers-only answer whose grpc-status is the path's last segment. */
async function startGrpcApp() {
  let hits = 0;
  const server = http2.createServer();
  server.on('stream', (stream, headers) => {
    hits++;
    stream.resume();
    const status =
      String(headers[':path'] ?? '')
        .split('/')
        .pop() ?? '0';
    stream.respond(
      { ':status': 200, 'content-type': 'application/grpc', 'grpc-status': status },
      { endStream: true },
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as { port: number }).port,
    get hits() {
      return hits;
    },
    close: () => server.close(),
  };
}

/** One unary gRPC call; its headers and trailers as one record. */
function grpcCall(port: number, path: string): Promise<Record<string, string>> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', reject);
    const req = session.request({
      ':method': 'POST',
      ':path': path,
      'content-type': 'application/grpc',
      te: 'trailers',
    });
    const seen: Record<string, string> = {};
    const note = (h: http2.IncomingHttpHeaders) => {
      for (const [k, v] of Object.entries(h)) seen[k] = String(v);
    };
    req.on('response', note);
    req.on('trailers', note);
    req.setTimeout(10_000, () => req.close(http2.constants.NGHTTP2_CANCEL));
    req.on('error', reject);
    req.on('close', () => {
      session.close();
      resolve(seen);
    });
    req.resume();
    req.end();
  });
}

test(
  'gRPC over HTTP/2: UNAVAILABLE trips the endpoint, NOT_FOUND does not',
  { timeout: 90_000 },
  async (t) => {
    const world = await startMeshWorld();
    t.after(() => world.close());
    const app = await startGrpcApp();
    t.after(() => app.close());
    const server = await world.proxy({ identity: await identityFor(world, 'rpc'), app: app.port });
    await world.register('rpc', 'rpc-1', portOf(server, 'inbound'), idOf('rpc'));
    await annotate(world, 'rpc', {
      'balancer.trellis.io/failure-accrual': 'consecutive',
      'balancer.trellis.io/failure-accrual-max-failures': '2',
      'balancer.trellis.io/failure-accrual-min-penalty': '1m',
    });
    const client = await world.proxy({
      identity: await identityFor(world, 'caller'),
      config: { destinations: [{ listen: '127.0.0.1:0', target: 'rpc.default:8080', protocol: 'h2' }] },
    });
    const bound = portOf(client, 'destination-0');
    assert.equal((await grpcCall(bound, '/trellis.test.Echo/0'))['grpc-status'], '0');
    await untilGuarded(client, 'rpc.default:8080');
    // NOT_FOUND is an answer about the request: never a failure of the endpoint.
    for (let i = 0; i < 5; i++)
      assert.equal((await grpcCall(bound, '/trellis.test.Echo/5'))['grpc-status'], '5');
    assert.equal((await grpcCall(bound, '/trellis.test.Echo/14'))['grpc-status'], '14');
    assert.equal((await grpcCall(bound, '/trellis.test.Echo/14'))['grpc-status'], '14');
    assert.equal(app.hits, 8);
    const refused = await grpcCall(bound, '/trellis.test.Echo/0');
    assert.equal(refused['trellis-proxy-error'], 'all-endpoints-tripped');
    assert.equal(refused['grpc-status'], '14');
    assert.equal(app.hits, 8, 'the tripped endpoint got nothing');
  },
);
