// Pooled connections to an endpoint that left discovery are drained (issue 10; linkerd and Envoy
// do the same): through a real control plane over a temp state folder and in-process proxies on
// loopback, for each pool the client proxy has (the mesh's own HTTP/2 connections that carry
// HTTP/1, plain HTTP/1 keep-alive connections, mTLS HTTP/2 sessions, plain HTTP/2 sessions). Each
// endpoint is registered behind a counting TCP relay, so the test sees the connections from the
// endpoint's side:
// - a request in flight when its endpoint is deregistered completes; its connection closes right
//   after (not at its 300 s idle timeout);
// - a re-registered endpoint gets a new connection;
// - an idle pooled connection closes within about a second of the deregistration;
// - a request still in flight when the drain's grace (timeouts.drainGraceMs) ran out loses its
//   connection: a drain is bounded.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { once } from 'node:events';
import { rm } from 'node:fs/promises';
import { workloadPath } from '../../src/control/discovery/state-layout.ts';
import { idOf, identityFor, startMeshWorld, type MeshWorld } from '../helpers/mesh-pki.ts';
import { portOf } from '../helpers/running-proxy.ts';
import { sendRequest } from '../helpers/mesh-echo.ts';
import type { RunningProxy } from '../../src/proxy/proxy.ts';

/** How long after its endpoint left discovery an idle pooled connection may stay open. */
const IDLE_CLOSE_MS = 1000;
/** The drain's grace of the client proxy that cuts busy connections (the other's is a minute). */
const SHORT_GRACE_MS = 300;

/** A TCP relay in front of an endpoint that counts the connections made to it and when they close. */
async function startRelay(to: number) {
  let accepted = 0;
  const open = new Set<net.Socket>();
  const closedWaiters = new Set<() => void>();
  const server = net.createServer((down) => {
    accepted++;
    open.add(down);
    const up = net.connect(to, '127.0.0.1');
    down.pipe(up);
    up.pipe(down);
    const end = () => {
      down.destroy();
      up.destroy();
      if (!open.delete(down)) return;
      if (open.size === 0) for (const w of closedWaiters) w();
    };
    for (const s of [down, up]) {
      s.on('error', () => {});
      s.on('close', end);
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    get accepted() {
      return accepted;
    },
    get open() {
      return open.size;
    },
    /** Resolves with the time (ms since the epoch) when no connection is open, or rejects after `ms`. */
    allClosed(ms: number): Promise<number> {
      if (open.size === 0) return Promise.resolve(Date.now());
      return new Promise((resolve, reject) => {
        const done = () => {
          clearTimeout(timer);
          closedWaiters.delete(done);
          resolve(Date.now());
        };
        const timer = setTimeout(() => {
          closedWaiters.delete(done);
          reject(new Error(`${open.size} connection(s) still open after ${ms} ms`));
        }, ms);
        closedWaiters.add(done);
      });
    },
    close() {
      for (const s of open) s.destroy();
      server.close();
    },
  };
}
type Relay = Awaited<ReturnType<typeof startRelay>>;

/** Releases held answers, each with `hold()`'s answer function. */
interface Holder {
  held(): number;
  release(): void;
}

/** An HTTP/1 app: `/hold` is answered only on release(), anything else at once. */
async function startH1App(): Promise<{ port: number; close(): void } & Holder> {
  const held: http.ServerResponse[] = [];
  const server = http.createServer((req, res) => {
    req.resume();
    if (req.url === '/hold') held.push(res);
    else res.end('app');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    held: () => held.length,
    release: () => {
      for (const res of held.splice(0)) res.end('released');
    },
    close() {
      server.closeAllConnections();
      server.close();
    },
  };
}

/** An HTTP/2 (h2c) app: `/hold` is answered only on release(), anything else at once. */
async function startH2App(): Promise<{ port: number; close(): void } & Holder> {
  const held: http2.ServerHttp2Stream[] = [];
  const server = http2.createServer();
  server.on('stream', (stream, headers) => {
    stream.resume();
    if (headers[':path'] === '/hold') held.push(stream);
    else stream.respond({ ':status': 200 }, { endStream: true });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    held: () => held.length,
    release: () => {
      for (const stream of held.splice(0)) {
        stream.respond({ ':status': 200 });
        stream.end('released');
      }
    },
    close: () => server.close(),
  };
}

/** One HTTP/2 GET through `port` (h2c prior knowledge) for `authority`: its status and body. */
function h2Get(port: number, authority: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', reject);
    const req = session.request({ ':method': 'GET', ':path': path, ':authority': authority });
    let status = 0;
    let body = '';
    req.setEncoding('utf8');
    req.on('response', (h) => (status = Number(h[':status'])));
    req.on('data', (d: string) => (body += d));
    req.setTimeout(10_000, () => req.close(http2.constants.NGHTTP2_CANCEL));
    req.on('error', reject);
    req.on('close', () => {
      session.close();
      resolve({ status, body });
    });
    req.end();
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits (bounded) until the client proxy's discovery has `want` endpoints for `host`:8080. */
async function untilEndpoints(client: RunningProxy, host: string, want: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (client.runtime.discovery.endpointsOf({ host, port: 8080 }).length !== want) {
    assert.ok(Date.now() < deadline, `the client proxy never had ${want} endpoint(s) of ${host}`);
    await sleep(20);
  }
}

interface Case {
  readonly service: string;
  readonly protocol: 'http1' | 'h2';
  /** Registers the endpoint (behind the relay) again. */
  readonly register: () => Promise<void>;
  readonly relay: Relay;
  readonly app: Holder;
}

/** The four pools of the client proxy, one endpoint each behind a relay. */
async function cases(world: MeshWorld, t: { after(fn: () => unknown): void }): Promise<Case[]> {
  const out: Case[] = [];
  const add = async (service: string, protocol: 'http1' | 'h2', meshed: boolean) => {
    const app = protocol === 'http1' ? await startH1App() : await startH2App();
    t.after(() => app.close());
    let to = app.port;
    if (meshed) {
      const server = await world.proxy({ identity: await identityFor(world, service), app: app.port });
      to = portOf(server, 'inbound');
    }
    const relay = await startRelay(to);
    t.after(() => relay.close());
    const register = () => world.register(service, `${service}-1`, relay.port, idOf(service), meshed);
    await register();
    out.push({ service, protocol, register, relay, app });
  };
  await add('web', 'http1', true); // the mesh's own HTTP/2 connections (mesh/h2h1-pool.ts)
  await add('plain', 'http1', false); // plain keep-alive connections (http/upstream-pool.ts)
  await add('rpc', 'h2', true); // mTLS HTTP/2 sessions (http/h2-upstream-pool.ts)
  await add('rpcplain', 'h2', false); // plain HTTP/2 sessions (the same pool)
  return out;
}

test('pooled connections to an endpoint that left discovery are drained', { timeout: 120_000 }, async (t) => {
  const world = await startMeshWorld();
  t.after(() => world.close());
  const all = await cases(world, t);
  const identity = await identityFor(world, 'caller');
  const timeouts = (drainGraceMs: number) => ({ timeouts: { connectMs: 2000, drainGraceMs } });
  const client = await world.proxy({ identity, config: timeouts(60_000) });
  const hasty = await world.proxy({
    identity,
    // (a request cut after the grace is re-sent, and waits this long for another endpoint)
    config: { ...timeouts(SHORT_GRACE_MS), discovery: { address: world.destination, failFastMs: 300 } },
  });
  const askVia = (proxy: RunningProxy, c: Case, path: string) => {
    const out = portOf(proxy, 'outbound');
    const authority = `${c.service}.default:8080`;
    return c.protocol === 'http1'
      ? sendRequest(out, `http://${authority}${path}`)
      : h2Get(out, authority, path);
  };
  const ask = (c: Case, path: string) => askVia(client, c, path);
  /** Until the app holds `n` requests (bounded). */
  const untilHeld = async (c: Case, n: number) => {
    const deadline = Date.now() + 10_000;
    while (c.app.held() < n) {
      assert.ok(Date.now() < deadline, 'the held request never reached the app');
      await sleep(10);
    }
  };
  const deregister = (c: Case) => rm(workloadPath(world.root, 'default', `${c.service}-1`));

  for (const c of all) {
    await t.test(
      `${c.service} (${c.protocol}): an in-flight request completes, then its connection closes`,
      async () => {
        assert.equal((await ask(c, '/')).status, 200);
        assert.equal(c.relay.accepted, 1);
        assert.equal(c.relay.open, 1, 'the pooled connection stays open while the endpoint is known');
        const held = ask(c, '/hold');
        await untilHeld(c, 1);
        await deregister(c);
        await untilEndpoints(client, `${c.service}.default`, 0);
        assert.equal(c.relay.open, 1, 'the busy connection is not cut');
        c.app.release();
        const answer = await held;
        assert.equal(answer.status, 200);
        assert.equal(answer.body, 'released');
        await c.relay.allClosed(IDLE_CLOSE_MS);
      },
    );

    await t.test(`${c.service} (${c.protocol}): re-registered, it gets a new connection`, async () => {
      await c.register();
      await untilEndpoints(client, `${c.service}.default`, 1);
      assert.equal((await ask(c, '/')).status, 200);
      assert.equal(c.relay.accepted, 2);
      assert.equal(c.relay.open, 1);
    });

    await t.test(`${c.service} (${c.protocol}): its idle connection closes within a second`, async () => {
      const removed = Date.now();
      await deregister(c);
      await untilEndpoints(client, `${c.service}.default`, 0);
      const seen = Date.now();
      const closed = await c.relay.allClosed(IDLE_CLOSE_MS);
      t.diagnostic(
        `${c.service}: discovery saw the removal after ${seen - removed} ms, ` +
          `the endpoint saw the close ${closed - seen} ms later`,
      );
    });

    await t.test(
      `${c.service} (${c.protocol}): a request still in flight after the grace is cut`,
      async () => {
        await c.register();
        assert.equal((await askVia(hasty, c, '/')).status, 200);
        const held = askVia(hasty, c, '/hold').then(
          (r) => r.body,
          (e: Error) => e.message,
        );
        await untilHeld(c, 1);
        await deregister(c);
        await untilEndpoints(hasty, `${c.service}.default`, 0);
        const seen = Date.now();
        const closed = await c.relay.allClosed(SHORT_GRACE_MS + IDLE_CLOSE_MS);
        assert.notEqual(await held, 'released', 'the request did not get its answer');
        c.app.release(); // (nobody waits for it any more)
        t.diagnostic(`${c.service}: the busy connection was cut ${closed - seen} ms after the removal`);
      },
    );
  }
});
