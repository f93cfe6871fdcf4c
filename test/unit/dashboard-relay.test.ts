// The loopback relay of `trellis dashboard` (src/cli/dashboard-relay.ts) in front of a real control
// plane that needs the operator token for reads of live requests (sensitiveReadsNeedOperator, as
// `trellis control` runs), with a real proxy registered for it to tap: the page and its live tap
// work through the relay, which adds the token (the control plane refuses the same read without
// it); the tap streams through as requests happen. Refused, counted and reported: a request
// without the cookie the printed URL's key is traded for, a foreign Host (DNS rebinding), any method but GET and HEAD, a body, an absolute or host-changing target, a path
// outside /dashboard and /api, a cross-site read; past the bound on requests at once, 503; a
// control plane that does not answer in time, 502.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalWatcher } from '../../src/control/discovery/local.ts';
import { writeServiceFile, writeWorkloadFile } from '../../src/control/discovery/local-state.ts';
import { localCatalog, startControlPlane } from '../../src/control/server.ts';
import { silentLogger } from '../../src/core/log.ts';
import { NdjsonReader } from '../../src/core/ndjson.ts';
import { validateProxyConfig } from '../../src/proxy/config.ts';
import { startProxy } from '../../src/proxy/proxy.ts';
import {
  startDashboardRelay,
  type DashboardRelay,
  type RelayRefusal,
} from '../../src/cli/dashboard-relay.ts';
import { portOf } from '../helpers/running-proxy.ts';

const OPERATOR_TOKEN = 'k3Z0m1qO2xQv9Rr8Tt7Uu6Vv5Ww4Xx3Yy2Zz1Aa0Bb';

/** One raw HTTP/1.1 request (any Host, any target) to 127.0.0.1:`port`; resolves with the status. */
function rawRequest(port: number, head: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write(head));
    let text = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      text += d;
      const m = /^HTTP\/1\.1 (\d{3})/.exec(text);
      if (m !== null) {
        socket.destroy();
        resolve(Number(m[1]));
      }
    });
    socket.on('error', reject);
    socket.on('end', () => reject(new Error(`no answer: ${text}`)));
  });
}

async function startWorld(t: { after(fn: () => unknown): void }) {
  const root = await mkdtemp(join(tmpdir(), 'trellis-relay-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const app = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => res.end('ok'));
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  t.after(() => {
    app.closeAllConnections();
    app.close();
  });
  const proxy = await startProxy(
    validateProxyConfig({
      inboundListen: '127.0.0.1:0',
      outboundListen: '127.0.0.1:0',
      adminListen: '127.0.0.1:0',
      appPort: (app.address() as net.AddressInfo).port,
      workload: { name: 'web', namespace: 'default' },
      log: { level: 'off' },
    }),
    silentLogger,
    undefined,
    { identity: null },
  );
  t.after(() => proxy.shutdown(200));
  await writeServiceFile(root, 'default', 'web', { ports: [{ port: 8080, targetPort: 'http' }] });
  await writeWorkloadFile(root, 'default', 'web-1', {
    service: 'web',
    address: '127.0.0.1',
    ports: [{ name: 'http', port: portOf(proxy, 'inbound') }],
    admin: proxy.addresses.admin!,
  });
  const plane = await startControlPlane({
    watcher: new LocalWatcher({ root, debounceMs: 10, rescanIntervalMs: 300 }),
    catalog: localCatalog(root),
    grpcListen: '127.0.0.1:0',
    httpListen: '127.0.0.1:0',
    metricsIntervalMs: 60_000,
    operatorToken: OPERATOR_TOKEN,
    sensitiveReadsNeedOperator: true,
  });
  t.after(() => plane.close());
  const tokenFile = join(root, 'operator-token');
  await writeFile(tokenFile, OPERATOR_TOKEN + '\n', { mode: 0o600 });
  return { base: `http://${plane.http}`, tokenFile, inbound: portOf(proxy, 'inbound') };
}

/** The cookie the relay trades its printed URL's key for ("NAME=VALUE"). */
async function cookieOf(relay: DashboardRelay): Promise<string> {
  const entry = await fetch(relay.url, { redirect: 'manual' });
  assert.equal(entry.status, 302);
  assert.equal(entry.headers.get('location'), '/dashboard', 'the key leaves the address bar');
  const cookie = entry.headers.get('set-cookie')!;
  assert.match(cookie, /^trellis-dashboard-\d+=[\w-]+; HttpOnly; SameSite=Strict; Path=\/$/);
  return cookie.split(';')[0]!;
}

/** startWorld and a relay in front of its control plane, with the state's token file. */
async function startRelayedWorld(t: { after(fn: () => unknown): void }) {
  const world = await startWorld(t);
  const refusals: RelayRefusal[] = [];
  const relay = await startDashboardRelay({
    api: { base: world.base, tokenFile: world.tokenFile },
    port: 0,
    onRefusal: (reason) => refusals.push(reason),
  });
  t.after(() => relay.close());
  return { world, relay, refusals };
}

test('the page and its live tap work through the relay, which adds the operator token', async (t) => {
  const { world, relay, refusals } = await startRelayedWorld(t);

  // The control plane itself refuses the page's tap to a browser (no token).
  const direct = await fetch(`${world.base}/api/tap?workload=web`);
  assert.equal(direct.status, 401);
  await direct.text();

  assert.match(relay.url, /^http:\/\/127\.0\.0\.1:\d+\/dashboard\?key=[\w-]{32}$/);
  const cookie = await cookieOf(relay);
  const page = await fetch(`${relay.origin}/dashboard`, { headers: { cookie } });
  assert.equal(page.status, 200);
  assert.match(page.headers.get('content-type')!, /^text\/html/);
  assert.match(page.headers.get('content-security-policy')!, /connect-src 'self'/);
  assert.match(await page.text(), /<script src="\/dashboard\/app\.js" defer><\/script>/);
  const script = await fetch(`${relay.origin}/dashboard/app.js`, { headers: { cookie } });
  assert.equal(script.status, 200);
  assert.match(await script.text(), /\/api\/tap\?namespace=/);
  const stat = await fetch(`${relay.origin}/api/stat`, {
    headers: { cookie, 'sec-fetch-site': 'same-origin' },
  });
  assert.equal(stat.status, 200);
  await stat.json();
  const home = await fetch(`${relay.origin}/`, { redirect: 'manual', headers: { cookie } });
  assert.equal(home.status, 302);
  assert.equal(home.headers.get('location'), '/dashboard');

  // The page's tap, as the page asks for it: the stream stays open and events arrive as they happen.
  const lines: Record<string, unknown>[] = [];
  const reader = new NdjsonReader(1 << 16, (o) => lines.push(o));
  const controller = new AbortController();
  t.after(() => controller.abort());
  const tap = await fetch(`${relay.origin}/api/tap?namespace=default&workload=web&max_rps=20`, {
    signal: controller.signal,
    headers: { cookie, 'sec-fetch-site': 'same-origin' },
  });
  assert.equal(tap.status, 200);
  const body = tap.body!.getReader();
  const next = async (pred: (l: Record<string, unknown>) => boolean) => {
    const deadline = Date.now() + 10_000;
    while (!lines.some(pred)) {
      assert.ok(Date.now() < deadline, `no such tap line in ${JSON.stringify(lines)}`);
      const r = await body.read();
      assert.equal(r.done, false, 'the tap stream ended');
      reader.push(Buffer.from(r.value!));
    }
  };
  await next((l) => l.type === 'started');
  assert.equal(relay.inFlight, 1);
  const res = await fetch(`http://127.0.0.1:${world.inbound}/through-the-relay`);
  assert.equal(res.status, 200);
  await res.text();
  await next((l) => l.type === 'exchange' && l.path === '/through-the-relay');
  controller.abort();
  const deadline = Date.now() + 5000;
  while (relay.inFlight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.equal(relay.inFlight, 0, 'the relayed tap ends with the browser');
  assert.deepEqual(refusals, []);
});

test('the relay refuses foreign Hosts, changes, bodies, other targets and cross-site reads', async (t) => {
  const { world, relay, refusals } = await startRelayedWorld(t);
  const port = Number(new URL(relay.origin).port);
  const cookie = await cookieOf(relay);
  const get = (target: string, host: string, extra = '', withCookie = `Cookie: ${cookie}\r\n`) =>
    rawRequest(
      port,
      `GET ${target} HTTP/1.1\r\nHost: ${host}\r\n${withCookie}${extra}Connection: close\r\n\r\n`,
    );
  const own = `127.0.0.1:${port}`;

  // Only the browser that opened the printed URL: no cookie, another value, a wrong key: 401.
  assert.equal(await get('/dashboard', own, '', ''), 401);
  assert.equal(await get('/api/tap?workload=web', own, '', ''), 401);
  assert.equal(await get('/dashboard', own, '', `Cookie: ${relay.cookieName}=guess\r\n`), 401);
  assert.equal(await get('/dashboard?key=guess', own, '', ''), 401);
  assert.equal(await get(new URL(relay.url).pathname + new URL(relay.url).search, own, '', ''), 302);

  assert.equal(await get('/dashboard', `localhost:${port}`), 200);
  assert.equal(await get('/dashboard', own.toUpperCase()), 200);
  // DNS rebinding: a page of evil.example whose name now points at 127.0.0.1 sends its own Host.
  assert.equal(await get('/api/tap?workload=web', `evil.example:${port}`), 403);
  assert.equal(await get('/dashboard', 'evil.example'), 403);
  assert.equal(await get('/dashboard', `127.0.0.1:${port + 1}`), 403);
  assert.equal(await rawRequest(port, 'GET /dashboard HTTP/1.0\r\n\r\n'), 403, 'no Host');
  // Nothing but GET and HEAD is relayed, whatever the path.
  for (const method of ['POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'])
    assert.equal(
      await rawRequest(
        port,
        `${method} /api/routes HTTP/1.1\r\nHost: ${own}\r\nCookie: ${cookie}\r\nContent-Length: 0\r\n\r\n`,
      ),
      405,
      method,
    );
  assert.equal(
    await rawRequest(
      port,
      `HEAD /dashboard HTTP/1.1\r\nHost: ${own}\r\nCookie: ${cookie}\r\nConnection: close\r\n\r\n`,
    ),
    200,
  );
  assert.equal(await get('/dashboard', own, 'Content-Length: 3\r\n'), 400, 'a GET with a body');
  // Targets that would leave the control plane, or other paths of it.
  assert.equal(await get(`${world.base}/api/tap?workload=web`, own), 400, 'absolute-form');
  assert.equal(await get('//evil.example/api/tap', own), 400);
  assert.equal(await get('/\\evil.example/api/tap', own), 400);
  assert.equal(await get('/metrics', own), 404);
  assert.equal(await get('/v1/traces', own), 404);
  // Another site's page cannot read live requests through it (dot segments do not hide the path).
  assert.equal(await get('/api/tap?workload=web', own, 'Origin: http://evil.example\r\n'), 403);
  assert.equal(await get('/api/tap?workload=web', own, 'Sec-Fetch-Site: cross-site\r\n'), 403);
  assert.equal(await get('/dashboard/../api/tap?workload=web', own, 'Sec-Fetch-Site: same-site\r\n'), 403);
  assert.equal(await get('/dashboard/%2e%2e/api/traces', own, 'Origin: http://evil.example\r\n'), 403);
  // The relay's own origin may.
  assert.equal(await get('/api/stat', own, `Origin: http://${own}\r\nSec-Fetch-Site: same-origin\r\n`), 200);

  assert.deepEqual(relay.refused, {
    host: 4,
    key: 4,
    method: 5,
    body: 1,
    path: 5,
    'cross-site': 4,
    busy: 0,
    upstream: 0,
  });
  assert.equal(refusals.length, 23);
});

test('the relay bounds requests at once and the wait for the control plane', async (t) => {
  // A control plane that takes the requests and never answers.
  const held: http.ServerResponse[] = [];
  const stuck = http.createServer((_req, res) => held.push(res));
  await new Promise<void>((r) => stuck.listen(0, '127.0.0.1', r));
  t.after(() => {
    stuck.closeAllConnections();
    stuck.close();
  });
  const relay = await startDashboardRelay({
    api: { base: `http://127.0.0.1:${(stuck.address() as net.AddressInfo).port}`, tokenFile: null },
    port: 0,
    limits: { maxInFlight: 3, headTimeoutMs: 400, totalTimeoutMs: 1000 },
  });
  t.after(() => relay.close());
  const cookie = await cookieOf(relay);
  const pending = Array.from({ length: 3 }, () => fetch(`${relay.origin}/api/stat`, { headers: { cookie } }));
  while (held.length < 3) await new Promise((r) => setTimeout(r, 10));
  assert.equal(relay.inFlight, 3);
  const over = await fetch(`${relay.origin}/api/stat`, { headers: { cookie } });
  assert.equal(over.status, 503);
  assert.match(((await over.json()) as { error: string }).error, /3 requests are being relayed already/);
  // Past the head timeout, each held request is answered 502.
  for (const r of await Promise.all(pending)) {
    assert.equal(r.status, 502);
    await r.text();
  }
  assert.equal(relay.inFlight, 0);
  assert.equal(relay.refused.busy, 1);
  assert.equal(relay.refused.upstream, 3);
});
