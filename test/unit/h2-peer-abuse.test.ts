// What a peer of the own HTTP/2 (trellis-h2h1/1) can make the proxy spend.
//
// "MadeYouReset" (CVE-2025-8671): instead of cancelling its streams itself (rapid reset, counted
// against MAX_PEER_RESETS), a client makes the proxy reset them, with a frame that is a stream
// error (a WINDOW_UPDATE of 0, a PRIORITY of the wrong size, DATA after the stream's end). Each such
// stream reached the app first, and the proxy dropped it at no cost to the client, without end on
// one connection. A stream the proxy resets because of the peer's frame counts like one the peer
// reset.
//
// SETTINGS: each INITIAL_WINDOW_SIZE entry adjusted every open stream, so one 16 KiB frame of
// 2,730 entries cost 2.7 million adjustments.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { H2Connection } from '../../src/proxy/h2/connection.ts';
import { ErrorCode, FrameType, Setting } from '../../src/proxy/h2/frames.ts';
import { MAX_PEER_RESETS, MAX_PEER_SETTINGS } from '../../src/proxy/h2/limits.ts';
import { HpackEncoder } from '../../src/proxy/h2/hpack.ts';
import type { FrameWriter } from '../../src/proxy/h2/frames.ts';
import { GET, RawPeer, rawClient, rawFrames } from '../helpers/h2-raw.ts';
import { exchange, h2Client, startInboundWorld } from '../helpers/h2h1-inbound.ts';

const STREAMS = MAX_PEER_RESETS + 500;

const provocations: Record<string, (w: FrameWriter, id: number) => void> = {
  'WINDOW_UPDATE of 0': (w, id) => w.windowUpdate(id, 0),
  'PRIORITY of the wrong size': (w, id) => w.frame(FrameType.PRIORITY, 0, id, Buffer.alloc(4)),
  'DATA after END_STREAM': (w, id) => w.data(id, Buffer.from('x'), false, 16384),
};

for (const [name, provoke] of Object.entries(provocations)) {
  test(`made you reset (${name}): a client that makes the proxy reset its streams loses the connection like one that resets them`, async () => {
    // The app answers late, so that every stream is reset before its response.
    const world = await startInboundWorld({ answer: (_req, res) => setTimeout(() => res.end('ok'), 200) });
    const peer = await RawPeer.connect(world.port);
    try {
      await peer.write(rawClient(() => {}));
      const enc = new HpackEncoder();
      // In batches of 100, each stream's request then the frame that makes the proxy reset it,
      // all well within a second.
      for (let first = 0; first < STREAMS && !peer.closed; first += 100) {
        await peer.write(
          rawFrames((w) => {
            for (let k = first; k < first + 100; k++) {
              const id = 2 * k + 1;
              w.headers(id, enc.encode(GET(`/m${id}`)), true, 16384);
              provoke(w, id);
            }
          }),
        );
      }
      const goaway = await peer.frame(FrameType.GOAWAY, 3000);
      const resets = peer.frames.filter((f) => f.type === FrameType.RST_STREAM).length;
      assert.ok(
        goaway !== undefined,
        `no GOAWAY after ${STREAMS} streams the proxy reset (${resets} RST_STREAM)`,
      );
      assert.equal(goaway.payload.readUInt32BE(4), ErrorCode.ENHANCE_YOUR_CALM);
      assert.ok(resets >= MAX_PEER_RESETS && resets < STREAMS, `${resets} streams reset`);
      // Other clients are still served.
      const conn = await h2Client(world.port);
      assert.equal((await exchange(conn, GET('/after'))).status, 200);
      conn.destroy(null);
    } finally {
      peer.close();
      await world.close();
    }
  });
}

/** Opens a connection as a client would and `count` streams on it (GET /s0, /s1, ...), ending each request or not. */
async function openStreams(peer: RawPeer, count: number, endStream: boolean): Promise<void> {
  await peer.write(rawClient(() => {}));
  const enc = new HpackEncoder();
  await peer.write(
    rawFrames((w) => {
      for (let k = 0; k < count; k++) w.headers(2 * k + 1, enc.encode(GET(`/s${k}`)), endStream, 16384);
    }),
  );
}

test('a SETTINGS frame of thousands of INITIAL_WINDOW_SIZE entries costs the peer its connection, not the proxy a pass over its streams per entry', async () => {
  // 999 open streams, then a 16 KiB SETTINGS frame of 2,730 entries: each entry used to adjust
  // every stream (100 such frames took 1.7 s of the proxy's CPU, against 0.1 s with no stream open).
  const world = await startInboundWorld({ answer: () => {} });
  const peer = await RawPeer.connect(world.port);
  try {
    await openStreams(peer, 999, true);
    const entries = Buffer.alloc(2730 * 6);
    for (let i = 0; i < 2730; i++) {
      entries.writeUInt16BE(Setting.INITIAL_WINDOW_SIZE, i * 6);
      entries.writeUInt32BE(65_535 + (i % 2), i * 6 + 2);
    }
    await peer.write(rawFrames((w) => w.frame(FrameType.SETTINGS, 0, 0, entries)));
    const goaway = await peer.frame(FrameType.GOAWAY, 3000);
    assert.ok(goaway !== undefined, 'GOAWAY');
    assert.equal(goaway.payload.readUInt32BE(4), ErrorCode.ENHANCE_YOUR_CALM);
    assert.ok(world.metrics.limits.includes('settings-entries'), world.metrics.limits.join());
  } finally {
    peer.close();
    await world.close();
  }
});

test('a flood of one-entry SETTINGS frames costs the peer its connection, not the proxy a pass over its streams per frame', async () => {
  // With the entries per frame bounded, the same work came from frames: with 999 streams open,
  // each 15-byte SETTINGS that changes INITIAL_WINDOW_SIZE adjusts all 999 (100,000 such frames,
  // 1.5 MB, cost the proxy 1.8 s of CPU against 0.2 s with no stream open). A real peer sends one
  // SETTINGS as it starts.
  const world = await startInboundWorld({ answer: () => {} });
  const peer = await RawPeer.connect(world.port);
  try {
    await openStreams(peer, 999, false);
    const batch = rawFrames((w) => {
      for (let i = 0; i < 1000; i++) {
        const entry = Buffer.alloc(6);
        entry.writeUInt16BE(Setting.INITIAL_WINDOW_SIZE, 0);
        entry.writeUInt32BE(65_535 + (i % 2), 2);
        w.frame(FrameType.SETTINGS, 0, 0, entry);
      }
    });
    for (let n = 0; n < 20 && !peer.closed; n++) await peer.write(batch);
    const goaway = await peer.frame(FrameType.GOAWAY, 3000);
    assert.ok(goaway !== undefined, 'no GOAWAY after 20,000 SETTINGS frames');
    assert.equal(goaway.payload.readUInt32BE(4), ErrorCode.ENHANCE_YOUR_CALM);
    assert.ok(world.metrics.limits.includes('settings-frames'), world.metrics.limits.join());
    const acks = peer.frames.filter((f) => f.type === FrameType.SETTINGS && (f.flags & 1) === 1).length;
    // The client's first SETTINGS, the flood's first frame (65,535 is the window already: no
    // change), then MAX_PEER_SETTINGS changes.
    assert.ok(acks <= MAX_PEER_SETTINGS + 2, `${acks} SETTINGS acknowledged`);
  } finally {
    peer.close();
    await world.close();
  }
});

/**
 * Milliseconds the proxy took over `frames` WINDOW_UPDATEs of 1 on the connection, with `streams`
 * responses waiting for their own windows (the client's INITIAL_WINDOW_SIZE is 0), measured to the
 * answer of a PING sent after them.
 */
async function connectionWindowFlood(streams: number, frames: number): Promise<number> {
  const world = await startInboundWorld({ answer: (_req, res) => res.end(Buffer.alloc(1000, 'a')) });
  const peer = await RawPeer.connect(world.port);
  try {
    await peer.write(rawClient(() => {}, [[Setting.INITIAL_WINDOW_SIZE, 0]]));
    const enc = new HpackEncoder();
    for (let first = 0; first < streams; first += 100)
      await peer.write(
        rawFrames((w) => {
          for (let k = first; k < Math.min(streams, first + 100); k++)
            w.headers(2 * k + 1, enc.encode(GET(`/s${k}`)), true, 16384);
        }),
      );
    // Every response's head came (its body waits for window).
    const heads = () => peer.frames.filter((f) => f.type === FrameType.HEADERS).length;
    for (const deadline = Date.now() + 20_000; heads() < streams && Date.now() < deadline;)
      await new Promise((r) => setTimeout(r, 20));
    assert.equal(heads(), streams);
    const batch = rawFrames((w) => {
      for (let i = 0; i < 1000; i++) w.windowUpdate(0, 1);
    });
    const started = performance.now();
    for (let n = 0; n < frames / 1000 && !peer.closed; n++) await peer.write(batch);
    await peer.write(rawFrames((w) => w.frame(FrameType.PING, 0, 0, Buffer.alloc(8, 7))));
    assert.ok((await peer.frame(FrameType.PING, 60_000)) !== undefined, 'PING answered');
    return performance.now() - started;
  } finally {
    peer.close();
    await world.close();
  }
}

test('WINDOW_UPDATEs on the connection do not retry every stream that waits for its own window', async () => {
  // Each connection-level WINDOW_UPDATE retried every stream with queued data, also those whose own
  // window was 0, which could send nothing: with 999 of them, 50,000 such 13-byte frames took 14 s
  // of the proxy's CPU (0.14 s with one stream).
  const one = await connectionWindowFlood(1, 10_000);
  const many = await connectionWindowFlood(999, 10_000);
  assert.ok(
    many < 5 * Math.max(one, 100),
    `${many.toFixed(0)} ms with 999 streams waiting, ${one.toFixed(0)} ms with 1`,
  );
});

test('INITIAL_WINDOW_SIZE given several times in one SETTINGS frame: the last one holds', async () => {
  // The app answers 100 KiB; the client's window is 0, then one frame says 10, 0 and 70,000.
  const world = await startInboundWorld({ answer: (_req, res) => res.end(Buffer.alloc(100_000, 'z')) });
  const peer = await RawPeer.connect(world.port);
  try {
    await peer.write(
      rawClient(
        (w, enc) => w.headers(1, enc.encode(GET('/big')), true, 16384),
        [[Setting.INITIAL_WINDOW_SIZE, 0]],
      ),
    );
    await peer.frame(FrameType.HEADERS, 3000);
    const settings = Buffer.alloc(18);
    [10, 0, 70_000].forEach((v, i) => {
      settings.writeUInt16BE(Setting.INITIAL_WINDOW_SIZE, i * 6);
      settings.writeUInt32BE(v, i * 6 + 2);
    });
    // The connection's window is 65,535: raise it, so that only the stream's window counts.
    await peer.write(
      rawFrames((w) => {
        w.frame(FrameType.SETTINGS, 0, 0, settings);
        w.windowUpdate(0, 1 << 20);
      }),
    );
    const deadline = Date.now() + 3000;
    const got = (): number =>
      peer.frames
        .filter((f) => f.type === FrameType.DATA && f.id === 1)
        .reduce((n, f) => n + f.payload.length, 0);
    while (got() < 70_000 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 100)); // nothing more may come
    assert.equal(got(), 70_000);
  } finally {
    peer.close();
    await world.close();
  }
});

test('GOAWAYs from a server that refuse no more streams do not walk the open streams each time', async () => {
  // The client side: a GOAWAY refuses the streams above its last stream id. A server that sent the
  // same GOAWAY again and again made the client walk all its open streams for each 17-byte frame.
  let serverSide: net.Socket | null = null;
  const server = net.createServer((socket) => {
    serverSide = socket;
    socket.on('data', () => {}); // the client's preface, SETTINGS and requests: read and dropped
    socket.write(rawFrames((w) => w.settings([])));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const socket = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  let goaways = 0;
  let allCame: () => void = () => {};
  const came = new Promise<void>((resolve) => (allCame = resolve));
  const conn = await new Promise<H2Connection>((resolve) => {
    const c: H2Connection = new H2Connection(socket, {
      role: 'client',
      onReady: () => resolve(c),
      onGoaway: () => {
        if (++goaways === 2000) allCame();
      },
    });
  });
  try {
    const handler = { onHeaders() {}, onData() {}, onClose() {}, onDrain() {} };
    for (let k = 0; k < 999; k++) assert.ok(conn.request(GET(`/s${k}`), true, handler) !== null);
    let walks = 0;
    const values = conn.streams.values.bind(conn.streams);
    conn.streams.values = () => {
      walks++;
      return values();
    };
    // Their last stream id names every stream: nothing is refused.
    (serverSide as net.Socket | null)!.write(
      rawFrames((w) => {
        for (let i = 0; i < 2000; i++) w.goaway(0x7fff_ffff, ErrorCode.NO_ERROR, '');
      }),
    );
    await came;
    assert.equal(conn.active, 999, 'no stream refused');
    assert.ok(walks <= 1, `${walks} walks over the open streams for ${goaways} GOAWAY frames`);
  } finally {
    conn.destroy(null);
    (serverSide as net.Socket | null)?.destroy();
    server.close();
  }
});
