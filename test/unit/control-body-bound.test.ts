// A body over the bound, from a client still uploading, to the injector's webhook
// (src/control/injector/webhook-server.ts, HTTPS) and to the control plane's HTTP API
// (src/control/server.ts): both read bodies with src/control/http-bounds.ts readBody and refuse
// with answerAndClose, so the client gets the 413 with `Connection: close`, never a reset in its
// place: the answer goes out at once, the rest of the upload is read and dropped, and the
// connection closes once the client stopped sending, or after a bounded linger.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { webhookMaterial } from '../../src/cli/install-identity.ts';
import { LocalWatcher } from '../../src/control/discovery/local.ts';
import { LINGER } from '../../src/control/http-bounds.ts';
import { startInjectorServer } from '../../src/control/injector/webhook-server.ts';
import { localCatalog, startControlPlane } from '../../src/control/server.ts';
import { traceCollectorComponent } from '../../src/control/traces/component.ts';
import { loadOrCreateTraceToken } from '../../src/control/traces/token.ts';
import { silentLogger } from '../../src/core/log.ts';
import { TEST_INJECTOR_CONFIG } from '../helpers/injector-config.ts';
import { removeTempDir } from '../helpers/temp-dir.ts';

/** What a client means to upload: well past either bound (4 MiB, 1 MiB), under the linger's bytes. */
const UPLOAD_BYTES = 32 * 1024 * 1024;
const CHUNK = Buffer.alloc(64 * 1024, 'x');

interface Server {
  /** A connection to it (TLS for the injector). */
  connect(): net.Socket;
  /** What an http(s) request to it needs. */
  readonly request: typeof https.request;
  readonly options: https.RequestOptions;
  /** The head of a POST of `length` bytes that it reads (after authorizing it). */
  head(length: number): string;
  /** What its 413 says. */
  readonly message: RegExp;
}

async function injector(t: { after(fn: () => unknown): void }): Promise<Server> {
  const material = await webhookMaterial(
    'trellis-injector',
    'trellis',
    'cluster.local',
    3_600_000,
    Date.now(),
  );
  const server = await startInjectorServer({
    listen: '127.0.0.1:0',
    certPem: material.certPem,
    keyPem: material.keyPem,
    config: TEST_INJECTOR_CONFIG,
    namespaceAnnotations: async () => ({}),
    log: silentLogger,
  });
  t.after(() => server.close());
  const port = Number(server.address.slice(server.address.lastIndexOf(':') + 1));
  const tlsOptions = { ca: material.caPem, servername: 'trellis-injector.trellis.svc' };
  return {
    connect: () => tls.connect({ host: '127.0.0.1', port, ...tlsOptions }),
    request: https.request,
    options: { host: '127.0.0.1', port, path: '/inject', agent: false, ...tlsOptions },
    head: (length) => `POST /inject HTTP/1.1\r\nHost: x\r\nContent-Length: ${length}\r\n\r\n`,
    message: /the review is over 4194304 bytes/,
  };
}

async function controlPlane(t: { after(fn: () => unknown): void }): Promise<Server> {
  const root = await mkdtemp(join(tmpdir(), 'trellis-body-bound-'));
  t.after(() => removeTempDir(root));
  const token = await loadOrCreateTraceToken(root, () => undefined);
  const plane = await startControlPlane({
    watcher: new LocalWatcher({ root }),
    catalog: localCatalog(root),
    grpcListen: '127.0.0.1:0',
    httpListen: '127.0.0.1:0',
    components: [traceCollectorComponent({ log: silentLogger, token })],
  });
  t.after(() => plane.close());
  const port = Number(plane.http.slice(plane.http.lastIndexOf(':') + 1));
  // The trace intake, with its token: read once authorized, up to the API's 1 MiB.
  const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/x-protobuf' };
  return {
    connect: () => net.connect(port, '127.0.0.1'),
    request: http.request as typeof https.request,
    options: { host: '127.0.0.1', port, path: '/v1/traces', agent: false, headers },
    head: (length) =>
      `POST /v1/traces HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n` +
      `Content-Type: application/x-protobuf\r\nContent-Length: ${length}\r\n\r\n`,
    message: /request body over 1048576 bytes/,
  };
}

interface Outcome {
  status: number | null;
  connection: string | undefined;
  body: string;
  /** An error the client saw before any answer. */
  error: string | null;
}

/** An http(s) client POSTing UPLOAD_BYTES as fast as the server takes them (bounded: 10 s). */
function upload(server: Server): Promise<Outcome> {
  return new Promise((resolve) => {
    const outcome: Outcome = { status: null, connection: undefined, body: '', error: null };
    const options = server.options;
    const req = server.request({
      ...options,
      method: 'POST',
      headers: { ...options.headers, 'content-length': UPLOAD_BYTES },
    });
    const timer = setTimeout(() => req.destroy(new Error('no outcome within 10 s')), 10_000);
    const done = (): void => {
      clearTimeout(timer);
      resolve(outcome);
    };
    req.on('response', (res) => {
      outcome.status = res.statusCode ?? null;
      outcome.connection = res.headers.connection;
      res.setEncoding('utf8');
      res.on('data', (d: string) => (outcome.body += d));
      res.on('end', done);
      res.on('error', done);
    });
    req.on('error', (error: NodeJS.ErrnoException) => {
      if (outcome.status === null) outcome.error = error.code ?? error.message;
      done();
    });
    let sent = 0;
    const pump = (): void => {
      while (sent < UPLOAD_BYTES && !req.destroyed) {
        sent += CHUNK.length;
        if (!req.write(CHUNK)) return void req.once('drain', pump);
      }
      if (!req.destroyed) req.end();
    };
    pump();
  });
}

/**
 * A raw client that sends its head and then UPLOAD_BYTES, and reads nothing until `readAfterMs`
 * (as clients that send the whole body before they read do); what it read, the error it saw, and
 * when the server closed (ms after the first byte).
 */
function uploadThenRead(
  server: Server,
  readAfterMs: number,
): Promise<{ text: string; error: string | null; closedMs: number }> {
  return new Promise((resolve) => {
    const socket = server.connect();
    const started = Date.now();
    let text = '';
    let error: string | null = null;
    socket.pause();
    const timer = setTimeout(() => socket.resume(), readAfterMs);
    const guard = setTimeout(() => socket.destroy(), 15_000);
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => (text += d));
    socket.on('error', (e: NodeJS.ErrnoException) => (error ??= e.code ?? e.message));
    socket.on('close', () => {
      clearTimeout(timer);
      clearTimeout(guard);
      resolve({ text, error, closedMs: Date.now() - started });
    });
    socket.write(server.head(UPLOAD_BYTES));
    let sent = 0;
    const pump = (): void => {
      while (sent < UPLOAD_BYTES && !socket.destroyed) {
        sent += CHUNK.length;
        if (!socket.write(CHUNK)) return void socket.once('drain', pump);
      }
    };
    pump();
  });
}

for (const [name, start] of [
  ['the injector', injector],
  ['the control plane', controlPlane],
] as const) {
  test(`${name}: a client uploading past the bound gets the 413, not a reset`, async (t) => {
    const server = await start(t);
    for (let i = 1; i <= 3; i++) {
      const outcome = await upload(server);
      assert.equal(outcome.error, null, `attempt ${i}: the client saw ${outcome.error} instead of an answer`);
      assert.equal(outcome.status, 413);
      assert.equal(outcome.connection, 'close');
      assert.match(outcome.body, server.message);
    }
    // One that reads only after it sent its body: the answer waits for it, then the server closes.
    const late = await uploadThenRead(server, 300);
    assert.equal(late.error, null, `the late reader saw ${late.error}`);
    assert.match(late.text, /^HTTP\/1\.1 413 /);
    assert.match(late.text, /\r\nconnection: close\r\n/i);
    assert.match(late.text, server.message);
  });
}

test('the linger is bounded: a client that never stops sending is closed after it', async (t) => {
  const server = await controlPlane(t);
  const socket = server.connect();
  const started = Date.now();
  let text = '';
  socket.setEncoding('latin1');
  socket.on('data', (d: string) => (text += d));
  socket.on('error', () => {});
  socket.write(server.head(1 << 30));
  // 64 KiB every 20 ms (3.2 MB/s: under the linger's bytes for its whole time), at most 15 s.
  const drip = setInterval(() => {
    if (Date.now() - started > 15_000) socket.destroy();
    else if (!socket.destroyed) socket.write(CHUNK);
  }, 20);
  t.after(() => clearInterval(drip));
  await new Promise((resolve) => socket.once('close', resolve));
  clearInterval(drip);
  const ms = Date.now() - started;
  assert.match(text, /^HTTP\/1\.1 413 /);
  assert.ok(ms >= LINGER.maxMs - 500 && ms < LINGER.maxMs + 2000, `closed after ${ms} ms`);
});
