// Rapid reset on the own HTTP/2 (issue 9, 2.3): each stream the peer cancelled used to cost the
// inbound proxy an app connection (the bridge destroyed the one its request was on): 80
// connections made 72k app connections and 13k sockets in TIME-WAIT. Now a cancelled stream
// leaves its connection reading the app's answer (dropped, bounded) and then reused, and the app
// gets at most APP_CONNECTION_LIMIT connections at once; streams over it wait (bounded), then get
// 503 upstream-busy. The app server counts its connections.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type http from 'node:http';
import { ErrorCode } from '../../src/proxy/h2/frames.ts';
import { APP_CONNECTION_LIMIT, ABANDONED_RESPONSE_MAX_BYTES } from '../../src/proxy/mesh/h2-to-h1.ts';
import { GET, RawPeer, rawClient, rawFrames } from '../helpers/h2-raw.ts';
import { exchange, field, h2Client, startInboundWorld } from '../helpers/h2h1-inbound.ts';
import { HpackEncoder } from '../../src/proxy/h2/hpack.ts';

const delay = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond() && Date.now() < deadline) await delay(10);
}

test('rapid reset: 4,000 streams cancelled while the app works on them cost a bounded number of connections', async () => {
  // The app answers after 20 ms; each round's resets follow its requests by 5 ms, when the
  // requests are with the app (the case that used to cost a connection per stream).
  const world = await startInboundWorld({ answer: (_req, res) => setTimeout(() => res.end('ok'), 20) });
  const peers: RawPeer[] = [];
  try {
    for (let c = 0; c < 8; c++) {
      const p = await RawPeer.connect(world.port);
      await p.write(rawClient(() => {}));
      peers.push(p);
    }
    const encoders = peers.map(() => new HpackEncoder());
    let streams = 0;
    // 8 connections x 5 rounds x 100 streams (under the 1,000 resets a second that cost a
    // connection its GOAWAY).
    for (let round = 0; round < 5; round++) {
      const ids = Array.from({ length: 100 }, (_, k) => 2 * (round * 100 + k) + 1);
      for (let c = 0; c < peers.length; c++) {
        await peers[c]!.write(
          rawFrames((w) => {
            for (const id of ids) w.headers(id, encoders[c]!.encode(GET(`/r${id}`)), true, 16384);
          }),
        );
        streams += ids.length;
      }
      // The resets come while the app works on the requests: wait until a share of this round
      // reached it (a fixed pause was too short on a loaded machine), bounded at 2 s.
      const reached = world.seen.length + 250;
      for (let waited = 0; world.seen.length < reached && waited < 2000; waited += 5) await delay(5);
      for (const p of peers)
        await p.write(rawFrames((w) => ids.forEach((id) => w.rstStream(id, ErrorCode.CANCEL))));
      await delay(120);
    }
    await delay(300);
    const used = world.appConnections();
    console.log(
      `${streams} cancelled streams, ${world.seen.length} reached the app, ${used} app connections`,
    );
    assert.equal(streams, 4000);
    assert.ok(world.seen.length > 1000, 'the requests did reach the app before their reset');
    assert.ok(used <= APP_CONNECTION_LIMIT.maxConnections, `${used} app connections`);
    assert.ok(world.pool.idleCount > 0, 'the connections went back to the pool');
    assert.ok(
      peers.every((p) => !p.closed),
      'no attacker hit the reset rate limit here',
    );
    // The app still answers, on a pooled connection.
    const conn = await h2Client(world.port);
    assert.equal((await exchange(conn, GET('/after'))).status, 200);
    assert.equal(world.appConnections(), used);
    conn.destroy(null);
  } finally {
    for (const p of peers) p.close();
    await world.close();
  }
});

test('streams over the app connection limit wait, and past the wait queue get 503 upstream-busy', async () => {
  const held: http.ServerResponse[] = [];
  const world = await startInboundWorld({
    appLimit: { maxConnections: 4, maxWaiting: 8, waitTimeoutMs: 5000 },
    answer: (_req, res) => held.push(res),
  });
  const conn = await h2Client(world.port);
  try {
    const replies = Array.from({ length: 20 }, (_, i) => exchange(conn, GET(`/h${i}`)));
    await until(() => held.length === 4 && world.metrics.errors.length === 8);
    assert.equal(held.length, 4, 'four requests reached the app');
    assert.equal(world.metrics.errors.filter((e) => e === 'upstream-busy').length, 8);
    // The app answers: each connection goes to a waiting stream, until all are served.
    while (world.seen.length < 12 || held.length > 0) {
      for (const res of held.splice(0)) res.end('ok');
      await delay(10);
    }
    const all = await Promise.all(replies);
    const busy = all.filter((r) => r.status === 503);
    assert.equal(all.filter((r) => r.status === 200).length, 12);
    assert.equal(busy.length, 8);
    for (const r of busy) assert.equal(field(r.fields, 'trellis-proxy-error'), 'upstream-busy');
    assert.equal(world.appConnections(), 4, 'never more than the limit');
  } finally {
    conn.destroy(null);
    await world.close();
  }
});

test('a waiting stream that the peer cancels gives up its place and takes no connection', async () => {
  const held: http.ServerResponse[] = [];
  const world = await startInboundWorld({
    appLimit: { maxConnections: 1, maxWaiting: 4, waitTimeoutMs: 5000 },
    answer: (_req, res) => held.push(res),
  });
  const conn = await h2Client(world.port);
  try {
    const a = exchange(conn, GET('/a'));
    await until(() => held.length === 1);
    let bClosed: number | null | undefined;
    const b = conn.request(GET('/b'), true, {
      onHeaders() {},
      onData() {},
      onClose: (code) => (bClosed = code),
      onDrain() {},
    })!;
    const c = exchange(conn, GET('/c'));
    await delay(50);
    b.reset(ErrorCode.CANCEL);
    assert.equal(bClosed, ErrorCode.CANCEL);
    await until(() => world.metrics.statuses.length === 1); // the proxy saw the reset (and counted /b)
    held.shift()!.end('a');
    await until(() => held.length === 1);
    held.shift()!.end('c');
    assert.equal((await a).status, 200);
    assert.equal((await c).status, 200);
    assert.deepEqual(
      world.seen.map((r) => r.url),
      ['/a', '/c'],
    );
    assert.equal(world.appConnections(), 1);
  } finally {
    conn.destroy(null);
    await world.close();
  }
});

test('a cancelled stream’s answer is read and dropped and its connection reused; a long one costs it', async () => {
  const world = await startInboundWorld({
    answer: (req, res) => {
      const size = req.url === '/big' ? 4 * ABANDONED_RESPONSE_MAX_BYTES : 2;
      setTimeout(() => res.end(Buffer.alloc(size, 'x')), 100);
    },
  });
  const conn = await h2Client(world.port);
  try {
    const cancelAfterApp = async (path: string): Promise<void> => {
      const s = conn.request(GET(path), true, { onHeaders() {}, onData() {}, onClose() {}, onDrain() {} })!;
      const before = world.seen.length;
      await until(() => world.seen.length > before);
      s.reset(ErrorCode.CANCEL);
      await delay(200); // the app answers meanwhile
    };
    await cancelAfterApp('/slow');
    assert.equal((await exchange(conn, GET('/next'))).status, 200);
    assert.equal(world.appConnections(), 1, 'the cancelled request’s connection was reused');
    await cancelAfterApp('/big');
    assert.equal((await exchange(conn, GET('/after-big'))).status, 200);
    assert.equal(world.appConnections(), 2, 'an answer over the bound cost its connection');
  } finally {
    conn.destroy(null);
    await world.close();
  }
});
