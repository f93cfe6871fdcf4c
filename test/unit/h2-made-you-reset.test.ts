// "MadeYouReset" (CVE-2025-8671) on the own HTTP/2: instead of cancelling its streams itself
// (rapid reset, counted against MAX_PEER_RESETS), a client makes the proxy reset them, with a
// frame that is a stream error (a WINDOW_UPDATE of 0, a PRIORITY of the wrong size, DATA past the
// stream's window or after its end, a second HEADERS without END_STREAM). Each such stream reached
// the app first, and the proxy dropped it at no cost to the client: without end on one connection.
// A stream the proxy resets because of the peer's frame counts like one the peer reset.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ErrorCode, FrameType } from '../../src/proxy/h2/frames.ts';
import { MAX_PEER_RESETS } from '../../src/proxy/h2/limits.ts';
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
