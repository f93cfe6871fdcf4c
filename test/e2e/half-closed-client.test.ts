// A client that half-closes (FIN) while its request waits for an upstream that never answers: the
// usual shape of an app's HTTP client giving up on a hung backend (node, Go and curl close their
// side on a timeout). The proxy answers a half-closed client when the answer comes, but an
// exchange waiting on an upstream that never answers held the client socket, the upstream stream
// and the request body kept for a retry forever: the listener's connections fill up with busy
// ones (never shed: only idle ones are), and 512 such requests took the 32 MiB of kept bodies of
// the proxy for good, so no request of any Service was retried or mirrored again. Now such an
// exchange ends after timeouts.idleMs of silence, as an idle connection does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { writeRouteFile } from '../../src/control/routes/state-files.ts';
import { idOf, identityFor, startMeshWorld } from '../helpers/mesh-pki.ts';
import { portOf } from '../helpers/running-proxy.ts';
import { routesFromYaml } from '../unit/routes-helpers.ts';
import { sendRequest } from '../helpers/mesh-echo.ts';

const ROUTE = `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: web-retries, namespace: default }
spec:
  parentRefs: [{ group: "", kind: Service, name: web, port: 8080 }]
  rules:
    - matches: [{ path: { type: PathPrefix, value: /hang } }]
      retry: { codes: [503], attempts: 2, backoff: 10ms }
      backendRefs: [{ name: web, port: 8080 }]
`;

const BODY = 60 * 1024;
const CLIENTS = 10;

test(
  'a half-closed client waiting on an upstream that never answers is let go after idleMs',
  { timeout: 60_000 },
  async (t) => {
    const world = await startMeshWorld();
    t.after(() => world.close());
    let hanging = 0;
    let gaveUp = 0;
    const app = http.createServer((req, res) => {
      if (req.url === '/hang') {
        hanging++;
        req.resume();
        req.on('close', () => gaveUp++);
        return; // never answers
      }
      req.resume();
      req.on('end', () => res.end('ok'));
    });
    await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
    t.after(() => {
      app.closeAllConnections();
      app.close();
    });
    const server = await world.proxy({
      identity: await identityFor(world, 'web'),
      app: (app.address() as net.AddressInfo).port,
    });
    await world.register('web', 'web-1', portOf(server, 'inbound'), idOf('web'));
    for (const route of routesFromYaml(ROUTE, Date.now())) await writeRouteFile(world.root, route);
    const client = await world.proxy({
      identity: await identityFor(world, 'caller'),
      config: { timeouts: { connectMs: 2000, drainGraceMs: 200, idleMs: 1000 } },
    });
    const out = portOf(client, 'outbound');
    const kept = (): number => client.runtime.routes!.keptBodies.bytes;
    // The route is in force once a path it does not match gets 404.
    const deadline = Date.now() + 20_000;
    while ((await sendRequest(out, 'http://web.default:8080/warm')).status !== 404 && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 200));

    const closed: Promise<void>[] = [];
    for (let i = 0; i < CLIENTS; i++) {
      const socket = net.connect(out, '127.0.0.1');
      socket.on('error', () => {});
      await new Promise((resolve) => socket.once('connect', resolve));
      socket.write(
        `POST http://web.default:8080/hang HTTP/1.1\r\nHost: web.default:8080\r\nContent-Length: ${BODY}\r\n\r\n`,
      );
      socket.end(Buffer.alloc(BODY, 0x61)); // the whole request, then FIN: the client gives up
      closed.push(new Promise((resolve) => socket.once('close', () => resolve())));
    }
    const started = Date.now();
    while (hanging < CLIENTS && Date.now() - started < 10_000) await new Promise((r) => setTimeout(r, 50));
    assert.equal(hanging, CLIENTS, 'every request reached the app');
    assert.equal(kept(), CLIENTS * BODY, 'each body is kept for a retry while its exchange waits');

    // idleMs (1 s) of silence later each exchange is let go: the client's socket, the upstream
    // request and the kept body. (Before: still held after 10 s, and forever.)
    await Promise.race([Promise.all(closed), new Promise((resolve) => setTimeout(resolve, 10_000))]);
    const until = Date.now() + 5_000;
    while ((kept() > 0 || gaveUp < CLIENTS) && Date.now() < until)
      await new Promise((r) => setTimeout(r, 50));
    assert.equal(kept(), 0, 'kept bodies given back');
    assert.equal(gaveUp, CLIENTS, 'the app saw each hung request cancelled');
    const elapsed = Date.now() - started;
    assert.ok(elapsed < 8_000, `let go in ${elapsed} ms`);
  },
);
