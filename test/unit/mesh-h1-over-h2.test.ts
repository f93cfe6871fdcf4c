// The mesh's HTTP/1 upstream (src/proxy/mesh/h1-over-h2.ts) on a real own-HTTP/2 connection over
// loopback TCP (the pool stands in for the mTLS one): a stream the peer refuses (REFUSED_STREAM:
// never processed) fails the upstream with an error the HTTP/1 session may re-send any request
// on; a stream reset otherwise does not say that.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { H2Connection } from '../../src/proxy/h2/connection.ts';
import { ErrorCode } from '../../src/proxy/h2/frames.ts';
import type { H2Stream, H2StreamHandler } from '../../src/proxy/h2/stream.ts';
import { parseRequestHead, type H1Limits } from '../../src/proxy/http/h1-parser.ts';
import { wasUnprocessed, type H1ResponseSink } from '../../src/proxy/http/h1-upstream.ts';
import { H1OverH2Conn } from '../../src/proxy/mesh/h1-over-h2.ts';
import type { MeshH2Pool } from '../../src/proxy/mesh/h2h1-pool.ts';

const LIMITS: H1Limits = { maxRequestLineBytes: 8192, maxHeaderBytes: 65536, maxHeaders: 100 };

async function serverAnswering(
  onStream: (stream: H2Stream) => void,
): Promise<{ port: number; close(): void }> {
  const conns: H2Connection[] = [];
  const server = net.createServer((socket) => {
    conns.push(new H2Connection(socket, { role: 'server', onStream }));
  });
  await once(server.listen(0, '127.0.0.1'), 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    close() {
      for (const c of conns) c.destroy(null);
      server.close();
    },
  };
}

/** How the upstream failed, for a request whose stream the peer answers with `onStream`. */
interface Failure {
  readonly err: Error;
  readonly beforeResponse: boolean;
  readonly resendable: boolean;
  /** Response body bytes passed on before. */
  readonly body: string;
}

async function failureFor(onStream: (stream: H2Stream) => void, method: string): Promise<Failure> {
  const srv = await serverAnswering(onStream);
  const socket = net.connect(srv.port, '127.0.0.1');
  await once(socket, 'connect');
  const conn = await new Promise<H2Connection>((resolve) => {
    const c: H2Connection = new H2Connection(socket, { role: 'client', onReady: () => resolve(c) });
  });
  const pool: Pick<MeshH2Pool, 'requestNow' | 'connection'> = {
    requestNow: (
      _key: string,
      fields: readonly string[],
      end: boolean,
      h: H2StreamHandler,
    ): H2Stream | null => conn.request(fields, end, h),
    connection: () => assert.fail('a ready connection is used at once'),
  };
  try {
    const virtual = new H1OverH2Conn(
      pool as MeshH2Pool,
      { host: '127.0.0.1', port: srv.port },
      'spiffe://t/ns/a/sa/b',
      [],
      1,
    );
    const raw = Buffer.from(`${method} /x HTTP/1.1\r\nHost: app\r\n\r\n`, 'latin1');
    const parsed = parseRequestHead(raw, 0, raw.length, LIMITS);
    assert.equal(parsed.kind, 'ok');
    if (parsed.kind !== 'ok') throw new Error('unreachable');
    let closed!: (f: Failure) => void;
    const failed = new Promise<Failure>((resolve) => (closed = resolve));
    let body = '';
    const sink: H1ResponseSink = {
      onInterim: () => assert.fail('no interim response was sent'),
      onResponseHead: () => true,
      onResponseData: (chunk) => (body += chunk.toString('latin1')),
      onResponseEnd: () => assert.fail('the response must not end'),
      onBadResponse: () => assert.fail('no bad response was sent'),
      onResponseBroken: () => {},
      onUpstreamClosed: (err, beforeResponse, resendable) =>
        closed({ err: err!, beforeResponse, resendable, body }),
      onRequestDrain: () => {},
      fault: (_where, err) => assert.fail(String(err)),
    };
    virtual.start(parsed.head, { method, path: '/x', host: null }, false, sink);
    return await failed;
  } finally {
    conn.destroy(null);
    srv.close();
  }
}

const resetWith = (code: number) => (stream: H2Stream) => stream.reset(code);

test('a refused stream fails the upstream as unprocessed (safe to re-send, even a POST)', async () => {
  const f = await failureFor(resetWith(ErrorCode.REFUSED_STREAM), 'POST');
  assert.equal(wasUnprocessed(f.err), true, f.err.message);
  assert.equal(f.beforeResponse, true);
  assert.equal(f.resendable, true);
  assert.match(f.err.message, /code 7/);
});

test('a stream reset otherwise is an ordinary upstream failure', async () => {
  for (const code of [ErrorCode.CANCEL, ErrorCode.INTERNAL_ERROR, ErrorCode.PROTOCOL_ERROR]) {
    const f = await failureFor(resetWith(code), 'GET');
    assert.equal(wasUnprocessed(f.err), false, `code ${code}`);
    assert.equal(f.beforeResponse, true);
    assert.equal(f.resendable, false);
  }
});

test('a response stream that ends short of its content-length fails mid-response (the client is not left waiting)', async () => {
  const f = await failureFor((stream) => {
    stream.sendHeaders([':status', '200', 'content-length', '10'], false);
    stream.write(Buffer.from('hello'), true);
  }, 'GET');
  assert.equal(f.body, 'hello');
  assert.equal(f.beforeResponse, false);
  assert.equal(wasUnprocessed(f.err), false);
});

test('an owner that let go of the upstream hears nothing more of it, even of a failure found just before', async () => {
  const pool: Pick<MeshH2Pool, 'requestNow' | 'connection'> = {
    requestNow: () => null,
    // The endpoint's connection fails at once: the upstream fails inside start().
    connection: (_address, _identity, cb) => cb(null, 'connect-failed', new Error('refused')),
  };
  const virtual = new H1OverH2Conn(
    pool as MeshH2Pool,
    { host: '127.0.0.1', port: 9 },
    'spiffe://t/ns/a/sa/b',
    [],
    1,
  );
  const raw = Buffer.from('GET /x HTTP/1.1\r\nHost: app\r\n\r\n', 'latin1');
  const parsed = parseRequestHead(raw, 0, raw.length, LIMITS);
  if (parsed.kind !== 'ok') throw new Error('unreachable');
  const heard: string[] = [];
  const sink: H1ResponseSink = {
    onInterim: () => heard.push('interim'),
    onResponseHead: () => (heard.push('head'), true),
    onResponseData: () => heard.push('data'),
    onResponseEnd: () => heard.push('end'),
    onBadResponse: () => heard.push('bad'),
    onResponseBroken: () => heard.push('broken'),
    onUpstreamClosed: () => heard.push('closed'),
    onRequestDrain: () => heard.push('drain'),
    fault: () => heard.push('fault'),
  };
  virtual.start(parsed.head, { method: 'GET', path: '/x', host: null }, false, sink);
  virtual.close(); // (the exchange ended meanwhile: a response timeout, the client gone)
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(heard, []);
});
