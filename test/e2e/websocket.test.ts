// End-to-end WebSocket through the real proxy process (HTTP/1.1 Upgrade, spliced into a byte
// tunnel by src/proxy/http/h1-tunnel.ts), on the inbound listener and inside a CONNECT tunnel on
// the outbound listener: the upgrade request's headers reach the upstream, text and binary
// messages cross both ways, and the close handshake completes from either side.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { once } from 'node:events';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import { startProxyProcess, type ProxyProcess } from '../helpers/proxy-process.ts';
import { openTunnel } from '../helpers/http-matrix.ts';

const T = { timeout: 15_000 };

interface Seen {
  url: string;
  headers: http.IncomingHttpHeaders;
  closeCode: number;
  closeReason: string;
}

let server: http.Server;
let wss: WebSocketServer;
let proxy: ProxyProcess;
const seen: Seen[] = [];
let upstreamClosed: ((s: Seen) => void) | null = null;

before(async () => {
  server = http.createServer((_req, res) => res.end('not a websocket'));
  wss = new WebSocketServer({ server });
  wss.on('connection', (ws, req) => {
    const s: Seen = { url: req.url ?? '', headers: req.headers, closeCode: 0, closeReason: '' };
    seen.push(s);
    ws.send('welcome');
    ws.on('message', (data: RawData, isBinary: boolean) => {
      const buf = data as Buffer;
      if (!isBinary) {
        const text = buf.toString();
        if (text === 'please close') ws.close(4002, 'server says bye');
        else ws.send(`echo:${text}`);
      } else ws.send(Buffer.from(buf).reverse(), { binary: true });
    });
    ws.on('close', (code, reason) => {
      s.closeCode = code;
      s.closeReason = reason.toString();
      upstreamClosed?.(s);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  proxy = await startProxyProcess({
    args: ['--app-port', String((server.address() as net.AddressInfo).port)],
  });
});

after(async () => {
  await proxy?.stop();
  for (const c of wss?.clients ?? []) c.terminate();
  wss?.close();
  server?.closeAllConnections();
  await new Promise((r) => server?.close(r));
});

function upstreamPort(): number {
  return (server.address() as net.AddressInfo).port;
}

/** A client whose messages are collected in order; `next()` waits for the next one (bounded). */
async function open(url: string, opts: ConstructorParameters<typeof WebSocket>[2] = {}) {
  const ws = new WebSocket(url, { headers: { 'x-test': 'through-the-proxy', 'x-multi': 'a b' }, ...opts });
  const inbox: { data: Buffer; binary: boolean }[] = [];
  let wake: (() => void) | null = null;
  ws.on('message', (data: RawData, binary: boolean) => {
    inbox.push({ data: data as Buffer, binary });
    wake?.();
  });
  await once(ws, 'open');
  return {
    ws,
    async next(): Promise<{ data: Buffer; binary: boolean }> {
      const deadline = Date.now() + 5000;
      while (inbox.length === 0) {
        if (Date.now() > deadline) throw new Error('no message');
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, 100);
        });
      }
      return inbox.shift()!;
    },
  };
}

async function exerciseAndClose(connect: () => Promise<Awaited<ReturnType<typeof open>>>, path: string) {
  const before = seen.length;
  const c = await connect();
  assert.equal((await c.next()).data.toString(), 'welcome');
  const s = seen[before]!;
  assert.equal(s.url, path);
  assert.equal(s.headers['x-test'], 'through-the-proxy');
  assert.equal(s.headers['x-multi'], 'a b');
  assert.equal(s.headers.upgrade?.toLowerCase(), 'websocket');
  assert.match(String(s.headers.connection), /upgrade/i);
  assert.match(String(s.headers['sec-websocket-key']), /^[A-Za-z0-9+/]{22}==$/);
  assert.equal(s.headers['sec-websocket-version'], '13');

  c.ws.send('hello');
  let m = await c.next();
  assert.equal(m.binary, false);
  assert.equal(m.data.toString(), 'echo:hello');
  const bin = Buffer.from(Array.from({ length: 1000 }, (_, i) => i & 0xff));
  c.ws.send(bin, { binary: true });
  m = await c.next();
  assert.equal(m.binary, true);
  assert.ok(m.data.equals(Buffer.from(bin).reverse()));
  const big = Buffer.alloc(3 * 1024 * 1024 + 7, 0x5a);
  big[0] = 1;
  c.ws.send(big, { binary: true });
  m = await c.next();
  assert.equal(m.data.length, big.length);
  assert.equal(m.data[m.data.length - 1], 1);

  // Client-initiated close handshake.
  const upstreamSaw = new Promise<Seen>((r) => (upstreamClosed = r));
  c.ws.close(4001, 'client says bye');
  const [code, reason] = (await once(c.ws, 'close')) as [number, Buffer];
  assert.equal(code, 4001);
  assert.equal(reason.toString(), 'client says bye');
  const u = await upstreamSaw;
  assert.equal(u.closeCode, 4001);
  assert.equal(u.closeReason, 'client says bye');
}

async function serverInitiatedClose(connect: () => Promise<Awaited<ReturnType<typeof open>>>) {
  const c = await connect();
  assert.equal((await c.next()).data.toString(), 'welcome');
  c.ws.send('please close');
  const [code, reason] = (await once(c.ws, 'close')) as [number, Buffer];
  assert.equal(code, 4002);
  assert.equal(reason.toString(), 'server says bye');
}

describe('inbound listener', () => {
  const connect = (path: string) => () => open(`ws://127.0.0.1:${proxy.port('inbound')}${path}`);
  test('headers, text and binary messages both ways, client close handshake', T, () =>
    exerciseAndClose(connect('/chat?room=1&x=%20y'), '/chat?room=1&x=%20y'),
  );
  test('server-initiated close handshake', T, () => serverInitiatedClose(connect('/c')));
  test('plain HTTP requests keep working next to upgrades', T, async () => {
    const res = await fetch(`http://127.0.0.1:${proxy.port('inbound')}/plain`);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'not a websocket');
  });
});

describe('CONNECT tunnel on the outbound listener', () => {
  const connect = (path: string) => async () => {
    const tunnel = await openTunnel(proxy.port('outbound'), upstreamPort());
    tunnel.resume();
    return open(`ws://127.0.0.1:${upstreamPort()}${path}`, { createConnection: () => tunnel });
  };
  test('headers, text and binary messages both ways, client close handshake', T, () =>
    exerciseAndClose(connect('/tunnelled?q=1'), '/tunnelled?q=1'),
  );
  test('server-initiated close handshake', T, () => serverInitiatedClose(connect('/c2')));
});
