// The emojivoto example services (examples/emojivoto), end to end on loopback without a mesh:
// emoji and voting (gRPC), web (HTTP, calling both) and vote-bot (traffic to web). Directly, with
// EMOJI_ADDR / VOTING_ADDR / WEB_ADDR: the page, the list, a vote, an unknown emoji, the failing
// :doughnut: vote and the leaderboard. By name, as under a mesh: a small test proxy stands in for
// the sidecar, answering CONNECT (what grpc-js sends for grpc_proxy) and absolute-form requests
// (HTTP_PROXY) for names like emoji.emojivoto:8080, so the services' name-based paths are real.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { EmojiService } from '../../examples/emojivoto/common.ts';
import { NODE, REPO } from '../helpers/proxy-process.ts';

const DIR = path.join(REPO, 'examples/emojivoto');
const TIMEOUT = 60_000;

type After = { after(fn: () => unknown): void };

interface Service {
  readonly proc: ChildProcess;
  readonly listen: string;
  stderr(): string;
}

/** Starts examples/emojivoto/NAME.ts on 127.0.0.1:0 and waits for its ready line. */
async function startService(
  t: After,
  name: string,
  env: Record<string, string>,
  args: string[] = [],
): Promise<Service> {
  const clean = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !/^(https?|grpc|no|no_grpc)_proxy$/i.test(k)),
  );
  const proc = spawn(NODE, [path.join(DIR, `${name}.ts`), '--listen', '127.0.0.1:0', ...args], {
    env: { ...clean, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = once(proc, 'exit');
  t.after(async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGKILL');
      await exited;
    }
  });
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const listen = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`${name} not ready in 20 s: ${err}`)), 20_000);
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /^(\{.*"event":"ready".*\})$/m.exec(out);
      if (m === null) return;
      clearTimeout(timer);
      resolve((JSON.parse(m[1]!) as { listen: string }).listen);
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited with ${code}: ${err}`));
    });
  });
  return { proc, listen, stderr: () => err };
}

/** GET http://ADDRESS/path; the status and body text. */
async function get(address: string, pathname: string): Promise<{ status: number; text: string }> {
  const res = await fetch(`http://${address}${pathname}`, { signal: AbortSignal.timeout(10_000) });
  return { status: res.status, text: await res.text() };
}

async function startBackends(t: After) {
  const [emoji, voting] = await Promise.all([startService(t, 'emoji', {}), startService(t, 'voting', {})]);
  const web = await startService(t, 'web', { EMOJI_ADDR: emoji.listen, VOTING_ADDR: voting.listen });
  return { emoji, voting, web };
}

test(
  'web, emoji and voting directly: page, list, votes, the failing vote, leaderboard',
  { timeout: TIMEOUT },
  async (t) => {
    const { web } = await startBackends(t);
    const page = await get(web.listen, '/');
    assert.equal(page.status, 200);
    assert.match(page.text, /<title>Emoji Vote<\/title>/);

    const list = await get(web.listen, '/api/list');
    assert.equal(list.status, 200);
    const emoji = JSON.parse(list.text) as { unicode: string; shortcode: string }[];
    assert.ok(emoji.length >= 10, `only ${emoji.length} emoji`);
    assert.ok(emoji.some((e) => e.shortcode === ':doughnut:' && e.unicode === '🍩'));

    for (let i = 0; i < 3; i++) assert.equal((await get(web.listen, '/api/vote?choice=:joy:')).status, 200);
    const vote = await get(web.listen, '/api/vote?choice=%3Arocket%3A');
    assert.equal(vote.status, 200, vote.text);
    assert.deepEqual(JSON.parse(vote.text), { voted: { unicode: '🚀', shortcode: ':rocket:' } });

    const broken = await get(web.listen, '/api/vote?choice=:doughnut:');
    assert.equal(broken.status, 500);
    assert.match(broken.text, /voting\.Vote: .*:doughnut:/);
    assert.equal((await get(web.listen, '/api/vote?choice=:no-such-emoji:')).status, 404);
    assert.equal((await get(web.listen, '/api/vote')).status, 400);

    const board = await get(web.listen, '/api/leaderboard');
    assert.equal(board.status, 200);
    assert.deepEqual(JSON.parse(board.text), [
      { shortcode: ':joy:', unicode: '😂', votes: 3 },
      { shortcode: ':rocket:', unicode: '🚀', votes: 1 },
    ]);
  },
);

test('web answers 503 when voting cannot be reached', { timeout: TIMEOUT }, async (t) => {
  const emoji = await startService(t, 'emoji', {});
  const closed = net.createServer();
  closed.listen(0, '127.0.0.1');
  await once(closed, 'listening');
  const port = (closed.address() as net.AddressInfo).port;
  closed.close();
  const web = await startService(t, 'web', { EMOJI_ADDR: emoji.listen, VOTING_ADDR: `127.0.0.1:${port}` });
  assert.equal((await get(web.listen, '/api/list')).status, 200);
  const vote = await get(web.listen, '/api/vote?choice=:joy:');
  assert.equal(vote.status, 503, vote.text);
});

test(
  "web sends each request's trace context on with the calls it makes for it",
  { timeout: TIMEOUT },
  async (t) => {
    // A stand-in emoji service that keeps the metadata of each call.
    const seen: grpc.Metadata[] = [];
    const server = new grpc.Server();
    server.addService(EmojiService.service, {
      ListAll: (call: grpc.ServerUnaryCall<object, object>, cb: grpc.sendUnaryData<object>) => {
        seen.push(call.metadata);
        cb(null, { list: [] });
      },
      FindByShortcode: (call: grpc.ServerUnaryCall<object, object>, cb: grpc.sendUnaryData<object>) => {
        seen.push(call.metadata);
        cb(null, {});
      },
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) =>
        err !== null ? reject(err) : resolve(p),
      ),
    );
    t.after(() => server.forceShutdown());
    const web = await startService(t, 'web', { EMOJI_ADDR: `127.0.0.1:${port}`, VOTING_ADDR: '127.0.0.1:9' });
    const w3c = {
      traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
      tracestate: 'vendor=x',
    };
    const res = await fetch(`http://${web.listen}/api/list`, {
      headers: w3c,
      signal: AbortSignal.timeout(10_000),
    });
    assert.equal(res.status, 200);
    const b3 = { b3: '4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1' };
    const vote = await fetch(`http://${web.listen}/api/vote?choice=:joy:`, {
      headers: b3,
      signal: AbortSignal.timeout(10_000),
    });
    assert.equal(vote.status, 404); // the stand-in knows no emoji
    assert.equal((await fetch(`http://${web.listen}/api/list`)).status, 200);
    assert.equal(seen.length, 3);
    assert.deepEqual(seen[0]!.get('traceparent'), [w3c.traceparent]);
    assert.deepEqual(seen[0]!.get('tracestate'), [w3c.tracestate]);
    assert.deepEqual(seen[1]!.get('b3'), [b3.b3]);
    assert.deepEqual(seen[1]!.get('traceparent'), []);
    assert.deepEqual(seen[2]!.get('traceparent'), [], 'a request without context sends none');
  },
);

/**
 * A stand-in for the sidecar's outbound side: CONNECT NAME:PORT and absolute-form requests to
 * http://NAME:PORT/ go to the address `names` gives; everything it routed is recorded.
 */
async function startNameProxy(t: After, names: ReadonlyMap<string, string>) {
  const seen: string[] = [];
  const split = (a: string) =>
    [a.slice(0, a.lastIndexOf(':')), Number(a.slice(a.lastIndexOf(':') + 1))] as const;
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/');
    const to = names.get(url.host);
    seen.push(`GET ${url.host}`);
    if (to === undefined) return void res.writeHead(502).end();
    const [host, port] = split(to);
    const upstream = http.request(
      { host, port, method: req.method, path: url.pathname + url.search },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    upstream.on('error', () => res.writeHead(502).end());
    req.pipe(upstream);
  });
  server.on('connect', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    const to = names.get(req.url ?? '');
    seen.push(`CONNECT ${req.url}`);
    if (to === undefined) return void socket.end('HTTP/1.1 502 Bad Gateway\r\n\r\n');
    const [host, port] = split(to);
    const upstream = net.connect(port, host, () => {
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      upstream.write(head);
      upstream.pipe(socket);
      socket.pipe(upstream);
    });
    upstream.on('error', () => socket.destroy());
    socket.on('error', () => upstream.destroy());
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  return { address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`, seen };
}

test(
  'by name through a proxy: web uses grpc_proxy, vote-bot uses HTTP_PROXY',
  { timeout: TIMEOUT },
  async (t) => {
    const [emoji, voting] = await Promise.all([startService(t, 'emoji', {}), startService(t, 'voting', {})]);
    const names = new Map([
      ['emoji.emojivoto:8080', emoji.listen],
      ['voting.emojivoto:8080', voting.listen],
    ]);
    const proxy = await startNameProxy(t, names);
    const web = await startService(t, 'web', { grpc_proxy: `http://${proxy.address}` });
    names.set('web.emojivoto:8080', web.listen);
    assert.equal((await get(web.listen, '/api/vote?choice=:cat:')).status, 200);
    assert.ok(proxy.seen.includes('CONNECT emoji.emojivoto:8080'), proxy.seen.join(', '));
    assert.ok(proxy.seen.includes('CONNECT voting.emojivoto:8080'), proxy.seen.join(', '));

    const bot = await startService(t, 'vote-bot', { HTTP_PROXY: `http://${proxy.address}` }, [
      '--rate',
      '20',
    ]);
    const deadline = Date.now() + 15_000;
    let stats = { sent: 0, ok: 0, failed: 0, errors: 0 };
    while (Date.now() < deadline && stats.ok < 20) {
      await new Promise((r) => setTimeout(r, 250));
      stats = JSON.parse((await get(bot.listen, '/stats')).text) as typeof stats;
    }
    assert.ok(stats.ok >= 20, `vote-bot: ${JSON.stringify(stats)} ${bot.stderr()}`);
    assert.equal(stats.errors, 0);
    assert.ok(proxy.seen.includes('GET web.emojivoto:8080'));
    const board = JSON.parse((await get(web.listen, '/api/leaderboard')).text) as { votes: number }[];
    assert.ok(board.reduce((n, r) => n + r.votes, 0) >= 2, 'the bot voted');
  },
);
