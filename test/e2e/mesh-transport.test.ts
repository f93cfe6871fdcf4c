// The mesh transport end to end: a control plane over a temp state folder that says which
// workloads are meshed and who they are, two in-process proxies with file identities from one
// test CA, and real apps behind the server-side proxy. HTTP/1 (GET, POST with Content-Length and
// chunked bodies, a streamed response, keep-alive, HEAD, 204), gRPC unary and streaming, a
// WebSocket and opaque TCP all cross the two proxies over mutual TLS; a recording relay between
// the proxies sees TLS records and never plaintext HTTP; many requests share few TLS connections;
// the app learns its caller's identity and a forged identity header never reaches it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { once } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { WebSocket, WebSocketServer } from 'ws';
import { createEchoClient, startEchoServer } from '../fixtures/grpc-echo.ts';
import { idOf, identityFor, startMeshWorld, type MeshWorld } from '../helpers/mesh-pki.ts';
import type { RunningProxy } from '../../src/proxy/proxy.ts';
import { metric, portOf } from '../helpers/running-proxy.ts';

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One request through the client proxy's outbound listener (HTTP proxy, absolute-form). */
function request(
  proxyPort: number,
  agent: http.Agent,
  opts: { method?: string; path?: string; headers?: http.OutgoingHttpHeaders; body?: string | string[] },
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port: proxyPort,
        agent,
        method: opts.method ?? 'GET',
        path: `http://web.default:8080${opts.path ?? '/'}`,
        headers: opts.headers ?? {},
        timeout: 10_000,
      },
      (res) => {
        let body = '';
        res.setEncoding('latin1');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    if (Array.isArray(opts.body)) for (const part of opts.body) req.write(part);
    else if (opts.body !== undefined) req.write(opts.body);
    req.end();
  });
}

/** An HTTP app that describes each request it gets (and streams /stream). */
async function startHttpApp(): Promise<{ port: number; seen: http.IncomingHttpHeaders[]; close(): void }> {
  const seen: http.IncomingHttpHeaders[] = [];
  const server = http.createServer((req, res) => {
    seen.push(req.headers);
    let body = '';
    req.setEncoding('latin1');
    req.on('data', (d: string) => (body += d));
    req.on('end', () => {
      if (req.url === '/stream') {
        let i = 0;
        const tick = (): void => {
          if (i === 5) return void res.end('end');
          res.write(`part${i++};`);
          setTimeout(tick, 10);
        };
        return tick();
      }
      if (req.url === '/empty') {
        res.statusCode = 204;
        return void res.end();
      }
      res.setHeader('x-method', req.method ?? '');
      res.setHeader('set-cookie', ['a=1', 'b=2']);
      const json = JSON.stringify({
        method: req.method,
        url: req.url,
        body,
        te: req.headers['transfer-encoding'] ?? null,
        cl: req.headers['content-length'] ?? null,
        id: req.headers['trellis-client-id'] ?? null,
        origProto: req.headers['trellis-orig-proto'] ?? null,
        httpVersion: req.httpVersion,
      });
      res.setHeader('content-length', Buffer.byteLength(json));
      res.end(json);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    seen,
    close() {
      server.close();
      server.closeAllConnections();
    },
  };
}

/** Relays TCP to `to`, recording every byte that goes through (client to server). */
async function startRecordingRelay(
  to: number,
): Promise<{ port: number; bytes: () => Buffer; close(): void }> {
  const chunks: Buffer[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((down) => {
    const up = net.connect(to, '127.0.0.1');
    sockets.add(down).add(up);
    down.on('data', (d: Buffer) => chunks.push(d));
    down.pipe(up).pipe(down);
    const kill = (): void => {
      down.destroy();
      up.destroy();
    };
    down.on('error', kill).on('close', kill);
    up.on('error', kill).on('close', kill);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    bytes: () => Buffer.concat(chunks),
    close() {
      server.close();
      for (const s of sockets) s.destroy();
    },
  };
}

async function meshedPair(
  world: MeshWorld,
  service: string,
  appPort: number,
  opts: { relay?: boolean; protocol?: string } = {},
): Promise<{
  client: RunningProxy;
  server: RunningProxy;
  relay: Awaited<ReturnType<typeof startRecordingRelay>> | null;
}> {
  const server = await world.proxy({ identity: await identityFor(world, `${service}-server`), app: appPort });
  const relay = opts.relay === true ? await startRecordingRelay(portOf(server, 'inbound')) : null;
  await world.register(
    service,
    `${service}-1`,
    relay?.port ?? portOf(server, 'inbound'),
    idOf(`${service}-server`),
  );
  const client = await world.proxy({
    identity: await identityFor(world, `${service}-client`),
    config: {
      destinations: [
        { listen: '127.0.0.1:0', target: `${service}.default:8080`, protocol: opts.protocol ?? 'auto' },
      ],
    },
  });
  return { client, server, relay };
}

test('HTTP/1 crosses the mesh as HTTP/2 over mutual TLS', { timeout: 60_000 }, async (t) => {
  const world = await startMeshWorld();
  t.after(() => world.close());
  const app = await startHttpApp();
  t.after(() => app.close());
  const { client, server, relay } = await meshedPair(world, 'web', app.port, { relay: true });
  t.after(() => relay?.close());
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  t.after(() => agent.destroy());
  const out = portOf(client, 'outbound');

  await t.test('GET: the app sees HTTP/1.1, the caller identity, and no forged header', async () => {
    const r = await request(out, agent, {
      path: '/a?b=c',
      headers: { 'trellis-client-id': 'spiffe://forged/ns/x/sa/y' },
    });
    assert.equal(r.status, 200);
    const seen = JSON.parse(r.body) as Record<string, unknown>;
    assert.equal(seen.method, 'GET');
    assert.equal(seen.url, '/a?b=c');
    assert.equal(seen.httpVersion, '1.1');
    assert.equal(seen.id, idOf('web-client'));
    assert.equal(seen.origProto, null, "the marker header is the proxies' business only");
    assert.deepEqual(r.headers['set-cookie'], ['a=1', 'b=2']);
    assert.equal(r.headers['x-method'], 'GET');
  });

  await t.test('POST with Content-Length and with a chunked body', async () => {
    const big = 'x'.repeat(200_000);
    const a = await request(out, agent, {
      method: 'POST',
      body: big,
      headers: { 'content-length': String(big.length) },
    });
    const sa = JSON.parse(a.body) as Record<string, unknown>;
    assert.equal(sa.body, big);
    assert.equal(sa.cl, String(big.length));
    const b = await request(out, agent, { method: 'POST', body: ['one,', 'two,', 'three'] });
    const sb = JSON.parse(b.body) as Record<string, unknown>;
    assert.equal(sb.body, 'one,two,three');
    assert.equal(sb.te, 'chunked');
  });

  await t.test('a streamed response, HEAD and 204', async () => {
    const s = await request(out, agent, { path: '/stream' });
    assert.equal(s.status, 200);
    assert.equal(s.body, 'part0;part1;part2;part3;part4;end');
    const h = await request(out, agent, { method: 'HEAD', path: '/x' });
    assert.equal(h.status, 200);
    assert.equal(h.body, '');
    assert.ok(Number(h.headers['content-length']) > 0, 'HEAD keeps the Content-Length the app sent');
    const e = await request(out, agent, { path: '/empty' });
    assert.equal(e.status, 204);
    assert.equal(e.body, '');
  });

  await t.test('many requests on keep-alive share one mTLS connection', async () => {
    const before = metric(client, 'trellis_mesh_connections_total', { direction: 'outbound' });
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) => request(out, agent, { path: `/n${i}` })),
    );
    assert.ok(results.every((r) => r.status === 200));
    assert.equal(metric(client, 'trellis_mesh_connections_total', { direction: 'outbound' }), before);
    assert.ok(before <= 2, `mTLS connections: ${before}`);
    assert.equal(
      metric(server, 'trellis_mesh_connections_total', {
        direction: 'inbound',
        peer_identity: idOf('web-client'),
      }),
      before,
    );
    assert.ok(metric(client, 'trellis_identity_cert_expiry_timestamp_seconds') > Date.now() / 1000);
  });

  await t.test('under load a response body never arrives before its head', async () => {
    // node:http2 emits 'response' a tick after it pushes a DATA frame read with the HEADERS: a
    // body read too early reached the HTTP/1 session before the status line (502
    // upstream-bad-response for a few percent of requests, seen with the proxies in their own
    // processes under wrk; in one process the frames rarely arrive together, so this is a guard
    // against regressions of the whole path under concurrency more than a reproduction).
    const loadAgent = new http.Agent({ keepAlive: true, maxSockets: 32 });
    t.after(() => loadAgent.destroy());
    const bad: string[] = [];
    let next = 0;
    const deadline = Date.now() + 20_000;
    const worker = async (): Promise<void> => {
      while (next < 1500 && Date.now() < deadline) {
        const i = next++;
        const r = await request(out, loadAgent, { path: `/load${i}` });
        const ok = r.status === 200 && (JSON.parse(r.body) as { url?: string }).url === `/load${i}`;
        if (!ok) bad.push(`${r.status} ${r.headers['trellis-proxy-error'] ?? ''} ${r.body.slice(0, 60)}`);
      }
    };
    await Promise.all(Array.from({ length: 32 }, worker));
    assert.equal(next, 1500, 'all requests were sent in time');
    assert.deepEqual(bad.slice(0, 5), [], `${bad.length} bad responses`);
  });

  await t.test('the bytes between the proxies are TLS records, never plaintext HTTP', () => {
    const bytes = relay!.bytes();
    assert.ok(bytes.length > 200_000);
    assert.equal(bytes[0], 0x16, 'starts with a TLS handshake record');
    // The ClientHello (plaintext) names the protocol: HTTP/1 over the own HTTP/2 connection.
    assert.ok(bytes.includes(Buffer.from('trellis-h2h1/1')), 'ALPN trellis-h2h1/1 offered');
    for (const needle of [
      'HTTP/1.1',
      'GET /',
      'POST',
      'trellis-client-id',
      'web.default',
      'xxxxxxxx',
      'PRI * HTTP/2.0',
    ]) {
      assert.equal(bytes.includes(Buffer.from(needle)), false, `plaintext ${needle} on the wire`);
    }
    // Walk the records: every one is a well-formed TLS record (handshake, alert or application data).
    let offset = 0;
    while (offset + 5 <= bytes.length) {
      const type = bytes[offset]!;
      assert.ok(type === 0x14 || type === 0x15 || type === 0x16 || type === 0x17, `record type ${type}`);
      assert.equal(bytes[offset + 1], 0x03);
      offset += 5 + bytes.readUInt16BE(offset + 3);
    }
  });
});

test('gRPC, WebSocket and opaque TCP cross the mesh over mutual TLS', { timeout: 60_000 }, async (t) => {
  const world = await startMeshWorld();
  t.after(() => world.close());

  await t.test('gRPC unary and streaming', async () => {
    const echo = await startEchoServer();
    t.after(() => echo.close());
    const { client, server } = await meshedPair(world, 'echo', echo.port);
    const grpcClient = createEchoClient(`127.0.0.1:${portOf(client, 'destination-0')}`);
    t.after(() => grpcClient.close());
    const unary = await new Promise<string>((resolve, reject) =>
      grpcClient.Unary({ message: 'hi' }, { deadline: Date.now() + 10_000 }, (err, reply) =>
        err ? reject(err) : resolve(reply!.message),
      ),
    );
    assert.equal(unary, 'hi');
    const streamed: number[] = [];
    await new Promise<void>((resolve, reject) => {
      const call = grpcClient.ServerStream({ message: 's', count: 20 });
      call.on('data', (r: { index: number }) => streamed.push(r.index));
      call.on('end', resolve);
      call.on('error', reject);
    });
    assert.deepEqual(
      streamed,
      Array.from({ length: 20 }, (_, i) => i),
    );
    const bidi = await new Promise<string[]>((resolve, reject) => {
      const got: string[] = [];
      const call = grpcClient.Bidi();
      call.on('data', (r: { message: string }) => got.push(r.message));
      call.on('end', () => resolve(got));
      call.on('error', reject);
      for (const m of ['a', 'b', 'c']) call.write({ message: m });
      call.end();
    });
    assert.deepEqual(bidi, ['echo:a', 'echo:b', 'echo:c']);
    const failed = await new Promise<grpc.ServiceError>((resolve) =>
      grpcClient.Unary(
        { message: 'x', failCode: grpc.status.NOT_FOUND },
        { deadline: Date.now() + 10_000 },
        (err) => resolve(err!),
      ),
    );
    assert.equal(failed.code, grpc.status.NOT_FOUND);
    assert.ok(
      metric(server, 'trellis_mesh_connections_total', {
        direction: 'inbound',
        peer_identity: idOf('echo-client'),
      }) >= 1,
    );
  });

  await t.test('a WebSocket keeps its own mTLS connection', async () => {
    const httpServer = http.createServer();
    const wss = new WebSocketServer({ server: httpServer });
    let seenId: string | undefined;
    wss.on('connection', (ws, req) => {
      seenId = req.headers['trellis-client-id'] as string | undefined;
      ws.on('message', (m) => ws.send(`echo:${String(m)}`));
    });
    httpServer.listen(0, '127.0.0.1');
    await once(httpServer, 'listening');
    t.after(() => {
      wss.close();
      httpServer.close();
      httpServer.closeAllConnections();
    });
    const { client } = await meshedPair(world, 'ws', (httpServer.address() as net.AddressInfo).port);
    const ws = new WebSocket(`ws://127.0.0.1:${portOf(client, 'destination-0')}/chat`, {
      headers: { 'trellis-client-id': 'forged' },
    });
    await once(ws, 'open');
    const replies: string[] = [];
    ws.on('message', (m) => replies.push(String(m)));
    for (const m of ['one', 'two', 'three']) ws.send(m);
    for (const deadline = Date.now() + 10_000; replies.length < 3 && Date.now() < deadline;)
      await new Promise((r) => setTimeout(r, 10));
    ws.close();
    assert.deepEqual(replies, ['echo:one', 'echo:two', 'echo:three']);
    assert.equal(seenId, idOf('ws-client'));
  });

  await t.test('opaque TCP (with half-close) over the transport header', async () => {
    const echo = net.createServer({ allowHalfOpen: true }, (s) => {
      const parts: Buffer[] = [];
      s.on('data', (d: Buffer) => parts.push(d));
      s.on('end', () => s.end(Buffer.concat([Buffer.from('got:'), ...parts])));
    });
    echo.listen(0, '127.0.0.1');
    await once(echo, 'listening');
    t.after(() => echo.close());
    const { client, server } = await meshedPair(world, 'tcp', (echo.address() as net.AddressInfo).port, {
      protocol: 'opaque',
    });
    const payload = Buffer.alloc(300_000, 7);
    const reply = await new Promise<Buffer>((resolve, reject) => {
      const s = net.connect({
        port: portOf(client, 'destination-0'),
        host: '127.0.0.1',
        allowHalfOpen: true,
      });
      const got: Buffer[] = [];
      s.on('data', (d: Buffer) => got.push(d));
      s.on('end', () => resolve(Buffer.concat(got)));
      s.on('error', reject);
      s.end(payload);
    });
    assert.equal(reply.subarray(0, 4).toString(), 'got:');
    assert.ok(reply.subarray(4).equals(payload));
    assert.ok(
      metric(server, 'trellis_mesh_connections_total', {
        direction: 'inbound',
        peer_identity: idOf('tcp-client'),
      }) >= 1,
    );
  });
});
