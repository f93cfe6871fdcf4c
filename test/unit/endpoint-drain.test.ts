// Draining what the pools hold for an endpoint that left discovery (issue 10), piece by piece:
// EndpointPresence tells only when the last set holding an address removed it (not when a set is
// merely closed), and the HTTP/1 and HTTP/2 pools, on real loopback sockets, close an idle
// connection at once, a busy one when its exchange ends or when the drain's grace ran out, and
// start afresh for the address. (test/e2e/endpoint-drain.test.ts runs the whole path.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import { once } from 'node:events';
import { silentLogger } from '../../src/core/log.ts';
import { targetKey } from '../../src/core/target.ts';
import { EndpointPresence } from '../../src/proxy/balance/endpoint-presence.ts';
import { EndpointSet } from '../../src/proxy/balance/endpoint-set.ts';
import { HTTP1_LIMIT_DEFAULTS } from '../../src/proxy/config.ts';
import { H2UpstreamPool } from '../../src/proxy/http/h2-upstream-pool.ts';
import { UpstreamPool } from '../../src/proxy/http/upstream-pool.ts';
import { staticEndpoint } from '../../src/proxy/resolve/static.ts';
import { acquire, countingServer, until } from '../helpers/upstream-pool.ts';

test('an address leaves when the last set holding it removes it; a closed set tells nothing', () => {
  const presence = new EndpointPresence();
  const left: string[] = [];
  presence.onLeft((key) => left.push(key));
  const a = new EndpointSet({ presence });
  const b = new EndpointSet({ presence });
  const shared = staticEndpoint('10.0.0.1:80');
  a.apply({ kind: 'reset', endpoints: [shared, staticEndpoint('10.0.0.2:80')] });
  b.apply({ kind: 'add', endpoints: [shared] });
  a.apply({ kind: 'reset', endpoints: [staticEndpoint('10.0.0.2:80'), shared] }); // the same: nothing leaves
  assert.deepEqual(left, []);
  a.apply({ kind: 'remove', addresses: ['10.0.0.1:80'] });
  assert.deepEqual(left, [], 'b still holds it');
  assert.ok(presence.holds('10.0.0.1:80'));
  b.apply({ kind: 'does-not-exist' });
  assert.deepEqual(left, ['10.0.0.1:80']);
  a.apply({ kind: 'reset', endpoints: [staticEndpoint('10.0.0.3:80')] });
  assert.deepEqual(left, ['10.0.0.1:80', '10.0.0.2:80']);
  a.close(); // no longer watched is not gone
  assert.deepEqual(left, ['10.0.0.1:80', '10.0.0.2:80']);
  assert.equal(presence.holds('10.0.0.3:80'), false);
});

test('HTTP/1 pool: idle connections close at once, busy ones at release or after the grace', async (t) => {
  const server = await countingServer();
  t.after(() => server.close());
  const pool = new UpstreamPool({
    limits: HTTP1_LIMIT_DEFAULTS,
    maxIdlePerHost: 8,
    idleTimeoutMs: 300_000,
    connectTimeoutMs: 2000,
  });
  t.after(() => pool.close());
  const address = targetKey(server.target);
  const idle = await acquire(pool, server.target);
  const released = await acquire(pool, server.target);
  const stuck = await acquire(pool, server.target);
  idle.release();
  await until(() => server.accepted === 3, 'three connections');
  assert.equal(pool.idleCount, 1);

  pool.drainEndpoint(address, 300);
  const drainedAt = Date.now();
  await until(() => server.open.size === 2, 'the idle connection closed');
  assert.equal(pool.idleCount, 0);
  released.release(); // its exchange ended: it closes instead of going back to the pool
  await until(() => server.open.size === 1, 'the released connection closed');
  assert.equal(pool.idleCount, 0);
  const fresh = await acquire(pool, server.target);
  assert.equal(server.accepted, 4, 'the address starts afresh with a new connection');
  fresh.release();
  assert.equal(pool.idleCount, 1, 'the new connection is pooled as usual');
  await until(() => stuck.closed, 'the busy connection cut after the grace');
  assert.ok(Date.now() - drainedAt >= 250, 'not before the grace');
  assert.equal(server.open.size, 1, 'only the new connection is left');
});

test('HTTP/2 pool: an idle session closes at once, a busy one when its stream ends or after the grace', async (t) => {
  const held: http2.ServerHttp2Stream[] = [];
  const h2 = http2.createServer();
  const sessionsClosed: number[] = [];
  h2.on('session', (s) => s.on('close', () => sessionsClosed.push(Date.now())));
  h2.on('stream', (stream, headers) => {
    if (headers[':path'] === '/hold') held.push(stream);
    else stream.respond({ ':status': 200 }, { endStream: true });
  });
  h2.listen(0, '127.0.0.1');
  await once(h2, 'listening');
  t.after(() => h2.close());
  const target = { host: '127.0.0.1', port: (h2.address() as net.AddressInfo).port };
  const pool = new H2UpstreamPool({ connectTimeoutMs: 2000, idleTimeoutMs: 300_000, log: silentLogger });
  t.after(() => pool.close(true));
  const get = async (path: string) => {
    const { stream } = await pool.request(target, { ':path': path }, { endStream: true });
    const [headers] = (await once(stream, 'response')) as [http2.IncomingHttpHeaders];
    stream.resume();
    await once(stream, 'close');
    return headers[':status'];
  };

  // Idle: closed at once.
  assert.equal(await get('/'), 200);
  assert.equal(pool.sessionCount, 1);
  pool.drainEndpoint(targetKey(target), 60_000);
  await until(() => sessionsClosed.length === 1, 'the idle session closed');
  // The server sees the close first; the pool lets go on its own side's 'close', a moment later.
  await until(() => pool.sessionCount === 0, 'the pool let go of the idle session');

  // Busy: its stream finishes, then it closes; a new request gets a new session meanwhile.
  const slow = get('/hold');
  await until(() => held.length === 1, 'the held stream reached the server');
  pool.drainEndpoint(targetKey(target), 60_000);
  assert.equal(await get('/'), 200, 'a new request goes on a new session');
  assert.equal(pool.sessionCount, 2);
  held.shift()!.respond({ ':status': 200 }, { endStream: true });
  assert.equal(await slow, 200, 'the stream in flight completes');
  await until(() => sessionsClosed.length === 2, 'the drained session closed after its stream');
  await until(() => pool.sessionCount === 1, 'the pool let go of the drained session');

  // Busy past the grace: destroyed.
  const stuck = pool.request(target, { ':path': '/hold' }, { endStream: true });
  await until(() => held.length === 1, 'the held stream reached the server');
  const drainedAt = Date.now();
  pool.drainEndpoint(targetKey(target), 300);
  const { stream } = await stuck;
  stream.on('error', () => {});
  await until(() => sessionsClosed.length === 3, 'the busy session cut after the grace');
  assert.ok(sessionsClosed[2]! - drainedAt >= 250, 'not before the grace');
  await until(() => pool.sessionCount === 0, 'the pool let go of the cut session');
});
