// The JIT warm-up (src/proxy/jit-warm-up.ts), with real sockets on loopback: before the ready
// line, the proxy's request path is compiled by V8's optimizing tiers; the warm-up's requests
// reach neither the app nor anything the proxy reports; its scratch listeners serve no stranger
// and are gone when it is done.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import v8 from 'node:v8';
import { once } from 'node:events';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { validateProxyConfig } from '../../src/proxy/config.ts';
import { jitWarmUp } from '../../src/proxy/jit-warm-up.ts';
import { loadMeshTransport } from '../../src/proxy/mesh/wiring.ts';
import { parseRequestHead, parseResponseHead } from '../../src/proxy/http/h1-parser.ts';
import { silentLogger } from '../../src/core/log.ts';
import {
  certifiedKey,
  createCa,
  identityFor,
  idOf,
  issueLeaf,
  startMeshWorld,
  testIdentity,
  writeIdentityDir,
} from '../helpers/mesh-pki.ts';
import { metric, portOf } from '../helpers/running-proxy.ts';
import { startProxyProcess } from '../helpers/proxy-process.ts';
import { removeTempDir } from '../helpers/temp-dir.ts';

// V8's own view of a function: %GetOptimizationStatus, bit 4 = running optimized code (Maglev or
// TurboFan). The flag is read when the function below is parsed.
v8.setFlagsFromString('--allow-natives-syntax');
const optimizationStatus = new Function('f', 'return %GetOptimizationStatus(f)') as (f: unknown) => number;
const OPTIMIZED = 1 << 4;
const isOptimized = (f: unknown): boolean => (optimizationStatus(f) & OPTIMIZED) !== 0;

async function meshIdentity(sa: string) {
  const ca = await createCa();
  const leaf = await issueLeaf(ca, idOf(sa));
  return {
    identity: testIdentity(idOf(sa), certifiedKey(leaf, ca.certPem)),
    transport: await loadMeshTransport(),
  };
}

/** Open TCP handles of this process (listeners and sockets). */
function tcpHandles(): number {
  return process.getActiveResourcesInfo().filter((r) => r.startsWith('TCP')).length;
}

async function until(check: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}

test('the warm-up compiles the HTTP/1 request path and leaves no listener or connection behind', async () => {
  const mesh = await meshIdentity('web');
  const config = validateProxyConfig({ workload: { name: 'web' } });
  // Nothing in this process has parsed an HTTP/1 head yet.
  assert.equal(isOptimized(parseRequestHead), false);
  assert.equal(isOptimized(parseResponseHead), false);
  const handles = tcpHandles();

  const done = await jitWarmUp(config, mesh, { requests: 600, budgetMs: 20_000, log: silentLogger });
  assert.equal(done.requests, 600, `every warm-up request answered: ${JSON.stringify(done)}`);
  assert.equal(done.stopped, undefined);
  // Optimized compilation runs on a background thread: give it a moment to land.
  assert.ok(await until(() => isOptimized(parseRequestHead), 3000), 'parseRequestHead runs optimized code');
  assert.ok(await until(() => isOptimized(parseResponseHead), 3000), 'parseResponseHead runs optimized code');
  assert.ok(await until(() => tcpHandles() === handles, 3000), 'every scratch listener and socket is closed');
});

test('a stranger gets nothing from the scratch listeners, whose HTTP proxy would forward anywhere', async (t) => {
  const mesh = await meshIdentity('web');
  const config = validateProxyConfig({ workload: { name: 'web' } });
  let reached = 0;
  const victim = http.createServer((req, res) => {
    reached++;
    res.end('secret');
  });
  victim.listen(0, '127.0.0.1');
  await once(victim, 'listening');
  t.after(() => victim.close());
  const victimPort = (victim.address() as net.AddressInfo).port;
  const strangerSaw: string[] = [];
  const done = await jitWarmUp(config, mesh, {
    requests: 50,
    budgetMs: 20_000,
    log: silentLogger,
    onListening: async (ports) => {
      for (const [port, line] of [
        [ports.proxy, `GET http://127.0.0.1:${victimPort}/ HTTP/1.1`],
        [ports.destination, 'GET / HTTP/1.1'],
      ] as const) {
        const s = net.connect(port, '127.0.0.1');
        s.on('error', () => {});
        // Half-closed after the request: a proxy that served it answers and then closes too.
        s.end(`${line}\r\nhost: 127.0.0.1:${victimPort}\r\n\r\n`);
        let answer = '';
        s.on('data', (d: Buffer) => (answer += d.toString('latin1')));
        await once(s, 'close');
        strangerSaw.push(answer);
      }
    },
  });
  assert.equal(done.requests, 50, 'the driver itself is served');
  assert.deepEqual(strangerSaw, ['', ''], 'both connections closed without an answer');
  assert.equal(reached, 0, 'nothing was forwarded for the stranger');
});

test(
  'a proxy warmed up reports none of it: no metrics, no request to the app',
  { timeout: 60_000 },
  async (t) => {
    const world = await startMeshWorld();
    t.after(() => world.close());
    let served = 0;
    const app = http.createServer((req, res) => {
      served++;
      req.resume();
      res.end('web');
    });
    app.listen(0, '127.0.0.1');
    await once(app, 'listening');
    t.after(() => {
      app.close();
      app.closeAllConnections();
    });
    const server = await world.proxy({
      identity: await identityFor(world, 'web'),
      app: (app.address() as net.AddressInfo).port,
      config: { jitWarmUp: { requests: 200 } },
    });
    await world.register('web', 'web-1', portOf(server, 'inbound'), idOf('web'));
    const client = await world.proxy({
      identity: await identityFor(world, 'client'),
      config: {
        jitWarmUp: { requests: 200 },
        destinations: [{ listen: '127.0.0.1:0', target: 'web.default:8080' }],
      },
    });
    for (const p of [server, client]) assert.equal(metric(p, 'trellis_request_total'), 0);
    assert.equal(metric(client, 'trellis_tcp_open_total'), 0);
    // The one connection either has seen: the client's warm start to the server (warm-up.ts).
    assert.equal(metric(server, 'trellis_tcp_open_total'), 1);
    assert.equal(metric(server, 'trellis_mesh_connections_total', { direction: 'inbound' }), 1);
    assert.equal(served, 0, 'the warm-up must not send the app anything');

    // And the real path works as before, counted once.
    const res = await fetch(`http://127.0.0.1:${portOf(client, 'destination-0')}/`);
    assert.equal(await res.text(), 'web');
    assert.equal(served, 1);
    assert.equal(metric(client, 'trellis_request_total', { direction: 'outbound' }), 1);
  },
);

test(
  '`trellis proxy --jit-warm-up N` warms up before its ready line and says so',
  { timeout: 60_000 },
  async (t) => {
    const root = await mkdtemp(join(tmpdir(), 'trellis-jit-'));
    t.after(() => removeTempDir(root));
    const ca = await createCa();
    const dir = await writeIdentityDir(join(root, 'id'), await issueLeaf(ca, idOf('web')), ca.certPem);
    const proxy = await startProxyProcess({
      args: ['--identity-dir', dir, '--workload', 'web', '--jit-warm-up', '100', '--log-level', 'info'],
    });
    t.after(() => proxy.stop());
    const line = proxy
      .stderr()
      .split('\n')
      .find((l) => l.includes('JIT warm-up done'));
    assert.ok(line !== undefined, `no warm-up line in: ${proxy.stderr()}`);
    assert.equal((JSON.parse(line) as { requests: number }).requests, 100);

    // A malformed TRELLIS_JIT_WARM_UP is named, not ignored.
    await assert.rejects(
      startProxyProcess({
        args: ['--identity-dir', dir, '--workload', 'web'],
        env: { ...process.env, TRELLIS_JIT_WARM_UP: 'lots' },
      }),
      /TRELLIS_JIT_WARM_UP.*expected a whole number/,
    );
  },
);
