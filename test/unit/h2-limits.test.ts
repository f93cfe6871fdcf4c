// The own HTTP/2 connection's limits against attackers (issue 9, 2.1 and 2.2): a CONTINUATION
// flood (CVE-2024-27316), header blocks over the size limit, 1xx floods on one stream, header
// bytes held by one connection's streams, and peers that ask for answers but never read them,
// many connections at once: what the proxy queues stays under the per-connection, per-peer and
// process limits (measured, with the process's RSS), and a well-behaved client is served meanwhile.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import { once } from 'node:events';
import { H2Connection, type H2ConnectionOptions } from '../../src/proxy/h2/connection.ts';
import { ErrorCode, Flag, FrameReader, FrameType, FrameWriter, Setting } from '../../src/proxy/h2/frames.ts';
import { HpackEncoder } from '../../src/proxy/h2/hpack.ts';
import {
  CONNECTION_WINDOW,
  MAX_CONNECTION_HEADER_BYTES,
  MAX_CONTINUATION_FRAMES,
  QUEUE_LIMITS,
  type H2Limit,
} from '../../src/proxy/h2/limits.ts';
import { QueueBudget } from '../../src/proxy/h2/queue-budget.ts';
import type { H2Stream } from '../../src/proxy/h2/stream.ts';
import { GET, RawPeer, rawClient, rawFrames } from '../helpers/h2-raw.ts';

const delay = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface OurServer {
  port: number;
  conns: H2Connection[];
  limits: H2Limit[];
  close(): void;
}

/** A net server whose connections are our H2Connection (server role). */
async function ourServer(
  onStream: (stream: H2Stream, fields: string[], end: boolean) => void,
  extra: (index: number) => Partial<H2ConnectionOptions> = () => ({}),
): Promise<OurServer> {
  const conns: H2Connection[] = [];
  const limits: H2Limit[] = [];
  const server = net.createServer((socket) => {
    socket.on('error', () => {});
    conns.push(
      new H2Connection(socket, {
        role: 'server',
        onStream,
        onLimit: (limit) => limits.push(limit),
        ...extra(conns.length),
      }),
    );
  });
  await once(server.listen(0, '127.0.0.1'), 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    conns,
    limits,
    close() {
      for (const c of conns) c.destroy(null);
      server.close();
    },
  };
}

const goawayCode = (f: { payload: Buffer } | undefined): number | undefined => f?.payload.readUInt32BE(4);

test('a flood of empty CONTINUATION frames ends in GOAWAY ENHANCE_YOUR_CALM, counted', async () => {
  let handed = 0;
  const srv = await ourServer(() => handed++);
  const peer = await RawPeer.connect(srv.port);
  try {
    const start = rawClient((w, enc) => {
      const block = enc.encode(GET('/'));
      w.header(block.length, FrameType.HEADERS, Flag.END_STREAM, 1); // no END_HEADERS
      w.bytes(block);
    });
    const burst = rawFrames((w) => {
      for (let i = 0; i < 1000; i++) w.header(0, FrameType.CONTINUATION, 0, 1);
    });
    await peer.write(start);
    // Up to 200,000 empty frames (each cost ~270 bytes of heap before the limit), in bursts.
    for (let i = 0; i < 200 && !peer.closed; i++) await peer.write(burst);
    const goaway = await peer.frame(FrameType.GOAWAY);
    assert.ok(goaway !== undefined, 'GOAWAY');
    assert.equal(goawayCode(goaway), ErrorCode.ENHANCE_YOUR_CALM);
    assert.deepEqual(srv.limits, ['continuation-frames']);
    assert.equal(handed, 0);
    assert.equal(srv.conns[0]!.closed, true);
  } finally {
    peer.close();
    srv.close();
  }
});

test('a large header block in many CONTINUATION frames is still accepted', async () => {
  const seen: string[][] = [];
  const srv = await ourServer((stream, fields) => {
    seen.push(fields);
    stream.sendHeaders([':status', '200'], true);
  });
  const peer = await RawPeer.connect(srv.port);
  try {
    // ~600 KB in 16 KiB frames: HEADERS and 37 CONTINUATIONs, as a peer with a big head sends it.
    await peer.write(
      rawClient((w, enc) =>
        w.headers(1, enc.encode([...GET('/big'), 'x-big', 'v'.repeat(600_000)]), true, 16384),
      ),
    );
    const headers = await peer.frame(FrameType.HEADERS);
    assert.ok(headers !== undefined, 'answered');
    assert.equal(seen.length, 1);
    assert.equal(seen[0]![seen[0]!.indexOf('x-big') + 1]!.length, 600_000);
    assert.deepEqual(srv.limits, []);
    assert.ok(MAX_CONTINUATION_FRAMES >= 37);
  } finally {
    peer.close();
    srv.close();
  }
});

test('a header block over the size limit ends the connection, counted', async () => {
  const srv = await ourServer(() => assert.fail('nothing reaches the handler'));
  const peer = await RawPeer.connect(srv.port);
  try {
    await peer.write(
      rawClient((w, enc) =>
        w.headers(1, enc.encode([...GET('/'), 'x-huge', 'v'.repeat(1_100_000)]), true, 16384),
      ),
    );
    const goaway = await peer.frame(FrameType.GOAWAY);
    assert.equal(goawayCode(goaway), ErrorCode.ENHANCE_YOUR_CALM);
    assert.deepEqual(srv.limits, ['header-block-bytes']);
  } finally {
    peer.close();
    srv.close();
  }
});

test('a small block that HPACK indexing blows up past the header list limit ends the connection, counted', async () => {
  const srv = await ourServer(() => assert.fail('nothing reaches the handler'));
  const peer = await RawPeer.connect(srv.port);
  try {
    // 4 KB inserted into the dynamic table once, then named 300 times by its index (one byte
    // each): a 4.3 KB block that decodes to 1.2 MB.
    const value = Buffer.alloc(4000, 'a');
    const insert = Buffer.concat([
      Buffer.from([0x40, 0x03]),
      Buffer.from('x-a'),
      Buffer.from([0x7f, 0xa1, 0x1e]),
      value,
    ]);
    const block = Buffer.concat([Buffer.from([0x82, 0x86, 0x84]), insert, Buffer.alloc(300, 0xbe)]);
    assert.ok(block.length < 5000);
    await peer.write(rawClient((w) => w.headers(1, block, true, 16384)));
    const goaway = await peer.frame(FrameType.GOAWAY);
    assert.equal(goawayCode(goaway), ErrorCode.ENHANCE_YOUR_CALM);
    assert.deepEqual(srv.limits, ['header-list-bytes']);
  } finally {
    peer.close();
    srv.close();
  }
});

test('1xx responses without end on one stream: the stream is reset past its header limit', async () => {
  // A raw server that answers stream 1 with 60 interim responses of ~60 KB each (3.6 MB).
  const server = net.createServer((socket) => {
    socket.on('error', () => {});
    const reader = new FrameReader();
    let preface = 24;
    const enc = new HpackEncoder();
    socket.write(rawFrames((w) => w.settings([])));
    socket.on('data', (d: Buffer) => {
      const skip = Math.min(preface, d.length);
      preface -= skip;
      reader.push(d.subarray(skip), (type, _flags, id) => {
        if (type !== FrameType.HEADERS || id !== 1) return;
        const w = new FrameWriter();
        for (let i = 0; i < 60; i++)
          w.headers(1, enc.encode([':status', '103', 'link', 'l'.repeat(60_000)]), false, 16384);
        socket.write(w.take()!);
      });
    });
  });
  await once(server.listen(0, '127.0.0.1'), 'listening');
  const socket = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  await once(socket, 'connect');
  const limits: H2Limit[] = [];
  const conn = await new Promise<H2Connection>((resolve) => {
    const c: H2Connection = new H2Connection(socket, {
      role: 'client',
      onReady: () => resolve(c),
      onLimit: (l) => limits.push(l),
    });
  });
  try {
    let interim = 0;
    const closed = new Promise<number | null>((resolve) => {
      conn.request(GET('/'), true, {
        onHeaders: () => interim++,
        onData() {},
        onClose: resolve,
        onDrain() {},
      });
    });
    const code = await Promise.race([closed, delay(3000).then(() => 'timeout' as const)]);
    assert.equal(code, ErrorCode.ENHANCE_YOUR_CALM);
    assert.ok(interim < 40, `${interim} interim responses were handed on`);
    assert.deepEqual(limits, ['stream-header-bytes']);
    assert.equal(conn.closed, false, 'only the stream pays');
  } finally {
    conn.destroy(null);
    server.close();
  }
});

test('the open streams of one connection hold a bounded number of header bytes', async () => {
  let open = 0;
  const srv = await ourServer(() => open++); // streams stay open: their request never ends
  const peer = await RawPeer.connect(srv.port);
  try {
    const streams = 400;
    const value = 'h'.repeat(50_000);
    for (let i = 0; i < streams; i += 20) {
      await peer.write(
        rawFrames((w) => {
          const enc = new HpackEncoder();
          if (i === 0) w.bytes(rawClient(() => {}));
          for (let k = i; k < i + 20; k++)
            w.headers(2 * k + 1, enc.encode([...GET(`/s${k}`), 'x-h', value]), false, 16384);
        }),
      );
    }
    const deadline = Date.now() + 5000;
    while (
      open + peer.frames.filter((f) => f.type === FrameType.RST_STREAM).length < streams &&
      Date.now() < deadline
    )
      await delay(10);
    const refused = peer.frames.filter(
      (f) => f.type === FrameType.RST_STREAM && f.payload.readUInt32BE(0) === ErrorCode.REFUSED_STREAM,
    );
    assert.ok(refused.length > 0, 'streams over the limit are refused');
    assert.ok(open * 50_000 <= MAX_CONNECTION_HEADER_BYTES, `${open} streams hold their heads`);
    assert.ok(srv.conns[0]!.headerBytesHeld <= MAX_CONNECTION_HEADER_BYTES);
    assert.ok(srv.limits.includes('connection-header-bytes'));
    assert.equal(srv.conns[0]!.closed, false, 'refusing streams keeps the connection');
  } finally {
    peer.close();
    srv.close();
  }
});

test('peers that ask but never read: what is queued stays under the per-peer and process limits', async () => {
  const budget = new QueueBudget(QUEUE_LIMITS);
  const BODY = 64 * 1024;
  const answer = (stream: H2Stream): void => {
    stream.sendHeaders([':status', '200'], false);
    stream.write(Buffer.alloc(BODY, 7), true);
  };
  // 16 attacking connections from 4 peers (4 each), and one well-behaved peer on its own listener.
  const attacked = await ourServer(answer, (i) => ({ budget, peer: `spiffe://t/ns/a/sa/attacker-${i % 4}` }));
  const good = await ourServer(answer, () => ({ budget, peer: 'spiffe://t/ns/a/sa/good' }));
  const attackers: RawPeer[] = [];
  const rss0 = process.memoryUsage.rss();
  let peakRss = 0;
  let peakQueued = 0;
  const sample = setInterval(() => {
    peakRss = Math.max(peakRss, process.memoryUsage.rss() - rss0);
    let queued = 0;
    for (const c of attacked.conns) if (!c.closed) queued += c.queuedBytes();
    peakQueued = Math.max(peakQueued, queued, budget.total);
  }, 5);
  const client = http2.connect(`http://127.0.0.1:${good.port}`);
  client.on('error', () => {});
  try {
    for (let i = 0; i < 16; i++) {
      const p = await RawPeer.connect(attacked.port);
      p.socket.pause(); // never read a byte of the answers
      await p.write(
        rawClient(
          (w) => w.windowUpdate(0, 2 ** 31 - 1 - 65_535),
          [[Setting.INITIAL_WINDOW_SIZE, 2 ** 31 - 1]],
        ),
      );
      attackers.push(p);
    }
    // Each attacker asks for 400 answers of 64 KiB (25 MiB each, 400 MiB together), in rounds,
    // while the good client fetches the same answer again and again.
    let served = 0;
    const goodLoop = (async () => {
      for (let i = 0; i < 30; i++) {
        const req = client.request({ ':path': `/g${i}` });
        let n = 0;
        req.on('data', (d: Buffer) => (n += d.length));
        const [headers] = (await once(req, 'response')) as [http2.IncomingHttpHeaders];
        await once(req, 'end');
        if (Number(headers[':status']) === 200 && n === BODY) served++;
      }
    })();
    const enc = new HpackEncoder();
    for (let round = 0; round < 20; round++) {
      for (const p of attackers) {
        await p.write(
          rawFrames((w) => {
            for (let k = 0; k < 20; k++)
              w.headers(2 * (round * 20 + k) + 1, enc.encode(GET('/a')), true, 16384);
          }),
          50,
        );
      }
      await delay(5);
    }
    await delay(200);
    await goodLoop;
    clearInterval(sample);
    const limit = QUEUE_LIMITS.total;
    assert.ok(peakQueued <= limit, `queued ${peakQueued} bytes, limit ${limit}`);
    assert.ok(budget.total <= limit);
    assert.ok(peakRss < limit + 96 * 1024 * 1024, `RSS grew by ${(peakRss / 1048576).toFixed(0)} MiB`);
    assert.equal(served, 30, 'the well-behaved peer was served throughout');
    assert.equal(good.conns[0]!.closed, false);
    assert.ok(attacked.limits.length > 0, 'the cut-offs were reported');
    for (const l of attacked.limits)
      assert.ok(['unread-bytes', 'peer-queued-bytes', 'total-queued-bytes'].includes(l), l);
    // What the report said: per peer and in total.
    for (let p = 0; p < 4; p++)
      assert.ok(budget.peerBytes(`spiffe://t/ns/a/sa/attacker-${p}`) <= QUEUE_LIMITS.perPeer);
    console.log(
      `queued at most ${(peakQueued / 1048576).toFixed(1)} MiB (limit ${limit / 1048576}), ` +
        `RSS growth at most ${(peakRss / 1048576).toFixed(0)} MiB, limits hit: ${attacked.limits.length}`,
    );
  } finally {
    clearInterval(sample);
    client.destroy();
    for (const p of attackers) p.close();
    attacked.close();
    good.close();
  }
});

test('streams whose reader is full hold at most the connection window together', async () => {
  let received = 0;
  const srv = await ourServer((stream) => {
    stream.pause(); // the reader (an app that does not read) is full from the start
    stream.handler = {
      onHeaders() {},
      onData: (d) => (received += d.length),
      onClose() {},
      onDrain() {},
    };
  });
  const client = http2.connect(`http://127.0.0.1:${srv.port}`);
  client.on('error', () => {});
  try {
    // 40 uploads of 1 MiB (each within its stream window): 40 MiB if the connection's window
    // were given back for bytes nobody read.
    for (let i = 0; i < 40; i++) {
      const req = client.request({ ':method': 'POST', ':path': `/u${i}` });
      req.on('error', () => {});
      req.write(Buffer.alloc(1024 * 1024, 1));
    }
    let last = -1;
    const deadline = Date.now() + 5000;
    while (received !== last && Date.now() < deadline) {
      last = received;
      await delay(200);
    }
    assert.ok(received <= CONNECTION_WINDOW, `${received} bytes held by paused streams`);
    assert.ok(received >= CONNECTION_WINDOW / 2, `${received} bytes: the window was used`);
  } finally {
    client.destroy();
    srv.close();
  }
});
