// Tests of the two-hop benchmark's set-up, the parts whose mistakes would make its numbers lie:
// the PKI (chains verify, SANs and key type are right, the rogue leaf does not chain to the root),
// the haproxy and nginx pairs (they answer through both hops, and their second hop refuses a
// client without a certificate or with another CA's), the mTLS checker itself (it rejects a second
// hop that does not ask for client certificates), the trellis pair (two hops through discovery,
// seen in the server-side proxy's metrics), and the reading of the trellis metrics.
// Needs openssl, haproxy and nginx (.ci/run installs them).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { createServer } from 'node:tls';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { checkAnswers } from '../../bench/measure.ts';
import { stopAll } from '../../bench/processes.ts';
import * as targets from '../../bench/targets.ts';
import {
  startHaproxyPair,
  startNginxPair,
  startTrellisPair,
  type Pair,
} from '../../bench/two-hop/contenders.ts';
import { checkSecondHop, fetchMetrics, probe, trellisMtls } from '../../bench/two-hop/mtls-check.ts';
import { makePki, type Pki } from '../../bench/two-hop/pki.ts';

const has = (cmd: string, arg: string): boolean => spawnSync(cmd, [arg], { stdio: 'ignore' }).status === 0;
const missing = ['openssl', 'haproxy', 'nginx'].filter((c) => !has(c, c === 'openssl' ? 'version' : '-v'));
const skip = missing.length > 0 ? `needs ${missing.join(', ')}` : false;

const tools: targets.Tools = {
  wrk: 'wrk',
  haproxy: 'haproxy',
  nginx: 'nginx',
  taskset: 'taskset',
  node: targets.repoNode(),
  // The sources, not dist/: the test must see the proxy as it is in this checkout.
  trellisMain: join(targets.REPO_ROOT, 'src/cli/main.ts'),
};

describe('two-hop benchmark set-up', { skip, timeout: 120_000 }, () => {
  let pki: Pki;
  let upstream: targets.Target;
  before(async () => {
    pki = makePki(join(targets.tempDir('pki-test'), 'pki'));
    upstream = await targets.startUpstream(tools, undefined);
  });
  after(async () => {
    await stopAll();
    targets.removeTempDirs();
  });

  test('the PKI: P-256 leaves with SPIFFE and DNS SANs, chaining to the root; the rogue does not', () => {
    for (const [leaf, sa] of [
      [pki.client, 'client'],
      [pki.server, 'server'],
    ] as const) {
      const certs = leaf.chainPem.split(/(?<=-----END CERTIFICATE-----\n)/).filter((c) => c.trim());
      assert.equal(certs.length, 2, 'cert.pem holds the leaf then the issuer');
      const [cert, issuer] = certs.map((c) => new X509Certificate(c));
      assert.equal(leaf.spiffeId, `spiffe://cluster.local/ns/default/sa/${sa}`);
      assert.match(cert!.subjectAltName ?? '', new RegExp(`URI:${leaf.spiffeId}`));
      assert.match(cert!.subjectAltName ?? '', new RegExp(`DNS:${sa}\\.default\\.svc\\.cluster\\.local`));
      assert.equal(cert!.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
      assert.equal(cert!.ca, false);
      assert.ok(cert!.checkIssued(issuer!) && cert!.verify(issuer!.publicKey), 'leaf signed by the issuer');
      const root = new X509Certificate(pki.rootPem);
      assert.ok(issuer!.checkIssued(root) && issuer!.verify(root.publicKey), 'issuer signed by the root');
    }
    const rogue = new X509Certificate(pki.rogue.chainPem);
    assert.equal(rogue.verify(new X509Certificate(pki.rootPem).publicKey), false);
  });

  for (const [name, start] of [
    ['haproxy', startHaproxyPair],
    ['nginx', startNginxPair],
  ] as const) {
    test(`${name}: answers through both hops; the second hop is mutual TLS 1.3`, async () => {
      const pair = await start(tools, undefined, upstream.port, pki);
      try {
        await checkAnswers(pair);
        const summary = await checkSecondHop(name, pair.secondHop.host, pair.secondHop.port, pki);
        assert.match(summary, /^verified: TLSv1\.3/);
        const none = await probe(pair.secondHop.host, pair.secondHop.port, pki, pki.server.dnsName, null);
        assert.notEqual(none.status, 200);
        const ok = await probe(pair.secondHop.host, pair.secondHop.port, pki, pki.server.dnsName, pki.client);
        assert.deepEqual([ok.status, ok.tlsVersion], [200, 'TLSv1.3']);
      } finally {
        await pair.close();
      }
    });
  }

  test('the checker rejects a second hop that does not require a client certificate', async () => {
    const server = createServer({ key: pki.server.keyPem, cert: pki.server.chainPem }, (socket) => {
      socket.once('data', () => socket.end('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok'));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as { port: number };
    try {
      await assert.rejects(
        checkSecondHop('lax', '127.0.0.1', port, pki),
        /mTLS precondition failed: the second hop accepted no client certificate/,
      );
    } finally {
      server.close();
    }
  });

  test('trellis: two hops through discovery, seen by the server-side proxy', async () => {
    let pair: Pair | undefined;
    try {
      pair = await startTrellisPair(tools, undefined, undefined, upstream.port, pki);
      const deadline = Date.now() + 15_000;
      for (;;) {
        const answered = await checkAnswers(pair).then(
          () => true,
          (err: unknown) => (Date.now() > deadline ? Promise.reject(err) : false),
        );
        if (answered) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      for (let i = 0; i < 5; i++) await checkAnswers(pair);
      const m = trellisMtls(await fetchMetrics(pair.serverAdmin!));
      assert.ok(m.inboundRequests >= 6, `server-side inbound requests: ${m.inboundRequests}`);
      assert.ok([true, null].includes(m.verified), m.summary);
    } finally {
      await pair?.close();
    }
  });
});

describe('reading the trellis metrics', () => {
  const page = (extra: string): string =>
    [
      '# TYPE trellis_request_total counter',
      'trellis_request_total{direction="inbound",protocol="http1"} 3',
      'trellis_request_total{direction="inbound",protocol="h2"} 7',
      'trellis_request_total{direction="outbound",protocol="http1"} 100',
      extra,
      '',
    ].join('\n');

  test('no mesh metric: not verified, requests still counted', () => {
    const m = trellisMtls(page(''));
    assert.deepEqual(
      [m.verified, m.meshConnections, m.inboundRequests, m.inboundH2Requests],
      [null, null, 10, 7],
    );
    assert.match(m.summary, /^not verified/);
  });

  test('mesh metric at 0 inbound: not in use', () => {
    const m = trellisMtls(
      page(
        'trellis_mesh_connections_total{direction="inbound",peer="x"} 0\n' +
          'trellis_mesh_connections_total{direction="outbound",peer="x"} 4',
      ),
    );
    assert.deepEqual([m.verified, m.meshConnections], [false, 0]);
    assert.match(m.summary, /^NOT in use/);
  });

  test('mesh metric above 0 inbound: verified, summed over label sets', () => {
    const m = trellisMtls(
      page(
        'trellis_mesh_connections_total{direction="inbound",tls="ok"} 2\n' +
          'trellis_mesh_connections_total{direction="inbound",tls="other"} 1',
      ),
    );
    assert.deepEqual([m.verified, m.meshConnections], [true, 3]);
  });
});
