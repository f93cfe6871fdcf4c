// Operator authentication of the control plane's HTTP API (src/control/operator-auth.ts, enforced
// in src/control/server.ts): a real control plane with the identity component on loopback. Every
// request but GET and HEAD needs `Authorization: Bearer <operator token>`: `POST
// /api/identity/rotate` without it, with a wrong one, or relayed by a plain HTTP proxy on the same
// host gets a 401 that says how to authenticate and rotates nothing; with it, the rotation starts.
// Refusals are counted in /metrics and logged at most once per interval. Reading stays open. A
// control plane started without a token refuses every state-changing request.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, stat, writeFile, chmod, readFile } from 'node:fs/promises';
import { createServer, request, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '../../src/core/log.ts';
import { startIdentityControlPlane } from '../helpers/identity-control-plane.ts';
import { OperatorAuth } from '../../src/control/operator-auth.ts';
import { loadOrCreateOperatorToken, operatorTokenPath } from '../../src/control/operator-token.ts';
import { removeTempDir } from '../helpers/temp-dir.ts';

const TOKEN = 'k3Z0m1qO2xQv9Rr8Tt7Uu6Vv5Ww4Xx3Yy2Zz1Aa0Bb';

async function controlPlane(t: { after(fn: () => unknown): void }, token: string | null) {
  const lines: string[] = [];
  const { root, ca, plane } = await startIdentityControlPlane(t, {
    trustDomain: 'cluster.local',
    plane: (root) => ({
      operatorToken: token,
      operatorTokenSource: `in the file ${join(root, 'operator-token')}`,
      log: createLogger({ level: 'warn', write: (line) => lines.push(line) }),
    }),
  });
  return { ca, http: `http://${plane.http}`, lines, root };
}

async function rotate(base: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${base}/api/identity/rotate`, { method: 'POST', headers });
  return { status: res.status, body: (await res.json()) as Record<string, string>, headers: res.headers };
}

test('POST /api/identity/rotate needs the operator token: none or a wrong one is a 401 and rotates nothing', async (t) => {
  const { ca, http, lines, root } = await controlPlane(t, TOKEN);

  const none = await rotate(http);
  assert.equal(none.status, 401);
  assert.match(
    none.body.error!,
    /POST \/api\/identity\/rotate changes the control plane's state .*no bearer token/,
  );
  assert.match(none.body.authenticate!, /Authorization: Bearer TOKEN/);
  assert.ok(none.body.authenticate!.includes(join(root, 'operator-token')), none.body.authenticate);
  assert.equal(none.headers.get('www-authenticate'), 'Bearer realm="trellis-control-plane"');
  assert.equal(ca.rotationPhase, 'idle');

  const wrongTokens = [
    TOKEN.slice(0, -1) + 'C', // same length, last character differs
    TOKEN + 'x',
    'short',
  ];
  for (const wrong of wrongTokens) {
    const refused = await rotate(http, { authorization: `Bearer ${wrong}` });
    assert.equal(refused.status, 401, wrong);
    assert.match(refused.body.error!, /wrong token/);
  }
  for (const malformed of [TOKEN, `Basic ${TOKEN}`, `Bearer`, `Bearer ${TOKEN} extra`]) {
    assert.equal((await rotate(http, { authorization: malformed })).status, 401, malformed);
  }
  assert.equal(ca.rotationPhase, 'idle', 'nothing rotated');

  const metrics = await (await fetch(`${http}/metrics`)).text();
  assert.match(metrics, /^trellis_control_http_unauthenticated_total\{reason="missing"\} 5$/m);
  assert.match(metrics, /^trellis_control_http_unauthenticated_total\{reason="invalid"\} 3$/m);
  assert.match(
    metrics,
    /^trellis_identity_certificates_issued_total 0$/m,
    'the components keep their metrics',
  );
  // Eight refusals in a burst: one log line (the next would come after the interval).
  const refusals = lines.filter((l) => l.includes('not an authenticated operator'));
  assert.equal(refusals.length, 1, lines.join('\n'));
  assert.match(refusals[0]!, /"path":"\/api\/identity\/rotate".*"reason":"missing"/);

  const ok = await rotate(http, { authorization: `Bearer ${TOKEN}` });
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
  assert.equal(ok.body.phase, 'anchor-added');
  assert.equal(
    (await rotate(http, { authorization: `bearer  ${TOKEN}` })).status,
    409,
    'scheme is case-insensitive',
  );
});

test('reading stays open; every other method on any path needs the token before anything else', async (t) => {
  const { http } = await controlPlane(t, TOKEN);
  for (const path of ['/healthz', '/api/identity', '/api/services', '/api/stat', '/metrics']) {
    const res = await fetch(`${http}${path}`);
    await res.arrayBuffer();
    assert.ok(res.status === 200 || res.status === 503, `${path}: ${res.status}`);
  }
  for (const [method, path] of [
    ['PUT', '/api/identity/rotate'],
    ['DELETE', '/api/identity'],
    ['POST', '/api/services'],
    ['POST', '/api/some-future-endpoint'],
    ['PATCH', '/nowhere'],
  ] as const) {
    const res = await fetch(`${http}${path}`, { method, body: 'x'.repeat(100) });
    assert.equal(res.status, 401, `${method} ${path}`);
    await res.arrayBuffer();
  }
  // Past the check, the routes answer as before.
  const auth = { authorization: `Bearer ${TOKEN}` };
  assert.equal((await fetch(`${http}/api/services`, { method: 'POST', headers: auth })).status, 405);
  assert.equal((await fetch(`${http}/nowhere`, { method: 'POST', headers: auth })).status, 404);
});

/** A plain forward HTTP proxy on loopback (absolute-form requests, as HTTP_PROXY clients send). */
async function forwardProxy(t: { after(fn: () => unknown): void }): Promise<number> {
  const proxy = createServer((req, res) => {
    const target = new URL(req.url!);
    const upstream = request(
      {
        host: target.hostname,
        port: target.port,
        path: target.pathname,
        method: req.method,
        headers: req.headers,
      },
      (answer: IncomingMessage) => {
        res.writeHead(answer.statusCode!, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => proxy.close(() => resolve())));
  return (proxy.address() as AddressInfo).port;
}

function viaProxy(port: number, url: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: url, method: 'POST', headers }, (res) => {
      res.resume();
      resolve(res.statusCode!);
    });
    req.on('error', reject);
    req.end();
  });
}

test('a request relayed by a plain proxy on the same host still needs the token', async (t) => {
  const { ca, http } = await controlPlane(t, TOKEN);
  const port = await forwardProxy(t);
  assert.equal(await viaProxy(port, `${http}/api/identity/rotate`), 401);
  assert.equal(await viaProxy(port, `${http}/api/identity/rotate`, { 'x-forwarded-for': '127.0.0.1' }), 401);
  assert.equal(ca.rotationPhase, 'idle');
  assert.equal(
    await viaProxy(port, `${http}/api/identity/rotate`, { authorization: `Bearer ${TOKEN}` }),
    200,
  );
  assert.equal(ca.rotationPhase, 'anchor-added');
});

test('a control plane started without an operator token refuses every state-changing request', async (t) => {
  const { ca, http } = await controlPlane(t, null);
  const refused = await rotate(http, { authorization: `Bearer ${TOKEN}` });
  assert.equal(refused.status, 401);
  assert.match(refused.body.authenticate!, /started without an operator token/);
  assert.equal(ca.rotationPhase, 'idle');
});

test('OperatorAuth: logs a refusal at most once per interval, with the number left unlogged', () => {
  let now = 0;
  const lines: string[] = [];
  const auth = new OperatorAuth({
    token: TOKEN,
    tokenSource: 'here',
    now: () => now,
    log: createLogger({ level: 'warn', write: (l) => lines.push(l) }),
  });
  const req = { method: 'POST', url: '/x', headers: {}, socket: { remoteAddress: '127.0.0.1' } };
  const res = { writeHead: () => res, end: () => res };
  for (let i = 0; i < 50; i++) {
    now += 100;
    assert.equal(auth.admit(req as never, res as never), false);
  }
  assert.equal(lines.length, 1);
  now += 10_000;
  auth.admit(req as never, res as never);
  assert.equal(lines.length, 2);
  assert.match(lines[1]!, /"unloggedBefore":49/);
  assert.deepEqual(auth.refused, { missing: 51, invalid: 0 });
  assert.equal(auth.check(`Bearer ${TOKEN}`), null);
});

test('the state folder operator token: made 0600 once, kept across restarts, narrowed when loose', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'trellis-operator-token-'));
  t.after(() => removeTempDir(root));
  const loosened: string[] = [];
  const first = await loadOrCreateOperatorToken(root, (p) => loosened.push(p));
  assert.match(first, /^[A-Za-z0-9_-]{43}$/);
  assert.equal((await stat(operatorTokenPath(root))).mode & 0o777, 0o600);
  const tokens = await Promise.all([1, 2, 3].map(() => loadOrCreateOperatorToken(root, () => {})));
  assert.deepEqual(tokens, [first, first, first]);
  await chmod(operatorTokenPath(root), 0o644);
  assert.equal(await loadOrCreateOperatorToken(root, (p) => loosened.push(p)), first);
  assert.deepEqual(loosened, [operatorTokenPath(root)]);
  assert.equal((await stat(operatorTokenPath(root))).mode & 0o777, 0o600);
  await writeFile(operatorTokenPath(root), 'too short\n');
  await assert.rejects(
    loadOrCreateOperatorToken(root, () => {}),
    /not an operator token/,
  );
  assert.equal(await readFile(operatorTokenPath(root), 'utf8'), 'too short\n', 'never overwritten');
});
