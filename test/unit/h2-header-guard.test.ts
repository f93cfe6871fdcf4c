// The guard in front of node:http2 (src/proxy/http/h2-header-guard.ts): a client's bytes pass
// unchanged, however they are split, unless a header block is over node's limits, cannot be
// decoded, or is broken up; then the connection is refused and nothing of that block goes on.
// Property-based (fast-check) for the pass-through, examples for each refusal, and an end-to-end
// check that node:http2 serves through the guard.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import fc from 'fast-check';
import { HpackEncoder } from '../../src/proxy/h2/hpack.ts';
import { rawFrames } from '../helpers/h2-raw.ts';
import {
  guardHeaderBlocks,
  HeaderBlockScanner,
  MAX_UNREAD_ANSWERS,
} from '../../src/proxy/http/h2-header-guard.ts';

const LIMITS = { maxPairs: 528, maxListSize: 1 << 20, headerTableSize: 4096 };
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

function frame(type: number, flags: number, stream: number, payload: Buffer): Buffer {
  return rawFrames((w) => w.frame(type, flags, stream, payload));
}

const SETTINGS = frame(0x4, 0, 0, Buffer.alloc(0));
const request = (fields: string[]) => [
  'header',
  ':method',
  'GET',
  ':scheme',
  'http',
  ':path',
  '/',
  ...fields,
];

/** Feeds `bytes` in the given pieces; returns what passed, or the refusal. */
function scan(bytes: Buffer, cuts: number[] = []): Buffer | string {
  const scanner = new HeaderBlockScanner(LIMITS);
  const out: Buffer[] = [];
  let from = 0;
  for (const at of [...cuts.filter((c) => c > 0 && c < bytes.length).sort((a, b) => a - b), bytes.length]) {
    const r = scanner.feed(bytes.subarray(from, at));
    if (typeof r === 'string') return r;
    out.push(...r);
    from = at;
  }
  return Buffer.concat(out);
}

test('property: a valid connection passes unchanged, however it is split', () => {
  const field = fc.tuple(fc.stringMatching(/^[a-z][a-z0-9-]{0,15}$/), fc.stringMatching(/^[ -~]{0,40}$/));
  fc.assert(
    fc.property(
      fc.array(fc.array(field, { maxLength: 20 }), { minLength: 1, maxLength: 6 }),
      fc.array(fc.nat(4000), { maxLength: 12 }),
      fc.boolean(),
      (requests, cuts, continuation) => {
        const encoder = new HpackEncoder();
        const parts: Buffer[] = [PREFACE, SETTINGS];
        requests.forEach((fields, i) => {
          const block = encoder.encode(request(fields.flat()).slice(1));
          const id = 2 * i + 1;
          if (continuation && block.length > 2) {
            const half = block.length >> 1;
            parts.push(
              frame(0x1, 0x1, id, block.subarray(0, half)),
              frame(0x9, 0x4, id, block.subarray(half)),
            );
          } else parts.push(frame(0x1, 0x5, id, block));
          parts.push(frame(0x0, 0x1, 0, Buffer.alloc(0))); // a DATA frame between blocks
        });
        const bytes = Buffer.concat(parts);
        const out = scan(bytes, cuts);
        assert.ok(Buffer.isBuffer(out), `refused: ${String(out)}`);
        assert.ok(out.equals(bytes));
      },
    ),
  );
});

test('a block over the field or size limit, undecodable or broken up is refused, and none of it passes', () => {
  const encoder = new HpackEncoder();
  const many = encoder.encode(
    request(Array.from({ length: 530 }, (_, i) => [`x-${i}`, 'v']).flat()).slice(1),
  );
  assert.match(String(scan(Buffer.concat([PREFACE, frame(0x1, 0x5, 1, many)]))), /fields \(limit 528\)/);

  // One table entry of 4 KiB referenced 300 times: 1.2 MiB decoded from 300 bytes of block.
  const big = Buffer.concat([
    Buffer.from([0x40, 0x01, 0x61, 0x7f, 0xa1, 0x1e]), // literal, incremental indexing, "a" = 4,000 bytes
    Buffer.alloc(4000, 0x62),
    Buffer.alloc(300, 0xbe), // indexed: dynamic entry 62
  ]);
  const bigBlock = Buffer.concat([Buffer.from([0x82, 0x86, 0x84]), big]);
  assert.match(String(scan(Buffer.concat([PREFACE, frame(0x1, 0x5, 1, bigBlock)]))), /over 1048576 bytes/);

  assert.match(
    String(scan(Buffer.concat([PREFACE, frame(0x1, 0x5, 1, Buffer.from([0x80]))]))),
    /cannot be decoded/,
  );

  const block = encoder.encode(request([]).slice(1));
  const interrupted = Buffer.concat([PREFACE, frame(0x1, 0x1, 3, block), frame(0x6, 0, 0, Buffer.alloc(8))]);
  assert.match(String(scan(interrupted)), /interrupted/);

  const tooMany = [frame(0x1, 0x1, 5, block.subarray(0, 1))];
  for (let i = 0; i < 9; i++) tooMany.push(frame(0x9, 0, 5, Buffer.alloc(0)));
  assert.match(String(scan(Buffer.concat([PREFACE, ...tooMany]))), /too many CONTINUATION/);

  // What came before a refused block has passed; nothing of the block did.
  const scanner = new HeaderBlockScanner(LIMITS);
  const first = scanner.feed(Buffer.concat([PREFACE, SETTINGS]));
  assert.deepEqual(Buffer.concat(first as Buffer[]), Buffer.concat([PREFACE, SETTINGS]));
  assert.equal(typeof scanner.feed(frame(0x1, 0x5, 1, many)), 'string');
});

test('PING and SETTINGS frames: any number from a peer that reads; a bound while it does not', () => {
  let backlogged = false;
  const scanner = new HeaderBlockScanner(LIMITS, () => backlogged);
  const ping = frame(0x6, 0, 0, Buffer.alloc(8));
  const pingAck = frame(0x6, 0x1, 0, Buffer.alloc(8));
  const settingsAck = frame(0x4, 0x1, 0, Buffer.alloc(0));
  assert.ok(Array.isArray(scanner.feed(PREFACE)));
  for (let i = 0; i < 5 * MAX_UNREAD_ANSWERS; i++) {
    assert.ok(Array.isArray(scanner.feed(i % 2 === 0 ? ping : SETTINGS)), 'a reading peer is never cut off');
  }
  backlogged = true;
  // ACKs never count.
  for (let i = 0; i < 3 * MAX_UNREAD_ANSWERS; i++) {
    assert.ok(Array.isArray(scanner.feed(i % 2 === 0 ? pingAck : settingsAck)));
  }
  for (let i = 0; i < MAX_UNREAD_ANSWERS; i++) assert.ok(Array.isArray(scanner.feed(ping)));
  // The peer caught up once: the count starts again.
  backlogged = false;
  assert.ok(Array.isArray(scanner.feed(ping)));
  backlogged = true;
  for (let i = 0; i < MAX_UNREAD_ANSWERS; i++) assert.ok(Array.isArray(scanner.feed(SETTINGS)));
  const refused = scanner.feed(ping);
  assert.equal(typeof refused, 'string');
  assert.match(refused as string, /PING or SETTINGS/);
});

test('node:http2 serves through the guard; a refused block closes the connection', async (t) => {
  const server = http2.createServer();
  server.on('stream', (s) => {
    s.respond({ ':status': 200 });
    s.end('ok');
  });
  const refusals: string[] = [];
  const outer = net.createServer((socket) => {
    socket.on('error', () => {});
    server.emit(
      'connection',
      guardHeaderBlocks(socket, Buffer.alloc(0), LIMITS, (why) => refusals.push(why)),
    );
  });
  await new Promise<void>((resolve) => outer.listen(0, '127.0.0.1', resolve));
  t.after(() => outer.close());
  const port = (outer.address() as net.AddressInfo).port;

  const client = http2.connect(`http://127.0.0.1:${port}`);
  client.on('error', () => {});
  t.after(() => client.destroy());
  const ask = (headers: http2.OutgoingHttpHeaders) =>
    new Promise<string>((resolve) => {
      const r = client.request(headers);
      let body = '';
      r.setEncoding('utf8');
      r.on('data', (d: string) => (body += d));
      r.on('end', () => resolve(body));
      r.on('error', (e: Error) => resolve(`error: ${e.message}`));
    });
  assert.equal(await ask({ ':path': '/' }), 'ok');
  const many: http2.OutgoingHttpHeaders = { ':path': '/' };
  for (let i = 0; i < 600; i++) many[`x-${i}`] = 'v';
  assert.notEqual(await ask(many), 'ok', 'the refused request was answered');
  assert.equal(refusals.length, 1);
  assert.match(refusals[0]!, /fields \(limit 528\)/);
});
