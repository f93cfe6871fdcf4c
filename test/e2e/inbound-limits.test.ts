// Resources an outsider can hold on the inbound listener (issue 9, section 2.4-2.6): a request
// body cut short by FIN or left stalled, a slowloris before and during detection, a client that
// sends nothing at all, and more connections than the listener may hold. Each test measures the
// bound: how long the proxy keeps the connection, and how many it keeps.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { once } from 'node:events';
import { startMeshWorld, type MeshWorld } from '../helpers/mesh-pki.ts';
import { rawExchange, sleep, startRecordingApp, type RecordingApp } from '../helpers/attack.ts';
import { CLI, LOOPBACK_LISTENERS, NODE, REPO } from '../helpers/proxy-process.ts';
import { metric, portOf } from '../helpers/running-proxy.ts';

async function waitFor(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

async function plaintextServer(world: MeshWorld, app: RecordingApp, config: Record<string, unknown>) {
  return world.proxy({ identity: null, app: app.port, config: { detect: { timeoutMs: 300 }, ...config } });
}

/** A mesh, a recording app and a plaintext proxy in front of it, all closed when the test ends. */
async function plaintextSetup(t: { after(fn: () => unknown): void }, config: Record<string, unknown>) {
  const world = await startMeshWorld();
  t.after(() => world.close());
  const app = await startRecordingApp();
  t.after(() => app.close());
  const proxy = await plaintextServer(world, app, config);
  return { world, app, proxy, inbound: portOf(proxy, 'inbound') };
}

test('a request body cut short or stalled ends the exchange promptly', { timeout: 60_000 }, async (t) => {
  const { app, proxy, inbound } = await plaintextSetup(t, {
    timeouts: { requestBodyIdleMs: 500, drainGraceMs: 200 },
  });

  await t.test('Content-Length 11, one byte, FIN: 400 at once, both connections closed', async () => {
    const r = await rawExchange(inbound, ['POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nA'], {
      fin: true,
      gapMs: 50,
    });
    assert.ok(r.closed, 'the proxy closed the connection');
    assert.ok(r.ms < 1500, `closed after ${r.ms} ms`);
    assert.match(r.text, /^HTTP\/1\.1 400 /);
    await waitFor('the app connection to close', () => app.open() === 0);
  });

  await t.test('a chunked body cut short by FIN: the same', async () => {
    const r = await rawExchange(
      inbound,
      ['POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab'],
      { fin: true, gapMs: 50 },
    );
    assert.ok(r.closed && r.ms < 1500, `closed: ${r.closed} after ${r.ms} ms`);
    await waitFor('the app connection to close', () => app.open() === 0);
  });

  await t.test('a body that stops arriving: 408 after requestBodyIdleMs', async () => {
    const r = await rawExchange(inbound, ['POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nA']);
    assert.ok(r.closed, 'the proxy closed the connection');
    assert.ok(r.ms >= 400 && r.ms < 2500, `closed after ${r.ms} ms`);
    assert.match(r.text, /^HTTP\/1\.1 408 /);
    await waitFor('the app connection to close', () => app.open() === 0);
  });

  await t.test('a slow body that keeps coming is not cut off', async () => {
    const parts = ['POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nConnection: close\r\n\r\n'];
    for (const c of 'abcdef') parts.push(c);
    const r = await rawExchange(inbound, parts, { gapMs: 300 });
    assert.match(r.text, /^HTTP\/1\.1 200 /);
  });

  await t.test('200 truncated POSTs with FIN leave nothing open', async () => {
    const all = [];
    for (let i = 0; i < 200; i++) {
      all.push(
        rawExchange(inbound, ['POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nA'], {
          fin: true,
          timeoutMs: 5000,
        }),
      );
    }
    const replies = await Promise.all(all);
    assert.ok(
      replies.every((r) => r.closed),
      `${replies.filter((r) => !r.closed).length} connections left open`,
    );
    // Every app connection is closed or idle in the pool (an exchange answered while its app
    // connection was still being made gives that fresh connection to the pool): none is held.
    await waitFor(
      'the app connections to be closed or pooled',
      () => app.open() === proxy.runtime.pool.idleCount,
    );
    assert.ok(app.open() <= 128, `${app.open()} app connections open`);
    assert.equal(proxy.runtime.connections.size, 0);
  });

  await t.test('a whole body sent with its FIN in one write is forwarded, not refused', async () => {
    // Found by the fuzz campaign: the FIN came while the exchange waited for an app connection,
    // with the whole body already read, and was taken for a cut body (400).
    const bodies = [
      'Content-Length: 5\r\n\r\nhello',
      'Transfer-Encoding: chunked\r\n\r\n5 ; a="b"\r\nhello\r\n0\r\n\r\n',
    ];
    const all = [];
    for (let i = 0; i < 20; i++) {
      const request = `POST / HTTP/1.1\r\nHost: a\r\n${bodies[i % 2]}`;
      all.push(rawExchange(inbound, [request], { fin: true, timeoutMs: 5000 }));
    }
    const statuses = (await Promise.all(all)).map((r) => r.text.slice(0, 12));
    assert.deepEqual(statuses, Array(20).fill('HTTP/1.1 200'));
  });
});

test(
  'slowloris on inbound: every stage before and during detection has a timeout',
  { timeout: 60_000 },
  async (t) => {
    const { app, inbound } = await plaintextSetup(t, {
      timeouts: { requestHeadMs: 1000, idleMs: 1000, drainGraceMs: 200 },
    });

    await t.test('one byte at a time from the first byte: 408, the app never connected', async () => {
      const before = app.connections();
      const line = 'GET / HTTP/1.1\r\nHost: a\r\n';
      const r = await rawExchange(inbound, [...line], { gapMs: 100, timeoutMs: 8000 });
      assert.ok(r.closed, 'closed by the proxy');
      assert.match(r.text, /^HTTP\/1\.1 408 /);
      assert.ok(r.ms < 3500, `closed after ${r.ms} ms`);
      assert.equal(app.connections(), before);
    });

    await t.test('nothing at all: closed after the idle timeout, with its app connection', async () => {
      const r = await rawExchange(inbound, [], { timeoutMs: 8000 });
      assert.ok(r.closed, 'closed by the proxy');
      assert.ok(r.ms >= 900 && r.ms < 4000, `closed after ${r.ms} ms`);
      await waitFor('the app connection to close', () => app.open() === 0);
    });
  },
);

test(
  'a listener holds a bounded number of connections, shedding the idle ones first',
  { timeout: 60_000 },
  async (t) => {
    const { world, app, proxy, inbound } = await plaintextSetup(t, {
      connections: { maxPerListener: 20, maxPerPeer: 0 },
    });

    const sockets: net.Socket[] = [];
    t.after(() => sockets.forEach((s) => s.destroy()));
    const closed = new Set<number>();
    for (let i = 0; i < 50; i++) {
      const s = net.connect({ host: '127.0.0.1', port: inbound });
      s.on('error', () => {});
      s.on('close', () => closed.add(i));
      await once(s, 'connect');
      sockets.push(s);
    }
    await waitFor('30 idle connections to be shed', () => closed.size >= 30);
    await sleep(100);
    assert.equal(closed.size, 30, 'exactly the connections over the limit went');
    // The oldest went first.
    for (let i = 0; i < 30; i++) assert.ok(closed.has(i), `connection ${i} (among the oldest) was shed`);
    assert.equal(proxy.runtime.connections.size, 20);
    assert.equal(metric(proxy, 'trellis_connection_limit_total', { limit: 'listener', action: 'shed' }), 30);
    // A real client still gets in (an idle one makes room).
    const r = await rawExchange(inbound, ['GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n']);
    assert.match(r.text, /^HTTP\/1\.1 200 /);

    await t.test('busy connections are never shed: a new one is refused instead', async () => {
      const busy = await plaintextServer(world, app, { connections: { maxPerListener: 2, maxPerPeer: 0 } });
      const port = portOf(busy, 'inbound');
      // Two requests whose bodies are still arriving (busy exchanges).
      const held: net.Socket[] = [];
      for (let i = 0; i < 2; i++) {
        const s = net.connect({ host: '127.0.0.1', port });
        s.on('error', () => {});
        await once(s, 'connect');
        s.write('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nxx');
        held.push(s);
      }
      t.after(() => held.forEach((s) => s.destroy()));
      await waitFor('both bodies to reach the app', () => app.open() >= 2);
      const refused = await rawExchange(port, ['GET / HTTP/1.1\r\nHost: a\r\n\r\n'], { timeoutMs: 3000 });
      assert.ok(refused.closed && refused.text === '', `the third connection was served: ${refused.text}`);
      assert.equal(
        metric(busy, 'trellis_connection_limit_total', { limit: 'listener', action: 'refused' }),
        1,
      );
      assert.ok(held.every((s) => !s.destroyed));
    });

    await t.test('per peer: one address cannot take the whole listener', async () => {
      const perPeer = await plaintextServer(world, app, {
        connections: { maxPerListener: 100, maxPerPeer: 5 },
      });
      const port = portOf(perPeer, 'inbound');
      const mine: net.Socket[] = [];
      let gone = 0;
      for (let i = 0; i < 12; i++) {
        const s = net.connect({ host: '127.0.0.1', port });
        s.on('error', () => {});
        s.on('close', () => gone++);
        await once(s, 'connect');
        mine.push(s);
      }
      t.after(() => mine.forEach((s) => s.destroy()));
      await waitFor('7 connections of the peer to be shed', () => gone >= 7);
      assert.equal(perPeer.runtime.connections.size, 5);
      assert.equal(metric(perPeer, 'trellis_connection_limit_total', { limit: 'peer', action: 'shed' }), 7);
    });
  },
);

test(
  'the proxy runs with its soft open-files limit raised to the hard limit',
  { timeout: 30_000 },
  async (t) => {
    const hard = Number(
      readFileSync('/proc/self/limits', 'utf8')
        .split('\n')
        .find((l) => l.startsWith('Max open files'))!
        .slice('Max open files'.length)
        .trim()
        .split(/\s+/)[1],
    );
    if (!Number.isInteger(hard) || hard <= 1024) {
      t.skip(`the hard limit (${hard}) leaves nothing to raise`);
      return;
    }
    const proc = spawn('prlimit', [`--nofile=1024:${hard}`, NODE, CLI, 'proxy', ...LOOPBACK_LISTENERS], {
      cwd: REPO,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    t.after(() => proc.kill('SIGKILL'));
    const spawned = await Promise.race([
      once(proc, 'spawn').then(() => true),
      once(proc, 'error').then(() => false),
    ]);
    if (!spawned) {
      t.skip('prlimit (util-linux) is not installed');
      return;
    }
    await once(proc.stdout!, 'data');
    const limits = readFileSync(`/proc/${proc.pid}/limits`, 'utf8');
    const line = limits.split('\n').find((l) => l.startsWith('Max open files'))!;
    const [soft, hardNow] = line.slice('Max open files'.length).trim().split(/\s+/);
    assert.equal(soft, hardNow, line);
  },
);
