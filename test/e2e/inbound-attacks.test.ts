// The inbound listener attacked as an intruder would (issue 9, section 1): it must forward only to
// its own workload (no CONNECT, no routing by Host or absolute-form URI to anywhere else), a
// detection timeout must never bypass mTLS termination, policy or the client-identity header (nor
// change how other clients' connections are handled), a meshed workload must not forge its
// identity through an idle tunnel, and meshed apps on opaque ports must stay reachable.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { startMeshWorld, identityFor, idOf, issueLeaf, type MeshWorld } from '../helpers/mesh-pki.ts';
import {
  forgedRequest,
  mtlsTo,
  rawExchange,
  startBystander,
  startRecordingApp,
  type RecordingApp,
} from '../helpers/attack.ts';
import type { RunningProxy } from '../../src/proxy/proxy.ts';
import type { InboundAuthorizer } from '../../src/proxy/policy/types.ts';
import { metric, portOf } from '../helpers/running-proxy.ts';

const FORGED = 'spiffe://mesh.test/ns/default/sa/forged';
/** Short detection timeouts, so that the tests do not wait 3 s for each idle connection. */
const DETECT = { detect: { timeoutMs: 300 } };

async function serverFor(
  world: MeshWorld,
  service: string,
  app: RecordingApp,
  config: Record<string, unknown> = {},
): Promise<RunningProxy> {
  const server = await world.proxy({
    identity: await identityFor(world, `${service}-server`),
    app: app.port,
    config: { ...DETECT, ...config },
  });
  await world.register(service, `${service}-1`, portOf(server, 'inbound'), idOf(`${service}-server`));
  return server;
}

function mtls(world: MeshWorld, port: number, alpn: string, leaf: { keyPem: string; certPem: string }) {
  return mtlsTo(port, alpn, leaf, world.ca.certPem);
}

function noForgedIds(app: RecordingApp): void {
  assert.deepEqual(
    app.ids.filter((id) => id === FORGED),
    [],
    `the app was told a forged identity: ${JSON.stringify(app.ids)}`,
  );
}

/** A policy that admits every connection and only the requests under /public/. */
const PUBLIC_ONLY: InboundAuthorizer = {
  checkConnection: () => ({ allowed: true, server: 'default/app', policy: 'default/public', audited: false }),
  checkRequest: (_port, _peer, req) => ({
    allowed: req.path.startsWith('/public/'),
    server: 'default/app',
    policy: 'default/public',
    audited: false,
  }),
  protocolOf: () => null,
  onChange: () => () => {},
  close() {},
};

test('the inbound listener forwards only to its own workload', { timeout: 60_000 }, async (t) => {
  const world = await startMeshWorld();
  t.after(() => world.close());
  const app = await startRecordingApp();
  t.after(() => app.close());
  const secret = await startBystander();
  t.after(() => secret.close());
  const server = await serverFor(world, 'web', app);
  const inbound = portOf(server, 'inbound');
  const elsewhere = `127.0.0.1:${secret.port}`;

  await t.test('CONNECT is refused with 403 proxy-request-refused, and nothing is connected', async () => {
    const r = await rawExchange(inbound, [`CONNECT ${elsewhere} HTTP/1.1\r\nHost: ${elsewhere}\r\n\r\n`], {
      until: /\r\n\r\n/,
    });
    assert.match(r.text, /^HTTP\/1\.1 403 /);
    assert.match(r.text, /trellis-proxy-error: proxy-request-refused/i);
    assert.equal(secret.connections(), 0);
    assert.ok(metric(server, 'trellis_proxy_errors_total', { reason: 'proxy-request-refused' }) >= 1);
  });

  await t.test('CONNECT over the mesh (mTLS, trellis-http1/1) is refused too', async () => {
    const leaf = await issueLeaf(world.ca, idOf('caller'));
    const r = await rawExchange(
      mtls(world, inbound, 'trellis-http1/1', leaf),
      [`CONNECT ${elsewhere} HTTP/1.1\r\nHost: ${elsewhere}\r\n\r\n`],
      { until: /\r\n\r\n/ },
    );
    assert.match(r.text, /^HTTP\/1\.1 403 /);
    assert.equal(secret.connections(), 0);
  });

  await t.test(
    'an HTTP/2 CONNECT is refused too, not handed to an HTTP/2 app that could relay it',
    async () => {
      // An app speaking HTTP/2 (gRPC, h2c) that would honour CONNECT: the proxy must not hand it one.
      const connects: string[] = [];
      const h2app = http2.createServer();
      h2app.on('connect', (req, res) => {
        connects.push(String(req.headers[':authority']));
        res.writeHead(200);
        res.end();
      });
      h2app.on('request', (_req, res) => res.end('ok'));
      await new Promise<void>((resolve) => h2app.listen(0, '127.0.0.1', resolve));
      t.after(() => h2app.close());
      const h2server = await world.proxy({
        identity: await identityFor(world, 'h2-server'),
        app: (h2app.address() as net.AddressInfo).port,
        config: DETECT,
      });
      const port = portOf(h2server, 'inbound');
      const leaf = await issueLeaf(world.ca, idOf('caller'));
      for (const connection of [
        () => net.connect({ host: '127.0.0.1', port }),
        mtls(world, port, 'trellis-h2/1', leaf),
      ]) {
        const session = http2.connect(`http://${elsewhere}`, { createConnection: connection });
        session.on('error', () => {});
        const answer = await new Promise<{ status: number; error: string }>((resolve) => {
          const req = session.request({ ':method': 'CONNECT', ':authority': elsewhere });
          req.on('response', (h) =>
            resolve({ status: Number(h[':status']), error: String(h['trellis-proxy-error']) }),
          );
          req.on('error', () => resolve({ status: 0, error: '' }));
        });
        session.destroy();
        assert.deepEqual(answer, { status: 403, error: 'proxy-request-refused' });
      }
      assert.deepEqual(connects, []);
      assert.equal(secret.connections(), 0);
    },
  );

  await t.test('an absolute-form URI naming another address still goes to the app', async () => {
    const before = app.ids.length;
    const r = await rawExchange(inbound, [
      `GET http://${elsewhere}/x HTTP/1.1\r\nHost: ${elsewhere}\r\nConnection: close\r\n\r\n`,
    ]);
    assert.match(r.text, /^HTTP\/1\.1 200 /);
    assert.equal(app.ids.length, before + 1);
    assert.equal(secret.connections(), 0);
  });

  await t.test('an inbound listener without an app refuses requests by Host or URI', async () => {
    const appless = await world.proxy({ identity: null, config: DETECT });
    const port = portOf(appless, 'inbound');
    const byHost = await rawExchange(port, [
      `GET / HTTP/1.1\r\nHost: ${elsewhere}\r\nConnection: close\r\n\r\n`,
    ]);
    assert.match(byHost.text, /^HTTP\/1\.1 400 /);
    assert.match(byHost.text, /trellis-proxy-error: unknown-destination/i);
    const byUri = await rawExchange(port, [
      `GET http://${elsewhere}/ HTTP/1.1\r\nHost: ${elsewhere}\r\nConnection: close\r\n\r\n`,
    ]);
    assert.match(byUri.text, /^HTTP\/1\.1 400 /);
    const connect = await rawExchange(port, [`CONNECT ${elsewhere} HTTP/1.1\r\nHost: ${elsewhere}\r\n\r\n`], {
      until: /\r\n\r\n/,
    });
    assert.match(connect.text, /^HTTP\/1\.1 403 /);
    // HTTP/2 with prior knowledge, :authority naming the bystander.
    const session = http2.connect(`http://${elsewhere}`, {
      createConnection: () => net.connect({ host: '127.0.0.1', port }),
    });
    session.on('error', () => {});
    const status = await new Promise<number>((resolve) => {
      const req = session.request({ ':path': '/', ':authority': elsewhere });
      req.on('response', (h) => resolve(Number(h[':status'])));
      req.on('error', () => resolve(0));
      req.end();
    });
    session.destroy();
    assert.notEqual(status, 200);
    assert.equal(secret.connections(), 0);
  });
});

test(
  'a detection timeout on inbound never bypasses mTLS, policy or the identity header',
  { timeout: 90_000 },
  async (t) => {
    const world = await startMeshWorld();
    t.after(() => world.close());
    const app = await startRecordingApp();
    t.after(() => app.close());
    const server = await serverFor(world, 'web', app);
    const inbound = portOf(server, 'inbound');
    const client = await world.proxy({ identity: await identityFor(world, 'caller') });
    const out = portOf(client, 'outbound');

    await t.test(
      'an idle plaintext connection that then speaks HTTP: the forged header is removed',
      async () => {
        const r = await rawExchange(inbound, [forgedRequest(FORGED)], { idleFirstMs: 700 });
        assert.match(r.text, /^HTTP\/1\.1 200 /);
        assert.match(r.text, /id=$/);
        noForgedIds(app);
      },
    );

    await t.test('a forged identity in request trailers never reaches the app', async () => {
      const r = await rawExchange(inbound, [
        'POST /t HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTrailer: trellis-client-id\r\nConnection: close\r\n\r\n',
        `3\r\nabc\r\n0\r\nTrellis-Client-Id: ${FORGED}\r\nx-other: kept\r\n\r\n`,
      ]);
      assert.match(r.text, /^HTTP\/1\.1 200 /);
      assert.deepEqual(app.trailerIds, []);
    });

    await t.test('afterwards, a fresh plaintext connection is still sanitised', async () => {
      const r = await rawExchange(inbound, [forgedRequest(FORGED)]);
      assert.match(r.text, /^HTTP\/1\.1 200 /);
      noForgedIds(app);
    });

    await t.test('afterwards, meshed callers still reach the app with their verified identity', async () => {
      const r = await rawExchange(out, [
        `GET http://web.default:8080/ HTTP/1.1\r\nHost: web.default:8080\r\nConnection: close\r\n\r\n`,
      ]);
      assert.match(r.text, /^HTTP\/1\.1 200 /);
      assert.ok(r.text.endsWith(`id=${idOf('caller')}`), r.text);
    });

    await t.test('16 KiB of leading empty lines, then a forged request: never forwarded raw', async () => {
      await rawExchange(inbound, ['\r\n'.repeat(8 * 1024 + 16), forgedRequest(FORGED)], { timeoutMs: 5000 });
      noForgedIds(app);
    });

    await t.test(
      'request lines a lenient server would accept (a tab, two spaces, an extension method, no version): refused, never relayed',
      async () => {
        const before = app.ids.length;
        for (const line of [
          'GET\t/forged HTTP/1.1',
          'PURGE  /x HTTP/1.1',
          'PROPFIND /x  HTTP/1.1',
          'PURGE /x',
        ]) {
          const r = await rawExchange(inbound, [
            `${line}\r\nHost: a\r\ntrellis-client-id: ${FORGED}\r\n\r\n`,
            forgedRequest(FORGED),
          ]);
          assert.match(r.text, /^HTTP\/1\.1 400 /, line);
        }
        assert.equal(app.ids.length, before);
        noForgedIds(app);
      },
    );

    await t.test('an idle connection on an outbound listener does not change the inbound', async () => {
      // The outbound side learns that the app port is server-first...
      await rawExchange(out, [`CONNECT 127.0.0.1:${app.port} HTTP/1.1\r\n\r\n`], {
        idleFirstMs: 0,
        timeoutMs: 800,
      });
      // ...which says nothing about the inbound: still sanitised, still mTLS.
      const r = await rawExchange(inbound, [forgedRequest(FORGED)]);
      assert.match(r.text, /^HTTP\/1\.1 200 /);
      noForgedIds(app);
    });

    await t.test(
      'with the deny policy, an idle connection that then speaks HTTP reaches nothing',
      async () => {
        const denyApp = await startRecordingApp();
        t.after(() => denyApp.close());
        const deny = await serverFor(world, 'locked', denyApp, { policy: { default: 'deny' } });
        const r = await rawExchange(portOf(deny, 'inbound'), [forgedRequest(FORGED)], { idleFirstMs: 700 });
        assert.doesNotMatch(r.text, /^HTTP\/1\.1 200 /);
        assert.equal(denyApp.ids.length, 0);
        const opaque = await rawExchange(portOf(deny, 'inbound'), ['\x00\x01garbage'], { idleFirstMs: 700 });
        assert.equal(opaque.text, '');
        assert.equal(denyApp.ids.length, 0);
      },
    );
  },
);

test('a meshed workload cannot forge its identity through an idle tunnel', { timeout: 60_000 }, async (t) => {
  const world = await startMeshWorld();
  t.after(() => world.close());
  const app = await startRecordingApp();
  t.after(() => app.close());
  const server = await serverFor(world, 'web', app);
  const client = await world.proxy({
    identity: await identityFor(world, 'caller'),
    config: {
      ...DETECT,
      destinations: [
        { listen: '127.0.0.1:0', target: 'web.default:8080' },
        { listen: '127.0.0.1:0', target: `127.0.0.1:${app.port}` }, // a plain (unmeshed) address
      ],
    },
  });

  await t.test('CONNECT through its own outbound, idle, then HTTP', async () => {
    const r = await rawExchange(
      portOf(client, 'outbound'),
      [`CONNECT web.default:8080 HTTP/1.1\r\nHost: web.default:8080\r\n\r\n`, forgedRequest(FORGED)],
      { gapMs: 900 },
    );
    assert.match(r.text, /^HTTP\/1\.1 200 Connection established/);
    assert.ok(r.text.endsWith(`id=${idOf('caller')}`), r.text);
    noForgedIds(app);
  });

  await t.test('CONNECT, one byte, idle, then the rest of the request', async () => {
    const forged = forgedRequest(FORGED);
    const r = await rawExchange(
      portOf(client, 'outbound'),
      [
        `CONNECT web.default:8080 HTTP/1.1\r\nHost: web.default:8080\r\n\r\n`,
        forged.slice(0, 1),
        forged.slice(1),
      ],
      { gapMs: 900 },
    );
    assert.match(r.text, /^HTTP\/1\.1 200 Connection established/);
    assert.ok(r.text.endsWith(`id=${idOf('caller')}`), r.text);
    noForgedIds(app);
  });

  await t.test('CONNECT, then a request line only a lenient server reads, with a forged header', async () => {
    const r = await rawExchange(
      portOf(client, 'outbound'),
      [
        `CONNECT web.default:8080 HTTP/1.1\r\nHost: web.default:8080\r\n\r\n`,
        `PURGE  /x HTTP/1.1\r\nHost: a\r\ntrellis-client-id: ${FORGED}\r\n\r\n` + forgedRequest(FORGED),
      ],
      { gapMs: 50 },
    );
    assert.match(r.text, /^HTTP\/1\.1 200 Connection established\r\n\r\nHTTP\/1\.1 400 /);
    noForgedIds(app);
  });

  await t.test('its upstream port, one byte, idle, then the rest of the request', async () => {
    const forged = forgedRequest(FORGED);
    const r = await rawExchange(portOf(client, 'destination-0'), [forged.slice(0, 1), forged.slice(1)], {
      gapMs: 900,
    });
    assert.match(r.text, /^HTTP\/1\.1 200 /);
    assert.ok(r.text.endsWith(`id=${idOf('caller')}`), r.text);
    noForgedIds(app);
  });

  await t.test('the opaque transport itself: header and one byte, idle, then the rest', async () => {
    const leaf = await issueLeaf(world.ca, idOf('caller'));
    const forged = forgedRequest(FORGED);
    const header = Buffer.from([0x54, 0x52, 0x4c, 0x31, 0, 0]);
    header.writeUInt16BE(portOf(server, 'inbound'), 4);
    const r = await rawExchange(
      mtls(world, portOf(server, 'inbound'), 'trellis-tcp/1', leaf),
      [Buffer.concat([header, Buffer.from(forged.slice(0, 1))]), forged.slice(1)],
      { gapMs: 900 },
    );
    assert.match(r.text, /^HTTP\/1\.1 200 /);
    assert.ok(r.text.endsWith(`id=${idOf('caller')}`), r.text);
    noForgedIds(app);
  });

  await t.test('its upstream ports relay no CONNECT: they forward only to their destination', async () => {
    const bystander = await startBystander();
    try {
      for (const listener of ['destination-0', 'destination-1']) {
        const r = await rawExchange(portOf(client, listener), [
          `CONNECT 127.0.0.1:${bystander.port} HTTP/1.1\r\nHost: 127.0.0.1:${bystander.port}\r\n\r\n`,
        ]);
        assert.match(r.text, /^HTTP\/1\.1 403 /, listener);
        assert.match(r.text, /trellis-proxy-error: proxy-request-refused/i);
        assert.equal(bystander.connections(), 0, `the bystander was reached through ${listener}`);
      }
    } finally {
      bystander.close();
    }
  });

  await t.test('its upstream port, idle, then HTTP', async () => {
    const r = await rawExchange(portOf(client, 'destination-0'), [forgedRequest(FORGED)], {
      idleFirstMs: 900,
    });
    assert.match(r.text, /^HTTP\/1\.1 200 /);
    assert.ok(r.text.endsWith(`id=${idOf('caller')}`), r.text);
    noForgedIds(app);
  });
});

test('meshed apps on opaque ports are reachable through the mesh', { timeout: 60_000 }, async (t) => {
  const world = await startMeshWorld();
  t.after(() => world.close());
  const app = await startRecordingApp();
  t.after(() => app.close());
  const greeter = await startBystander('220 hello\r\n');
  t.after(() => greeter.close());
  await serverFor(world, 'web', app, { opaquePorts: [app.port] });
  const client = await world.proxy({ identity: await identityFor(world, 'caller') });

  await t.test('HTTP through the mesh to an app whose port is declared opaque', async () => {
    const r = await rawExchange(portOf(client, 'outbound'), [
      `GET http://web.default:8080/ HTTP/1.1\r\nHost: web.default:8080\r\nConnection: close\r\n\r\n`,
    ]);
    assert.match(r.text, /^HTTP\/1\.1 200 /);
    assert.ok(r.text.endsWith(`id=${idOf('caller')}`), r.text);
  });

  await t.test(
    'a plaintext client of a server-first app on an opaque port gets its greeting at once',
    async () => {
      const smtp = await world.proxy({
        identity: await identityFor(world, 'smtp'),
        app: greeter.port,
        config: {
          opaquePorts: [greeter.port],
        },
      });
      const r = await rawExchange(portOf(smtp, 'inbound'), [], { until: /220 hello/, timeoutMs: 5000 });
      assert.match(r.text, /220 hello/);
      assert.ok(r.ms < 2000, `the greeting took ${r.ms} ms`);
    },
  );

  await t.test('a server-first app on a port nobody declared: greeted, then a conversation', async () => {
    const smtp = await world.proxy({ identity: null, app: greeter.port, config: DETECT });
    const port = portOf(smtp, 'inbound');
    // The first client waits out the detection timeout; the proxy then connects to the app.
    const first = await rawExchange(port, [], { until: /220 hello/, timeoutMs: 5000 });
    assert.match(first.text, /220 hello/);
    assert.ok(first.ms >= 250, `greeted after ${first.ms} ms, before the detection timeout`);
    // Later clients only wait the short peek, and what they say after the greeting is relayed.
    const later = await rawExchange(port, ['HELO x\r\n'], {
      idleFirstMs: 400,
      until: /HELO x/,
      timeoutMs: 5000,
    });
    assert.match(later.text, /^220 hello\r\nHELO x/);
    assert.ok(later.ms < 1500, `took ${later.ms} ms`);
  });
});

test(
  'a route rule holds for the path the app may serve: dot-segments that leave it are refused',
  { timeout: 30_000 },
  async (t) => {
    const world = await startMeshWorld();
    t.after(() => world.close());
    const app = await startRecordingApp();
    t.after(() => app.close());
    const server = await world.proxy({
      identity: null,
      app: app.port,
      authorizer: PUBLIC_ONLY,
      config: DETECT,
    });
    const inbound = portOf(server, 'inbound');
    const get = (path: string) =>
      rawExchange(inbound, [`GET ${path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n`]).then(
        (r) => r.text,
      );
    assert.match(await get('/public/x'), /^HTTP\/1\.1 200 /);
    // Allowed however an app resolves it: forwarded as sent.
    assert.match(await get('/public/./x'), /^HTTP\/1\.1 200 /);
    for (const path of [
      '/public/../admin',
      '/public/%2e%2e/admin',
      '/public/..;/admin',
      '/public//../admin',
    ]) {
      const text = await get(path);
      assert.match(text, /^HTTP\/1\.1 403 /, path);
      assert.match(text, /trellis-proxy-error: forbidden: path has dot-segments/i, path);
    }
    // Not under /public/ as sent: the rule itself denies it.
    assert.match(await get('/public%2f..%2fadmin'), /^HTTP\/1\.1 403 /);
    assert.equal(app.ids.length, 2, 'only /public/x and /public/./x reached the app');
  },
);

test('a port a Server declares HTTP never forwards unparsed bytes', { timeout: 30_000 }, async (t) => {
  const world = await startMeshWorld();
  t.after(() => world.close());
  const app = await startRecordingApp();
  t.after(() => app.close());
  const allow = { allowed: true, server: 'default/web-http', policy: 'default/open', audited: false };
  const httpOnly: InboundAuthorizer = {
    checkConnection: () => allow,
    checkRequest: () => allow,
    protocolOf: (port) => (port === app.port ? 'http1' : null),
    onChange: () => () => {},
    close() {},
  };
  const server = await world.proxy({ identity: null, app: app.port, authorizer: httpOnly, config: DETECT });
  const inbound = portOf(server, 'inbound');
  // Not HTTP at all, and HTTP after an idle start: both go to the HTTP/1 parser.
  const garbage = await rawExchange(inbound, ['\x00\x01 not http\r\n\r\n']);
  assert.match(garbage.text, /^HTTP\/1\.1 400 /);
  const idle = await rawExchange(inbound, [forgedRequest(FORGED)], { idleFirstMs: 700 });
  assert.match(idle.text, /^HTTP\/1\.1 200 /);
  assert.equal(app.connections(), 1, 'only the parsed request connected to the app');
  noForgedIds(app);
});

/**
 * An app that switches to HTTP/2 on an upgraded connection (RFC 7540 3.2, leniently: without
 * HTTP2-Settings among the Connection options): after its 101 every request on the connection is
 * HTTP/2 the proxy never reads, with any path and any trellis-client-id. `always`: it answers 101
 * h2c to any Upgrade offer, as an app that ignores what the client asked for.
 */
async function startH2cApp(t: { after(fn: () => unknown): void }, always: boolean) {
  const seen: string[] = [];
  const h2 = http2.createServer();
  h2.on('stream', (stream, headers) => {
    seen.push(`h2 ${String(headers[':path'])} id=${String(headers['trellis-client-id'] ?? '')}`);
    stream.respond({ ':status': 200 });
    stream.end();
  });
  const upgrades: string[] = [];
  const app = http.createServer((req, res) => {
    seen.push(`h1 ${req.url} upgrade=${req.headers.upgrade ?? ''}`);
    res.end('h1');
  });
  app.on('upgrade', (req, socket: net.Socket) => {
    upgrades.push(String(req.headers.upgrade));
    if (!always && !/\bh2c\b/i.test(String(req.headers.upgrade))) {
      socket.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
      return;
    }
    socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n');
    h2.emit('connection', socket);
  });
  await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
  t.after(() => app.close());
  const world = await startMeshWorld();
  t.after(() => world.close());
  const server = await world.proxy({
    identity: null,
    app: (app.address() as net.AddressInfo).port,
    authorizer: PUBLIC_ONLY,
    config: DETECT,
  });
  return { inbound: portOf(server, 'inbound'), server, seen, upgrades };
}

test(
  'an Upgrade to h2c never reaches the app: HTTP/2 after it would skip policy and the identity header',
  { timeout: 30_000 },
  async (t) => {
    const { inbound, seen, upgrades } = await startH2cApp(t, false);
    for (const upgrade of ['h2c', 'H2C', 'websocket, h2c']) {
      const r = await rawExchange(
        inbound,
        [
          `GET /public/x HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: ${upgrade}\r\n` +
            `HTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n`,
        ],
        { until: /\r\n\r\n/ },
      );
      assert.doesNotMatch(r.text, /^HTTP\/1\.1 101 /, upgrade);
    }
    assert.deepEqual(upgrades, ['websocket'], 'only the websocket offer reached the app');
    assert.ok(!seen.some((s) => s.startsWith('h2 ')), seen.join('\n'));
  },
);

test(
  "an app's 101 to a protocol the client did not offer is refused with 502, not tunnelled",
  { timeout: 30_000 },
  async (t) => {
    // The client offers websocket; the app switches to h2c anyway, and the client follows with
    // HTTP/2 to a path policy refuses, claiming an identity.
    const { inbound, server, seen, upgrades } = await startH2cApp(t, true);
    const sock = net.connect({ host: '127.0.0.1', port: inbound });
    sock.on('error', () => {});
    sock.write(
      'GET /public/x HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n' +
        'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
    );
    const head = await new Promise<string>((resolve) => {
      let text = '';
      const onData = (d: Buffer) => {
        text += d.toString('latin1');
        if (!text.includes('\r\n\r\n')) return;
        sock.off('data', onData);
        sock.pause();
        resolve(text);
      };
      sock.on('data', onData);
      sock.on('close', () => resolve(text));
    });
    if (head.startsWith('HTTP/1.1 101 ')) {
      // Tunnelled: what the attacker does next.
      const session = http2.connect('http://a', { createConnection: () => sock });
      session.on('error', () => {});
      await new Promise<void>((resolve) => {
        const req = session.request({ ':path': '/admin', 'trellis-client-id': FORGED });
        req.on('error', () => resolve());
        req.on('response', () => resolve());
        req.resume();
      });
      session.destroy();
    }
    sock.destroy();
    assert.deepEqual(upgrades, ['websocket'], 'the offer reached the app');
    assert.deepEqual(
      seen.filter((s) => s.startsWith('h2 ')),
      [],
      'HTTP/2 reached the app past policy',
    );
    assert.match(head, /^HTTP\/1\.1 502 /, head);
    assert.match(head, /trellis-proxy-error: upstream-bad-response/i, head);
    assert.equal(metric(server, 'trellis_proxy_errors_total', { reason: 'upstream-bad-response' }), 1);
  },
);
