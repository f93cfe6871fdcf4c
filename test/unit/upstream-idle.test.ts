// The HTTP/1 upstream pool's idle timeout (src/proxy/http/upstream-pool.ts, upstream-conn.ts), on
// real loopback sockets: a pooled connection closes once it has been idle for the timeout since it
// last went back to the pool (not since the first time), a connection handed out is never closed
// by it, and a request's trip through the pool (acquire, release) allocates no timer: measured.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HTTP1_LIMIT_DEFAULTS } from '../../src/proxy/config.ts';
import { UpstreamPool } from '../../src/proxy/http/upstream-pool.ts';
import type { UpstreamConn } from '../../src/proxy/http/upstream-conn.ts';
import { acquire, countingServer, owner, until } from '../helpers/upstream-pool.ts';
import { youngBytesPerCall } from '../helpers/young-allocation.ts';

const IDLE_MS = 300;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function pool(idleTimeoutMs: number): UpstreamPool {
  return new UpstreamPool({
    limits: HTTP1_LIMIT_DEFAULTS,
    maxIdlePerHost: 8,
    idleTimeoutMs,
    connectTimeoutMs: 2000,
  });
}

test('a pooled connection closes after the idle timeout from its last release; a busy one never', async (t) => {
  const server = await countingServer();
  t.after(() => server.close());
  const p = pool(IDLE_MS);
  t.after(() => p.close());
  const conn = await acquire(p, server.target);
  await until(() => server.open.size === 1, 'connected');
  conn.release(); // idle from now: the timer starts
  await sleep(IDLE_MS * 0.6);
  const again = await acquire(p, server.target);
  assert.equal(again, conn, 'the pooled connection is reused');
  await sleep(IDLE_MS * 0.6); // past the first release's deadline: busy, so it stays
  assert.equal(server.open.size, 1, 'a connection handed out is not closed by the idle timer');
  await sleep(IDLE_MS * 0.6);
  assert.equal(server.open.size, 1, 'still busy, still open');
  again.release(); // idle again: a full timeout from now
  const releasedAt = Date.now();
  await sleep(IDLE_MS * 0.6);
  assert.equal(server.open.size, 1, 'not idle for the whole timeout yet');
  await until(() => server.open.size === 0, 'the idle connection closed', IDLE_MS * 10);
  const idleFor = Date.now() - releasedAt;
  assert.ok(idleFor >= IDLE_MS - 20, `closed after ${idleFor} ms idle (timeout ${IDLE_MS} ms)`);
  assert.equal(p.idleCount, 0);
  assert.equal(server.accepted, 1);
});

test("a request's acquire and release of a pooled connection allocate no timer", async (t) => {
  const server = await countingServer();
  t.after(() => server.close());
  const p = pool(60_000);
  t.after(() => p.close());
  const sink = owner();
  (await acquire(p, server.target)).release();
  // An idle connection is handed out synchronously: the cycle runs without yielding.
  const release = (conn: UpstreamConn | null) => conn!.release();
  const cycle = (n: number) => {
    for (let i = 0; i < n; i++) p.acquire(server.target, sink, release);
  };
  const perCycle = youngBytesPerCall(cycle, 2_000);
  assert.equal(server.accepted, 1, 'one connection served every cycle');
  // A new Timeout (with its closure) per release made it ~370-425 bytes per cycle; what is left
  // (~100-140) is the pool's key string per acquire and the re-armed timer's start time.
  assert.ok(
    Math.min(...perCycle) < 200,
    `bytes per acquire/release: ${perCycle.map((b) => b.toFixed(1)).join(', ')}`,
  );
});
