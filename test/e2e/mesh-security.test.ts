// Attacks on the mesh transport that must fail, and inbound policy: a server presenting the wrong
// identity (502 identity-mismatch, nothing reaches its app), client certificates from another CA
// or expired (refused by the inbound proxy, nothing reaches the app), plaintext to the inbound
// under all-unauthenticated (works) and all-authenticated (403), deny (403 / PERMISSION_DENIED
// naming the policy; TCP closed), a policy change closing the opaque connections it no longer
// allows, and credential rotation that keeps established connections while new ones use the new
// certificate.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import { once } from 'node:events';
import { X509Certificate } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { createEchoClient, startEchoServer } from '../fixtures/grpc-echo.ts';
import {
  certifiedKey,
  createCa,
  idOf,
  identityFor,
  issueLeaf,
  startMeshWorld,
  testIdentity,
  type MeshWorld,
} from '../helpers/mesh-pki.ts';
import type { Decision, InboundAuthorizer } from '../../src/proxy/policy/types.ts';
import { metric, portOf } from '../helpers/running-proxy.ts';

async function startApp(): Promise<{ port: number; hits: () => number; close(): void }> {
  let hits = 0;
  const server = http.createServer((req, res) => {
    hits++;
    req.resume();
    res.end(`id=${req.headers['trellis-client-id'] ?? ''}`);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    hits: () => hits,
    close() {
      server.close();
      server.closeAllConnections();
    },
  };
}

function get(
  port: number,
  path: string,
  agent?: http.Agent,
): Promise<{ status: number; error: string | null; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, path, agent: agent ?? false, timeout: 10_000 },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            error: (res.headers['trellis-proxy-error'] as string) ?? null,
            body,
          }),
        );
      },
    );
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end();
  });
}

/** A raw mTLS client straight to an inbound listener, as a peer proxy would be. */
function mtlsRequest(port: number, key: string, cert: string, ca: string): Promise<string> {
  return new Promise((resolve) => {
    const s = tls.connect({
      host: '127.0.0.1',
      port,
      key,
      cert,
      ca,
      ALPNProtocols: ['trellis-http1/1'],
      checkServerIdentity: () => undefined,
    });
    let out = '';
    s.on('secureConnect', () => s.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
    s.on('data', (d: Buffer) => (out += d.toString()));
    s.on('error', () => {});
    s.on('close', () => resolve(out));
  });
}

/** An authorizer whose answer the test sets, and whose onChange it fires. */
function switchableAuthorizer(): InboundAuthorizer & { allow: boolean; fire(): void } {
  const listeners = new Set<() => void>();
  const decide = (): Decision => ({
    allowed: a.allow,
    server: 'default/app',
    policy: a.allow ? 'default/open' : 'default:deny',
    audited: false,
  });
  const a = {
    allow: true,
    checkConnection: decide,
    checkRequest: decide,
    protocolOf: () => null,
    onChange(l: () => void) {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    close() {},
    fire() {
      for (const l of listeners) l();
    },
  };
  return a;
}

async function serverProxy(
  world: MeshWorld,
  service: string,
  app: number,
  extra: Parameters<MeshWorld['proxy']>[0] = { identity: null },
) {
  const server = await world.proxy({
    ...extra,
    identity: extra.identity ?? (await identityFor(world, `${service}-server`)),
    app,
  });
  await world.register(service, `${service}-1`, portOf(server, 'inbound'), idOf(`${service}-server`));
  return server;
}

test('identity attacks fail', { timeout: 60_000 }, async (t) => {
  const world = await startMeshWorld();
  t.after(() => world.close());
  const app = await startApp();
  t.after(() => app.close());
  const client = await world.proxy({ identity: await identityFor(world, 'caller') });
  const out = portOf(client, 'outbound');

  await t.test(
    'a server with the wrong identity: 502 identity-mismatch, nothing reaches its app',
    async () => {
      const impostor = await world.proxy({ identity: await identityFor(world, 'impostor'), app: app.port });
      await world.register('victim', 'victim-1', portOf(impostor, 'inbound'), idOf('victim'));
      const r = await get(out, 'http://victim.default:8080/');
      assert.equal(r.status, 502);
      assert.equal(r.error, 'identity-mismatch');
      assert.equal(app.hits(), 0);
      assert.ok(metric(client, 'trellis_tls_handshake_errors_total', { direction: 'outbound' }) >= 1);
      assert.ok(metric(client, 'trellis_proxy_errors_total', { reason: 'identity-mismatch' }) >= 1);
    },
  );

  const server = await serverProxy(world, 'web', app.port);
  const inbound = portOf(server, 'inbound');

  await t.test('the caller reaches the real server and the app learns who called', async () => {
    const r = await get(out, 'http://web.default:8080/');
    assert.equal(r.status, 200);
    assert.equal(r.body, `id=${idOf('caller')}`);
  });

  await t.test('a client certificate from another CA is refused', async () => {
    const before = app.hits();
    const otherCa = await createCa('Someone Else');
    const leaf = await issueLeaf(otherCa, idOf('caller'));
    const reply = await mtlsRequest(inbound, leaf.keyPem, leaf.certPem, world.ca.certPem);
    assert.equal(reply, '');
    assert.equal(app.hits(), before);
    assert.ok(metric(server, 'trellis_tls_handshake_errors_total', { direction: 'inbound' }) >= 1);
    // And as a whole proxy: its requests fail with tls-handshake-failed, nothing gets through.
    const rogue = await world.proxy({
      identity: testIdentity(
        idOf('rogue'),
        certifiedKey(await issueLeaf(otherCa, idOf('rogue')), world.ca.certPem),
      ),
    });
    const r = await get(portOf(rogue, 'outbound'), 'http://web.default:8080/');
    assert.equal(r.status, 502);
    assert.equal(r.error, 'tls-handshake-failed');
    assert.equal(app.hits(), before);
  });

  await t.test('an expired client certificate is refused', async () => {
    const before = app.hits();
    const expired = await issueLeaf(world.ca, idOf('caller'), {
      notBefore: new Date(Date.now() - 48 * 3600_000),
      notAfter: new Date(Date.now() - 3600_000),
    });
    assert.equal(await mtlsRequest(inbound, expired.keyPem, expired.certPem, world.ca.certPem), '');
    const valid = await issueLeaf(world.ca, idOf('caller'));
    assert.match(await mtlsRequest(inbound, valid.keyPem, valid.certPem, world.ca.certPem), /^HTTP\/1.1 200/);
    assert.equal(app.hits(), before + 1);
  });

  await t.test(
    'an identity that has no certificate yet: 503 no-identity after the connect timeout',
    async () => {
      const waiting = await world.proxy({
        identity: testIdentity(idOf('late'), null),
        config: { timeouts: { connectMs: 300, drainGraceMs: 200 } },
      });
      const before = app.hits();
      const r = await get(portOf(waiting, 'outbound'), 'http://web.default:8080/');
      assert.equal(r.status, 503);
      assert.equal(r.error, 'no-identity');
      assert.equal(app.hits(), before);
    },
  );

  await t.test('plaintext to the inbound works under all-unauthenticated, without an identity', async () => {
    const r = await get(inbound, '/');
    assert.equal(r.status, 200);
    assert.equal(r.body, 'id=');
  });
});

test('inbound policy: default policies, deny, and re-checks on change', { timeout: 60_000 }, async (t) => {
  const world = await startMeshWorld();
  t.after(() => world.close());
  const app = await startApp();
  t.after(() => app.close());
  const client = await world.proxy({ identity: await identityFor(world, 'caller') });
  const out = portOf(client, 'outbound');

  await t.test('all-authenticated: mTLS callers pass, plaintext gets 403', async () => {
    const server = await serverProxy(world, 'authn', app.port, {
      identity: null,
      config: { policy: { default: 'all-authenticated' } },
    });
    assert.equal((await get(out, 'http://authn.default:8080/')).status, 200);
    const plain = await get(portOf(server, 'inbound'), '/');
    assert.equal(plain.status, 403);
    assert.equal(plain.error, 'forbidden: default:all-authenticated');
    assert.ok(metric(server, 'trellis_inbound_authz_total', { decision: 'deny' }) >= 1);
    assert.ok(metric(server, 'trellis_inbound_authz_total', { decision: 'allow' }) >= 1);
  });

  await t.test('deny: 403 and PERMISSION_DENIED naming the policy; TCP closed', async () => {
    const before = app.hits();
    await serverProxy(world, 'closed', app.port, { identity: null, config: { policy: { default: 'deny' } } });
    const r = await get(out, 'http://closed.default:8080/');
    assert.equal(r.status, 403);
    assert.equal(r.error, 'forbidden: default:deny');
    assert.equal(app.hits(), before);

    const echo = await startEchoServer();
    t.after(() => echo.close());
    const grpcServer = await serverProxy(world, 'grpcdeny', echo.port, {
      identity: null,
      config: { policy: { default: 'deny' } },
    });
    const grpcClient = createEchoClient(`127.0.0.1:${portOf(grpcServer, 'inbound')}`);
    t.after(() => grpcClient.close());
    const err = await new Promise<grpc.ServiceError>((resolve) =>
      grpcClient.Unary({ message: 'x' }, { deadline: Date.now() + 10_000 }, (e) => resolve(e!)),
    );
    assert.equal(err.code, grpc.status.PERMISSION_DENIED);
    assert.deepEqual(err.metadata.get('trellis-proxy-error'), ['forbidden: default:deny']);

    const tcpServer = await serverProxy(world, 'tcpdeny', app.port, {
      identity: null,
      config: { policy: { default: 'deny' }, opaquePorts: [app.port] },
    });
    const s = net.connect(portOf(tcpServer, 'inbound'), '127.0.0.1');
    s.on('error', () => {});
    s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await once(s, 'close');
    assert.equal(app.hits(), before);
  });

  await t.test(
    'a policy change closes the opaque connections it no longer allows, nothing else',
    async () => {
      const tcpApp = net.createServer((c) => c.pipe(c));
      tcpApp.listen(0, '127.0.0.1');
      await once(tcpApp, 'listening');
      t.after(() => tcpApp.close());
      const authz = switchableAuthorizer();
      const tcpPort = (tcpApp.address() as net.AddressInfo).port;
      const server = await serverProxy(world, 'switch', tcpPort, {
        identity: null,
        authorizer: authz,
        config: { opaquePorts: [tcpPort] },
      });
      const s = net.connect(portOf(server, 'inbound'), '127.0.0.1');
      s.write('ping');
      const [echoed] = (await once(s, 'data')) as [Buffer];
      assert.equal(echoed.toString(), 'ping');
      authz.fire(); // still allowed: stays open
      s.write('again');
      assert.equal(((await once(s, 'data')) as [Buffer])[0].toString(), 'again');
      authz.allow = false;
      authz.fire();
      await once(s, 'close');
      assert.ok(
        metric(server, 'trellis_inbound_authz_total', {
          server: 'default/app',
          policy: 'default:deny',
          decision: 'deny',
        }) >= 1,
      );
    },
  );
});

test(
  'rotation keeps established connections; new ones use the new certificate',
  { timeout: 60_000 },
  async (t) => {
    const world = await startMeshWorld();
    t.after(() => world.close());
    const app = await startApp();
    t.after(() => app.close());
    const serverId = testIdentity(
      idOf('rot-server'),
      certifiedKey(await issueLeaf(world.ca, idOf('rot-server')), world.ca.certPem),
    );
    const clientId = testIdentity(
      idOf('rot-client'),
      certifiedKey(await issueLeaf(world.ca, idOf('rot-client')), world.ca.certPem),
    );
    const server = await serverProxy(world, 'rot', app.port, { identity: serverId });
    const client = await world.proxy({ identity: clientId });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    t.after(() => agent.destroy());
    const out = portOf(client, 'outbound');
    assert.equal((await get(out, 'http://rot.default:8080/', agent)).status, 200);
    const connections = metric(client, 'trellis_mesh_connections_total');
    assert.equal(connections, 1);

    // The server's certificate renews: a new peer sees the new one, the established session carries on.
    const renewed = await issueLeaf(world.ca, idOf('rot-server'));
    serverId.set(certifiedKey(renewed, world.ca.certPem));
    const probeLeaf = await issueLeaf(world.ca, idOf('probe'));
    const served = await new Promise<string>((resolve, reject) => {
      const s = tls.connect({
        host: '127.0.0.1',
        port: portOf(server, 'inbound'),
        key: probeLeaf.keyPem,
        cert: probeLeaf.certPem,
        ca: world.ca.certPem,
        ALPNProtocols: ['trellis-http1/1'],
        checkServerIdentity: () => undefined,
      });
      s.on('secureConnect', () => {
        resolve(s.getPeerX509Certificate()!.serialNumber);
        s.destroy();
      });
      s.on('error', reject);
    });
    assert.equal(served, new X509Certificate(renewed.certPem).serialNumber);

    // The client's credentials change to an expired certificate: new connections now fail, which
    // shows they use it, while the established session still carries requests.
    const expired = await issueLeaf(world.ca, idOf('rot-client'), {
      notBefore: new Date(Date.now() - 48 * 3600_000),
      notAfter: new Date(Date.now() - 3600_000),
    });
    clientId.set(certifiedKey(expired, world.ca.certPem));
    for (let i = 0; i < 20; i++)
      assert.equal((await get(out, 'http://rot.default:8080/', agent)).status, 200);
    assert.equal(
      metric(client, 'trellis_mesh_connections_total'),
      connections,
      'no new connection, none dropped',
    );
    // A second name for the same server, through a relay (another address): a new session.
    const relay = net.createServer((c) => {
      const up = net.connect(portOf(server, 'inbound'), '127.0.0.1');
      c.pipe(up).pipe(c);
      c.on('error', () => up.destroy());
      up.on('error', () => c.destroy());
    });
    relay.listen(0, '127.0.0.1');
    await once(relay, 'listening');
    t.after(() => relay.close());
    await world.register('rot2', 'rot2-1', (relay.address() as net.AddressInfo).port, idOf('rot-server'));
    const viaNew = await get(out, 'http://rot2.default:8080/', agent);
    const fresh = viaNew.status === 502 && viaNew.error === 'tls-handshake-failed';
    assert.ok(fresh, 'a new connection with the expired certificate is refused');
    // Renewed again with a valid certificate: new connections work again.
    clientId.set(certifiedKey(await issueLeaf(world.ca, idOf('rot-client')), world.ca.certPem));
    assert.equal((await get(out, 'http://rot2.default:8080/', agent)).status, 200);
    assert.equal((await get(out, 'http://rot.default:8080/', agent)).status, 200);
  },
);
