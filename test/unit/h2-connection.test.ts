// The project's own HTTP/2 connection (src/proxy/h2/) against node:http2 as the peer, both ways,
// over loopback TCP: requests and responses, bodies larger than every flow-control window (so
// both sides block and resume on WINDOW_UPDATE), trailers, interim responses, concurrency limits,
// resets, GOAWAY and PING; then bad input (garbage, protocol violations, smuggling attempts in
// field values) that must end in a reset or GOAWAY, never in a crash or a forwarded request; and
// property tests of the frame reader and the field checks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import { once } from 'node:events';
import fc from 'fast-check';
import { H2Connection } from '../../src/proxy/h2/connection.ts';
import { checkFields } from '../../src/proxy/h2/fields.ts';
import {
  CLIENT_PREFACE,
  ErrorCode,
  Flag,
  FrameReader,
  FrameType,
  FrameWriter,
} from '../../src/proxy/h2/frames.ts';
import { HpackEncoder } from '../../src/proxy/h2/hpack.ts';
import type { H2Stream, H2StreamHandler } from '../../src/proxy/h2/stream.ts';

interface Reply {
  status: number;
  fields: string[];
  body: Buffer;
  trailers: string[] | null;
  interim: number[];
  code: number | null;
}

/** Sends one request on our client connection and collects the whole reply. */
function exchange(conn: H2Connection, fields: string[], body: Buffer | null): Promise<Reply> {
  return new Promise((resolve) => {
    const reply: Reply = {
      status: 0,
      fields: [],
      body: Buffer.alloc(0),
      trailers: null,
      interim: [],
      code: null,
    };
    const chunks: Buffer[] = [];
    const handler: H2StreamHandler = {
      onHeaders(f) {
        const status = Number(f[1]);
        if (reply.status !== 0) reply.trailers = f;
        else if (f[0] === ':status' && status < 200) reply.interim.push(status);
        else {
          reply.status = status;
          reply.fields = f;
        }
      },
      onData(chunk) {
        chunks.push(Buffer.from(chunk));
      },
      onClose(code) {
        reply.code = code;
        reply.body = Buffer.concat(chunks);
        resolve(reply);
      },
      onDrain() {},
    };
    const stream = conn.request(fields, body === null, handler);
    assert.ok(stream !== null, 'the connection has room');
    if (body !== null) stream.write(body, true);
  });
}

const GET = (path: string): string[] => [
  ':method',
  'GET',
  ':scheme',
  'http',
  ':authority',
  'x',
  ':path',
  path,
];
const POST = (path: string): string[] => [
  ':method',
  'POST',
  ':scheme',
  'http',
  ':authority',
  'x',
  ':path',
  path,
];

/** Our client connection to a node:http2 server. */
async function clientTo(server: http2.Http2Server): Promise<H2Connection> {
  await once(server.listen(0, '127.0.0.1'), 'listening');
  const port = (server.address() as net.AddressInfo).port;
  const socket = net.connect(port, '127.0.0.1');
  await once(socket, 'connect');
  return new Promise((resolve) => {
    const conn: H2Connection = new H2Connection(socket, { role: 'client', onReady: () => resolve(conn) });
  });
}

test('our client against node:http2: bodies past every window, trailers, 100, resets, GOAWAY', async () => {
  const big = Buffer.alloc(3 * 1024 * 1024, 'abcdefghijklmnopq');
  const server = http2.createServer({ settings: { maxConcurrentStreams: 5 } });
  trackSessions(server);
  server.on('stream', (stream, headers) => {
    stream.on('error', () => {}); // the refused stream's own error
    const path = headers[':path'];
    if (path === '/echo') {
      const parts: Buffer[] = [];
      stream.on('data', (d: Buffer) => parts.push(d));
      stream.on('end', () => {
        const body = Buffer.concat(parts);
        stream.respond({ ':status': 200, 'x-len': String(body.length) }, { waitForTrailers: true });
        stream.on('wantTrailers', () =>
          stream.sendTrailers({ 'x-sum': String(body.reduce((a, b) => a + b, 0)) }),
        );
        stream.end(body);
      });
      return;
    }
    if (path === '/big') {
      stream.respond({ ':status': 200 });
      stream.end(big);
      return;
    }
    if (path === '/continue') {
      stream.additionalHeaders({ ':status': 100 });
      stream.respond({ ':status': 204 }, { endStream: true });
      return;
    }
    if (path === '/refuse') {
      stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      return;
    }
    stream.respond({ ':status': 200, 'content-type': 'text/plain', 'set-cookie': ['a=1', 'b=2'] });
    stream.end(`hello ${path}`);
  });
  const conn = await clientTo(server);
  try {
    const r = await exchange(conn, GET('/x'), null);
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), 'hello /x');
    assert.equal(r.code, null);
    assert.deepEqual(
      r.fields.filter((_, i) => r.fields[i - (i % 2)] === 'set-cookie' && i % 2 === 1),
      ['a=1', 'b=2'],
    );

    const upload = Buffer.alloc(2 * 1024 * 1024 + 7, 'z');
    const echo = await exchange(conn, POST('/echo'), upload);
    assert.equal(echo.status, 200);
    assert.equal(echo.body.length, upload.length);
    assert.ok(echo.body.equals(upload));
    assert.deepEqual(echo.trailers, ['x-sum', String(upload.length * 'z'.charCodeAt(0))]);

    const got = await exchange(conn, GET('/big'), null);
    assert.ok(got.body.equals(big), 'a 3 MiB response arrives whole past the 1 MiB stream window');

    const c = await exchange(conn, GET('/continue'), null);
    assert.deepEqual(c.interim, [100]);
    assert.equal(c.status, 204);

    const refused = await exchange(conn, GET('/refuse'), null);
    assert.equal(refused.code, ErrorCode.REFUSED_STREAM);

    // The server allows 5 streams at once: the connection says when it is full.
    const handlers: Promise<Reply>[] = [];
    let opened = 0;
    while (conn.hasRoom()) {
      handlers.push(exchange(conn, GET(`/n${opened}`), null));
      opened++;
      assert.ok(opened <= 5);
    }
    assert.equal(opened, 5);
    const all = await Promise.all(handlers);
    assert.deepEqual(
      all.map((x) => x.body.toString()),
      [0, 1, 2, 3, 4].map((i) => `hello /n${i}`),
    );
    assert.ok(conn.hasRoom(), 'room again once they closed');

    const gone = new Promise<number>((resolve) => {
      (conn.opts as { onGoaway?: (code: number) => void }).onGoaway = resolve;
    });
    for (const s of serverSessions(server)) s.goaway(http2.constants.NGHTTP2_NO_ERROR);
    assert.equal(await gone, ErrorCode.NO_ERROR);
    assert.equal(conn.hasRoom(), false, 'no new streams after GOAWAY');
  } finally {
    conn.destroy(null);
    server.close();
  }
});

const sessions = new WeakMap<http2.Http2Server, Set<http2.ServerHttp2Session>>();
function serverSessions(server: http2.Http2Server): Set<http2.ServerHttp2Session> {
  return sessions.get(server) ?? new Set();
}
function trackSessions(server: http2.Http2Server): void {
  const set = new Set<http2.ServerHttp2Session>();
  sessions.set(server, set);
  server.on('session', (s) => set.add(s));
}

/** A net server whose connections are served by our H2Connection (server role). */
async function ourServer(
  onStream: (stream: H2Stream, fields: string[], end: boolean) => void,
): Promise<{ port: number; conns: H2Connection[]; close(): void }> {
  const conns: H2Connection[] = [];
  const server = net.createServer((socket) => {
    conns.push(new H2Connection(socket, { role: 'server', onStream }));
  });
  await once(server.listen(0, '127.0.0.1'), 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    conns,
    close() {
      for (const c of conns) c.destroy(null);
      server.close();
    },
  };
}

/** A handler that collects the request body and answers with `respond` at its end. */
function collect(stream: H2Stream, done: (body: Buffer, trailers: string[] | null) => void): void {
  const parts: Buffer[] = [];
  let trailers: string[] | null = null;
  stream.handler = {
    onHeaders(f, end) {
      trailers = f;
      if (end) done(Buffer.concat(parts), trailers);
    },
    onData(d, end) {
      parts.push(Buffer.from(d));
      if (end) done(Buffer.concat(parts), trailers);
    },
    onClose() {},
    onDrain() {},
  };
}

test('node:http2 client against our server: uploads, big responses, trailers, ping, cancel', async () => {
  let cancelled: Promise<number | null> | null = null;
  const big = Buffer.alloc(5 * 1024 * 1024, 'q');
  const srv = await ourServer((stream, fields, end) => {
    const path = fields[fields.indexOf(':path') + 1];
    if (path === '/cancel') {
      cancelled = new Promise((resolve) => {
        stream.handler = { onHeaders() {}, onData() {}, onClose: resolve, onDrain() {} };
      });
      stream.sendHeaders([':status', '200'], false);
      stream.write(Buffer.alloc(1000, 'c'));
      return;
    }
    if (path === '/big') {
      stream.sendHeaders([':status', '200', 'content-length', String(big.length)], false);
      stream.write(big, true);
      return;
    }
    const reply = (body: Buffer, trailers: string[] | null): void => {
      stream.sendHeaders(
        [
          ':status',
          '201',
          'x-method',
          fields[fields.indexOf(':method') + 1]!,
          'x-trailers',
          JSON.stringify(trailers),
        ],
        false,
      );
      stream.write(body, true);
    };
    if (end) reply(Buffer.alloc(0), null);
    else collect(stream, reply);
  });
  const client = http2.connect(`http://127.0.0.1:${srv.port}`);
  const request = (headers: http2.OutgoingHttpHeaders, body?: Buffer, trailers?: http2.OutgoingHttpHeaders) =>
    new Promise<{ headers: http2.IncomingHttpHeaders; body: Buffer }>((resolve, reject) => {
      const req = client.request(headers, trailers ? { waitForTrailers: true } : {});
      if (trailers) req.on('wantTrailers', () => req.sendTrailers(trailers));
      const parts: Buffer[] = [];
      let h: http2.IncomingHttpHeaders = {};
      req.on('response', (x) => (h = x));
      req.on('data', (d: Buffer) => parts.push(d));
      req.on('end', () => resolve({ headers: h, body: Buffer.concat(parts) }));
      req.on('error', reject);
      req.end(body);
    });
  try {
    const a = await request({ ':path': '/a' });
    assert.equal(a.headers[':status'], 201);
    assert.equal(a.headers['x-method'], 'GET');

    const upload = Buffer.alloc(3 * 1024 * 1024, 'u');
    const b = await request({ ':path': '/up', ':method': 'POST' }, upload, { 'x-check': 'yes' });
    assert.ok(b.body.equals(upload), 'a 3 MiB upload past our 1 MiB stream window comes back whole');
    assert.deepEqual(JSON.parse(String(b.headers['x-trailers'])), ['x-check', 'yes']);

    const c = await request({ ':path': '/big' });
    assert.equal(c.body.length, big.length, 'a 5 MiB response past node’s 64 KiB window arrives whole');

    const many = await Promise.all(Array.from({ length: 60 }, (_, i) => request({ ':path': `/m${i}` })));
    assert.ok(many.every((m) => Number(m.headers[':status']) === 201));

    const rtt = await new Promise<number>((resolve, reject) =>
      client.ping((err, ms) => (err ? reject(err) : resolve(ms))),
    );
    assert.ok(rtt >= 0);

    const req = client.request({ ':path': '/cancel' });
    await once(req, 'response');
    req.close(http2.constants.NGHTTP2_CANCEL);
    assert.equal(await cancelled!, ErrorCode.CANCEL);
    assert.equal(srv.conns[0]!.active, 0, 'the cancelled stream is gone');
  } finally {
    client.close();
    srv.close();
  }
});

/** Frames a raw client sends (after the preface and an empty SETTINGS). */
function rawClient(build: (w: FrameWriter, enc: HpackEncoder) => void): Buffer {
  const w = new FrameWriter();
  w.bytes(CLIENT_PREFACE);
  w.settings([]);
  build(w, new HpackEncoder());
  return w.take()!;
}

/** What our server sent back, as frames, until it closed (or 1 s passed). */
async function sendRaw(
  port: number,
  bytes: Buffer,
  waitMs = 1000,
): Promise<Array<{ type: number; flags: number; id: number; payload: Buffer }>> {
  const socket = net.connect(port, '127.0.0.1');
  const frames: Array<{ type: number; flags: number; id: number; payload: Buffer }> = [];
  const reader = new FrameReader();
  reader.maxFrameSize = 1 << 24;
  socket.on('data', (d: Buffer) =>
    reader.push(d, (type, flags, id, payload) =>
      frames.push({ type, flags, id, payload: Buffer.from(payload) }),
    ),
  );
  socket.on('error', () => {});
  socket.write(bytes);
  const timer = setTimeout(() => socket.destroy(), waitMs);
  await once(socket, 'close');
  clearTimeout(timer);
  return frames;
}

test('protocol violations end in GOAWAY or a reset, and nothing malformed reaches the handler', async () => {
  const seen: string[][] = [];
  const srv = await ourServer((stream, fields) => {
    seen.push(fields);
    stream.sendHeaders([':status', '200'], true);
  });
  const goawayCode = (frames: Awaited<ReturnType<typeof sendRaw>>): number | undefined =>
    frames.find((f) => f.type === FrameType.GOAWAY)?.payload.readUInt32BE(4);
  try {
    // Not HTTP/2 at all.
    const notH2 = await sendRaw(srv.port, Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    assert.equal(goawayCode(notH2), ErrorCode.PROTOCOL_ERROR);

    const dataOn0 = await sendRaw(
      srv.port,
      rawClient((w) => w.frame(FrameType.DATA, 0, 0, Buffer.from('x'))),
    );
    assert.equal(goawayCode(dataOn0), ErrorCode.PROTOCOL_ERROR);

    const tooBig = await sendRaw(
      srv.port,
      rawClient((w) => w.frame(FrameType.DATA, 0, 1, Buffer.alloc(20_000))),
    );
    assert.equal(goawayCode(tooBig), ErrorCode.FRAME_SIZE_ERROR);

    const badHpack = await sendRaw(
      srv.port,
      rawClient((w) => w.headers(1, Buffer.from([0x80]), true, 16384)), // index 0
    );
    assert.equal(goawayCode(badHpack), ErrorCode.COMPRESSION_ERROR);

    const evenStream = await sendRaw(
      srv.port,
      rawClient((w, enc) => w.headers(2, enc.encode(GET('/')), true, 16384)),
    );
    assert.equal(goawayCode(evenStream), ErrorCode.PROTOCOL_ERROR);

    // Smuggling attempts: CR/LF in a value, an uppercase name, a connection header: each stream
    // is reset and never handed over; a good stream on the same connection still works.
    const before = seen.length;
    const frames = await sendRaw(
      srv.port,
      rawClient((w, enc) => {
        w.headers(1, enc.encode([...GET('/a'), 'x-evil', 'a\r\nGET /b HTTP/1.1']), true, 16384);
        w.headers(3, enc.encode([...GET('/a'), 'X-Upper', '1']), true, 16384);
        w.headers(5, enc.encode([...GET('/a'), 'connection', 'close']), true, 16384);
        w.headers(7, enc.encode([...GET('/a').slice(0, 6), 'x-a', '1', ':path', '/late']), true, 16384);
        w.headers(9, enc.encode(GET('/good')), true, 16384);
        w.goaway(9, 0, '');
      }),
    );
    const resets = frames.filter((f) => f.type === FrameType.RST_STREAM);
    assert.deepEqual(
      resets.map((f) => [f.id, f.payload.readUInt32BE(0)]),
      [1, 3, 5, 7].map((id) => [id, ErrorCode.PROTOCOL_ERROR]),
    );
    assert.equal(seen.length - before, 1);
    assert.equal(seen.at(-1)![seen.at(-1)!.indexOf(':path') + 1], '/good');
    assert.ok(
      frames.some((f) => f.type === FrameType.HEADERS && f.id === 9 && (f.flags & Flag.END_STREAM) !== 0),
    );
  } finally {
    srv.close();
  }
});

test('random bytes after the preface never crash the server connection', async () => {
  const srv = await ourServer((stream) => stream.sendHeaders([':status', '200'], true));
  try {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 300 }), async (junk) => {
        const frames = await sendRaw(srv.port, Buffer.concat([rawClient(() => {}), Buffer.from(junk)]), 100);
        // Whatever happened, the server answered SETTINGS and kept to valid frames.
        assert.ok(frames.length >= 1 && frames[0]!.type === FrameType.SETTINGS);
      }),
      { numRuns: 60 },
    );
  } finally {
    srv.close();
  }
});

test('the frame reader yields the same frames however the bytes are cut', () => {
  const frame = fc.record({
    type: fc.integer({ min: 0, max: 12 }),
    flags: fc.integer({ min: 0, max: 255 }),
    id: fc.integer({ min: 0, max: 0x7fff_ffff }),
    payload: fc.uint8Array({ maxLength: 200 }),
  });
  fc.assert(
    fc.property(
      fc.array(frame, { maxLength: 12 }),
      fc.array(fc.integer({ min: 1, max: 50 }), { maxLength: 30 }),
      (list, cuts) => {
        const w = new FrameWriter();
        for (const f of list) w.frame(f.type, f.flags, f.id, Buffer.from(f.payload));
        const bytes = w.take() ?? Buffer.alloc(0);
        const reader = new FrameReader();
        const got: typeof list = [];
        let off = 0;
        const feed = (n: number): void => {
          reader.push(bytes.subarray(off, off + n), (type, flags, id, payload) =>
            got.push({ type, flags, id, payload: new Uint8Array(payload) }),
          );
          off += n;
        };
        for (const c of cuts) if (off < bytes.length) feed(Math.min(c, bytes.length - off));
        if (off < bytes.length) feed(bytes.length - off);
        assert.deepEqual(
          got.map((f) => ({ ...f, payload: [...f.payload] })),
          list.map((f) => ({ ...f, payload: [...f.payload] })),
        );
      },
    ),
    { numRuns: 300 },
  );
});

test('field checks: valid blocks pass; control characters (CR, LF, NUL and the rest but HTAB), uppercase and misplaced pseudo-headers do not', () => {
  const name = fc
    .stringMatching(/^[a-z0-9!#$%&'*+.^_`|~-]{1,10}$/)
    .filter(
      (n) =>
        !['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te'].includes(n),
    );
  // HTTP field-value bytes (RFC 9110 5.5): VCHAR, obs-text, and SP or HTAB inside. The inbound
  // side writes them into an HTTP/1.1 request, whose parsers refuse the other control characters.
  const value = fc.stringMatching(
    /^([\x21-\x7e\x80-\xff]([\x20-\x7e\x80-\xff\t]{0,10}[\x21-\x7e\x80-\xff])?)?$/,
  );
  const control = fc
    .oneof(fc.integer({ min: 0, max: 0x1f }), fc.constant(0x7f))
    .filter((c) => c !== 0x09)
    .map((c) => String.fromCharCode(c));
  fc.assert(
    fc.property(fc.array(fc.tuple(name, value), { maxLength: 8 }), control, fc.nat(), (pairs, bad, at) => {
      const fields = [...GET('/p'), ...pairs.flat()];
      assert.equal(checkFields(fields, 'request'), null);
      assert.equal(checkFields([':status', '200', ...pairs.flat()], 'response'), null);
      if (pairs.length === 0) return;
      const i = 8 + 2 * (at % pairs.length) + 1;
      const v = fields[i]!;
      const broken = [...fields];
      broken[i] = v.slice(0, 1) + bad + v.slice(1);
      assert.notEqual(checkFields(broken, 'request'), null);
      const upper = [...fields];
      upper[i - 1] = upper[i - 1]!.toUpperCase() + 'X';
      assert.notEqual(checkFields(upper, 'request'), null);
    }),
    { numRuns: 300 },
  );
  assert.notEqual(
    checkFields([':path', '/', ':method', 'GET', 'a', 'b', ':scheme', 'http'], 'request'),
    null,
  );
  assert.notEqual(checkFields([':method', 'GET', ':path', '/'], 'request'), null); // no :scheme
  assert.notEqual(checkFields([':status', '200'], 'trailers'), null);
  assert.notEqual(checkFields([':status', '20'], 'response'), null);
  assert.notEqual(checkFields([...GET('/'), 'te', 'gzip'], 'request'), null);
  assert.equal(checkFields([...GET('/'), 'te', 'trailers'], 'request'), null);
});

test('shutdown: GOAWAY names the last stream, open streams finish, new ones go elsewhere', async () => {
  let held: H2Stream | null = null;
  const srv = await ourServer((stream) => {
    held = stream;
  });
  const socket = net.connect(srv.port, '127.0.0.1');
  await once(socket, 'connect');
  let goaway: number | null = null;
  let closed = false;
  const conn = await new Promise<H2Connection>((resolve) => {
    const c: H2Connection = new H2Connection(socket, {
      role: 'client',
      onReady: () => resolve(c),
      onGoaway: (code) => (goaway = code),
      onClose: () => (closed = true),
    });
  });
  try {
    const reply = exchange(conn, GET('/slow'), null);
    const deadline = Date.now() + 5000;
    while (held === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    assert.ok(held !== null, 'the server has the stream');
    srv.conns[0]!.shutdown();
    while (goaway === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    assert.equal(goaway, ErrorCode.NO_ERROR);
    assert.equal(conn.hasRoom(), false, 'no new streams on a connection that is going away');
    assert.equal(closed, false, 'the open stream keeps the connection');
    (held as H2Stream).sendHeaders([':status', '200'], false);
    (held as H2Stream).write(Buffer.from('late but whole'), true);
    const r = await reply;
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), 'late but whole');
    assert.equal(r.code, null);
    while (!closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    assert.ok(closed, 'the connection closes once its last stream is done');
  } finally {
    conn.destroy(null);
    srv.close();
  }
});

test("a client's GOAWAY leaves the streams it opened to finish on the server", async () => {
  // A client drains (its proxy shuts down, or the endpoint left discovery): GOAWAY's last stream
  // id (0) counts the server's own streams, not the client's requests in flight.
  let held: H2Stream | null = null;
  let heldCode: number | null | undefined;
  const srv = await ourServer((stream) => {
    held = stream;
    stream.handler = {
      onHeaders() {},
      onData() {},
      onClose: (code) => (heldCode = code),
      onDrain() {},
    };
  });
  const socket = net.connect(srv.port, '127.0.0.1');
  await once(socket, 'connect');
  let closed = false;
  const conn = await new Promise<H2Connection>((resolve) => {
    const c: H2Connection = new H2Connection(socket, {
      role: 'client',
      onReady: () => resolve(c),
      onClose: () => (closed = true),
    });
  });
  try {
    const reply = exchange(conn, GET('/slow'), null);
    const deadline = Date.now() + 5000;
    while (held === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    assert.ok(held !== null, 'the server has the stream');
    conn.shutdown();
    const server = srv.conns[0]!;
    while (!server.goingAway && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    assert.ok(server.goingAway, "the server read the client's GOAWAY");
    assert.equal(heldCode, undefined, 'the request in flight is not refused');
    (held as H2Stream).sendHeaders([':status', '200'], false);
    (held as H2Stream).write(Buffer.from('answered after GOAWAY'), true);
    const r = await reply;
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), 'answered after GOAWAY');
    assert.equal(r.code, null);
    while (!closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    assert.ok(closed, 'the connection closes once its last stream is done');
  } finally {
    conn.destroy(null);
    srv.close();
  }
});

test('rapid reset: a client that opens and cancels streams by the thousand loses the connection', async () => {
  let handed = 0;
  const srv = await ourServer((stream) => {
    handed++;
    stream.handler = { onHeaders() {}, onData() {}, onClose() {}, onDrain() {} };
  });
  try {
    // A well-behaved client may cancel now and then: 100 resets keep the connection.
    const polite = await sendRaw(
      srv.port,
      rawClient((w, enc) => {
        for (let i = 0; i < 100; i++) {
          w.headers(2 * i + 1, enc.encode(GET(`/p${i}`)), true, 16384);
          w.rstStream(2 * i + 1, ErrorCode.CANCEL);
        }
      }),
      300,
    );
    assert.equal(
      polite.find((f) => f.type === FrameType.GOAWAY),
      undefined,
    );
    const before = handed;
    const frames = await sendRaw(
      srv.port,
      rawClient((w, enc) => {
        for (let i = 0; i < 5000; i++) {
          w.headers(2 * i + 1, enc.encode(GET(`/r${i}`)), true, 16384);
          w.rstStream(2 * i + 1, ErrorCode.CANCEL);
        }
      }),
    );
    const goaway = frames.find((f) => f.type === FrameType.GOAWAY);
    assert.ok(goaway !== undefined, 'GOAWAY');
    assert.equal(goaway.payload.readUInt32BE(4), ErrorCode.ENHANCE_YOUR_CALM);
    assert.ok(handed - before <= 1001, `${handed - before} streams reached the handler`);
  } finally {
    srv.close();
  }
});

test('a peer that keeps sending PINGs but never reads the answers is cut off', async () => {
  const conns: H2Connection[] = [];
  let closedWith: Error | null | undefined;
  const server = net.createServer((socket) => {
    conns.push(
      new H2Connection(socket, {
        role: 'server',
        maxUnreadBytes: 64 * 1024,
        onClose: (err) => (closedWith = err),
      }),
    );
  });
  await once(server.listen(0, '127.0.0.1'), 'listening');
  const socket = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  socket.on('error', () => {});
  try {
    await once(socket, 'connect');
    socket.pause(); // never read a byte of what the server answers
    socket.write(rawClient(() => {}));
    const ping = new FrameWriter();
    for (let i = 0; i < 2000; i++) ping.frame(FrameType.PING, 0, 0, Buffer.alloc(8, i & 0xff));
    const burst = ping.take()!;
    const deadline = Date.now() + 15_000;
    // 2,000 PINGs (34 KB of answers) a round, until the kernel buffers are full and the server's
    // queue passes its limit (bounded in rounds and time).
    for (let round = 0; round < 2000 && closedWith === undefined && Date.now() < deadline; round++) {
      if (!socket.write(burst))
        await Promise.race([once(socket, 'drain'), new Promise((r) => setTimeout(r, 50))]);
      await new Promise((r) => setImmediate(r));
    }
    assert.ok(closedWith instanceof Error, 'the server closed the connection');
    assert.match(closedWith.message, /does not read/);
  } finally {
    socket.destroy();
    for (const c of conns) c.destroy(null);
    server.close();
  }
});
