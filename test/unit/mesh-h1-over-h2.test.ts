// The mesh's virtual HTTP/1 upstream connection (src/proxy/mesh/h1-over-h2.ts) on a real own-HTTP/2
// connection over loopback TCP (the pool stands in for the mTLS one): a stream the peer refuses
// (REFUSED_STREAM: never processed) fails the virtual connection with an error the HTTP/1 session
// may re-send any request on; a stream reset otherwise does not say that.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { H2Connection } from '../../src/proxy/h2/connection.ts';
import { ErrorCode } from '../../src/proxy/h2/frames.ts';
import type { H2Stream, H2StreamHandler } from '../../src/proxy/h2/stream.ts';
import { parseRequestHead, type H1Limits } from '../../src/proxy/http/h1-parser.ts';
import { wasUnprocessed, type DirectResponseSink } from '../../src/proxy/http/direct-upstream.ts';
import { H1OverH2Conn } from '../../src/proxy/mesh/h1-over-h2.ts';
import type { MeshH2Pool } from '../../src/proxy/mesh/h2h1-pool.ts';

const LIMITS: H1Limits = { maxRequestLineBytes: 8192, maxHeaderBytes: 65536, maxHeaders: 100 };

async function serverAnswering(code: number): Promise<{ port: number; close(): void }> {
  const conns: H2Connection[] = [];
  const server = net.createServer((socket) => {
    conns.push(new H2Connection(socket, { role: 'server', onStream: (stream) => stream.reset(code) }));
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

/** What the virtual connection's failure says, for a request whose stream the peer resets with `code`. */
async function failureFor(code: number, method: string): Promise<Error> {
  const srv = await serverAnswering(code);
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
      LIMITS,
    );
    const raw = Buffer.from(`${method} /x HTTP/1.1\r\nHost: app\r\n\r\n`, 'latin1');
    const parsed = parseRequestHead(raw, 0, raw.length, LIMITS);
    assert.equal(parsed.kind, 'ok');
    if (parsed.kind !== 'ok') throw new Error('unreachable');
    const sink: DirectResponseSink = {
      onDirectHead: () => assert.fail('no response was sent'),
      onUpstreamData: () => {},
      onDirectEnd: () => {},
    };
    const failed = once(virtual, 'error') as Promise<[Error]>;
    virtual.startRequest(parsed.head, { method, path: '/x', host: null }, false, sink);
    const [err] = await failed;
    return err;
  } finally {
    conn.destroy(null);
    srv.close();
  }
}

test('a refused stream fails the virtual connection as unprocessed (safe to re-send, even a POST)', async () => {
  const err = await failureFor(ErrorCode.REFUSED_STREAM, 'POST');
  assert.equal(wasUnprocessed(err), true, err.message);
  assert.match(err.message, /code 7/);
});

test('a stream reset otherwise is an ordinary upstream failure', async () => {
  for (const code of [ErrorCode.CANCEL, ErrorCode.INTERNAL_ERROR, ErrorCode.PROTOCOL_ERROR]) {
    const err = await failureFor(code, 'GET');
    assert.equal(wasUnprocessed(err), false, `code ${code}`);
  }
});
