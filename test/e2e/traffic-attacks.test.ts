// Attacks on traffic management through a real HTTP/2 forwarder (src/proxy/http/h2-exchange.ts,
// in-process, test/fixtures/grpc-proxy-harness.ts) and real servers on loopback: a grpc-timeout
// longer than a Node timer holds, a request mirror whose answer trickles, and request bodies
// kept for retries by many streams at once.
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import { test } from 'node:test';
import { silentLogger } from '../../src/core/log.ts';
import { parseAuthority } from '../../src/core/target.ts';
import { compileRouteTable } from '../../src/core/routes/matcher.ts';
import { ServiceDiscovery } from '../../src/proxy/outbound/discovery.ts';
import { RequestMirrors, type MirrorOutcome } from '../../src/proxy/outbound/mirror.ts';
import { OutboundRoutes } from '../../src/proxy/outbound/routes.ts';
import { StaticResolver, staticEndpoint } from '../../src/proxy/resolve/static.ts';
import { routesFromYaml } from '../unit/routes-helpers.ts';
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

test('a mirror that answers a byte at a time is abandoned when its time is up, HTTP/1 and HTTP/2', async (t) => {
  // Stands for the proxy's outbound listener: every copy gets a head, then a byte every 50 ms.
  const timers = new Set<NodeJS.Timeout>();
  const trickle = (write: () => void) => {
    const timer = setInterval(write, 50);
    timers.add(timer);
  };
  const h1 = http.createServer((_req, res) => {
    res.writeHead(200);
    trickle(() => res.write('.'));
  });
  const h2 = http2.createServer();
  h2.on('stream', (stream) => {
    stream.respond({ ':status': 200 });
    trickle(() => stream.destroyed || stream.write('.'));
  });
  h2.on('session', (s) => s.on('error', () => {}));
  for (const server of [h1, h2]) await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => {
    for (const timer of timers) clearInterval(timer);
    h1.closeAllConnections();
    h1.close();
    h2.close();
  });
  for (const [server, isH2] of [
    [h1, false],
    [h2, true],
  ] as const) {
    const outcomes: MirrorOutcome[] = [];
    const mirrors = new RequestMirrors({
      outboundPort: () => (server.address() as { port: number }).port,
      log: silentLogger,
      count: (o) => outcomes.push(o),
      timeoutMs: 300,
    });
    const started = Date.now();
    mirrors.send([{ host: 'shadow.default.svc', port: 80 }], {
      method: 'POST',
      pathAndQuery: '/copy',
      headers: {},
      body: [Buffer.from('x')],
      h2: isH2,
    });
    // Bounded wait: before the fix the copy's only timer was an idle one that every byte reset.
    while (outcomes.length === 0 && Date.now() - started < 3000) await new Promise((r) => setTimeout(r, 20));
    mirrors.close();
    assert.deepEqual(outcomes, ['failed'], isH2 ? 'HTTP/2' : 'HTTP/1');
  }
});

test('request bodies kept for retries are bounded for the whole proxy, not per stream', async (t) => {
  // Six concurrent HTTP/2 requests with 64 KiB bodies to a route that retries 503; the proxy may
  // keep 128 KiB of bodies in all (its real bound is 32 MiB: 512 such bodies, where 128 streams
  // on each of thousands of connections each kept 64 KiB before). The app answers every first
  // attempt 503 once all six are in, then 200 with the length of the body it got.
  const STREAMS = 6;
  const BODY = 64 * 1024;
  const hits = new Map<string, number>();
  let firstHits = 0;
  const waiting: (() => void)[] = [];
  const app = http2.createServer();
  app.on('stream', (stream, headers) => {
    const path = String(headers[':path']);
    const n = (hits.get(path) ?? 0) + 1;
    hits.set(path, n);
    let length = 0;
    stream.on('data', (d: Buffer) => (length += d.length));
    stream.on('end', () => {
      if (n > 1) {
        stream.respond({ ':status': 200 });
        stream.end(String(length));
        return;
      }
      waiting.push(() => {
        stream.respond({ ':status': 503 });
        stream.end();
      });
      if (++firstHits === STREAMS) for (const answer of waiting.splice(0)) answer();
    });
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => app.close(() => r())));
  const appPort = (app.address() as { port: number }).port;

  const table = compileRouteTable(
    routesFromYaml(`
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: retry, namespace: default }
spec:
  parentRefs: [{ group: "", kind: Service, name: web, port: 80 }]
  rules: [{ backendRefs: [{ name: web, port: 80 }], retry: { codes: [503], attempts: 1, backoff: 1ms } }]
`),
    () => true,
  );
  const routes = new OutboundRoutes({
    address: '127.0.0.1:1',
    namespace: 'default',
    waitMs: 1000,
    log: silentLogger,
    maxKeptBodyBytes: 2 * BODY,
    startWatch: (o) => {
      queueMicrotask(() => o.onTable(table));
      return { close() {} };
    },
  });
  t.after(() => routes.close());
  const discovery = new ServiceDiscovery({
    resolver: new StaticResolver({ 'web.default:80': [staticEndpoint(`127.0.0.1:${appPort}`)] }),
    failFastMs: 1000,
    idleMs: 0,
    log: silentLogger,
    namespace: 'default',
  });
  t.after(() => discovery.close());
  const proxy = await startProxyHarness({
    direction: 'outbound',
    route: (authority) => (authority === undefined ? null : parseAuthority(authority, 80)),
    routes,
    discovery,
  });
  t.after(() => proxy.close());

  const session = http2.connect(`http://${proxy.address}`);
  session.on('error', () => {});
  t.after(() => session.close());
  const statuses = await Promise.all(
    Array.from(
      { length: STREAMS },
      (_, i) =>
        new Promise<string>((resolve) => {
          const req = session.request({
            ':method': 'POST',
            ':path': `/p${i}`,
            ':authority': 'web.default:80',
            'content-length': String(BODY),
          });
          let status = 0;
          let body = '';
          req.on('response', (h) => (status = Number(h[':status'])));
          req.setEncoding('utf8');
          req.on('data', (d: string) => (body += d));
          req.on('end', () => resolve(`${status} ${body}`));
          req.on('error', (e) => resolve(`error ${e.message}`));
          req.end(Buffer.alloc(BODY, i));
        }),
    ),
  );
  const retried = statuses.filter((s) => s.startsWith('200'));
  assert.ok(retried.length <= 2, `${retried.length} of ${STREAMS} kept and retried: ${statuses.join(', ')}`);
  // Each retried request went again whole; the others got their failure as it was.
  for (const s of retried) assert.equal(s, `200 ${BODY}`);
  for (const s of statuses.filter((x) => !x.startsWith('200'))) assert.equal(s, '503 ');
  assert.equal(routes.keptBodies.bytes, 0, 'every exchange gave its room back');
});

test("a gRPC response trickled past the client's grpc-timeout ends there with DEADLINE_EXCEEDED", async (t) => {
  // The app answers at once, then sends a message every 50 ms for 2 s and only then its status.
  const app = http2.createServer();
  const timers = new Set<NodeJS.Timeout>();
  app.on('stream', (stream) => {
    stream.resume();
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
    let sent = 0;
    const timer = setInterval(() => {
      if (stream.destroyed || stream.closed) return clearInterval(timer);
      stream.write(Buffer.from([0, 0, 0, 0, 0]));
      if (++sent === 40) {
        clearInterval(timer);
        stream.end();
      }
    }, 50);
    timers.add(timer);
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  t.after(() => {
    for (const timer of timers) clearInterval(timer);
    return new Promise<void>((r) => app.close(() => r()));
  });
  const proxy = await startProxyHarness({
    connTarget: { host: '127.0.0.1', port: (app.address() as { port: number }).port },
  });
  t.after(() => proxy.close());
  const answer = await grpcCall(proxy.address, { 'grpc-timeout': '300m' });
  assert.equal(answer[':status'], '200', JSON.stringify(answer));
  assert.equal(answer['grpc-status'], '4', JSON.stringify(answer));
  assert.equal(answer['trellis-proxy-error'], 'request-timeout');
  // Without a grpc-timeout the same answer takes its time and ends with the app's own status.
  const slow = await grpcCall(proxy.address, {});
  assert.equal(slow['grpc-status'], '0', JSON.stringify(slow));
});
