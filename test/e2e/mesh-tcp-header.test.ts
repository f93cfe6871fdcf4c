// The mesh's opaque transport header (src/proxy/mesh/protocol.ts), property-tested as every parser
// is: what encodeTcpHeader writes parses back to the same port whatever follows it and however it
// is split; a buffer that does not start with the magic is refused as soon as a byte shows it;
// a prefix of a valid header asks for more, never decides wrongly; nothing throws. Also the
// inbound side end to end: garbage, a port that is not an app port, and silence are closed
// without anything reaching the app.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import { once } from 'node:events';
import fc from 'fast-check';
import { encodeTcpHeader, parseTcpHeader, TCP_HEADER_BYTES } from '../../src/proxy/mesh/protocol.ts';
import { idOf, identityFor, issueLeaf, startMeshWorld } from '../helpers/mesh-pki.ts';

test('a header round-trips, whatever follows it', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 65535 }), fc.uint8Array({ maxLength: 64 }), (port, tail) => {
      const buf = Buffer.concat([encodeTcpHeader(port), tail]);
      const r = parseTcpHeader(buf);
      assert.equal(r.status, 'ok');
      if (r.status !== 'ok') return;
      assert.equal(r.port, port);
      assert.ok(r.rest.equals(Buffer.from(tail)));
    }),
  );
});

test('a strict prefix of a header asks for more', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 65535 }),
      fc.integer({ min: 0, max: TCP_HEADER_BYTES - 1 }),
      (port, n) => {
        assert.equal(parseTcpHeader(encodeTcpHeader(port).subarray(0, n)).status, 'need-more');
      },
    ),
  );
});

test('anything else is refused at the first wrong byte, and never throws', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 32 }), (bytes) => {
      const buf = Buffer.from(bytes);
      const r = parseTcpHeader(buf);
      const magic = Buffer.from('TRL1');
      const n = Math.min(buf.length, 4);
      const magicOk = buf.subarray(0, n).equals(magic.subarray(0, n));
      if (!magicOk) assert.equal(r.status, 'error');
      else if (buf.length < TCP_HEADER_BYTES) assert.equal(r.status, 'need-more');
      else assert.equal(r.status, buf.readUInt16BE(4) === 0 ? 'error' : 'ok');
      // Decisions are stable: more bytes never change an error or an ok.
      if (r.status !== 'need-more') {
        const longer = parseTcpHeader(Buffer.concat([buf, Buffer.from([1, 2, 3])]));
        assert.equal(longer.status, r.status);
      }
    }),
  );
});

test('encodeTcpHeader refuses ports outside 1..65535', () => {
  for (const bad of [0, -1, 65536, 1.5, Number.NaN]) assert.throws(() => encodeTcpHeader(bad), RangeError);
});

test(
  'the inbound closes bad opaque transport headers; nothing reaches the app',
  { timeout: 30_000 },
  async (t) => {
    const world = await startMeshWorld();
    t.after(() => world.close());
    let hits = 0;
    const app = http.createServer((_req, res) => {
      hits++;
      res.end('app');
    });
    app.listen(0, '127.0.0.1');
    await once(app, 'listening');
    t.after(() => {
      app.close();
      app.closeAllConnections();
    });
    const server = await world.proxy({
      identity: await identityFor(world, 'hdr-server'),
      app: (app.address() as net.AddressInfo).port,
      config: { detect: { timeoutMs: 500 } },
    });
    const inbound = Number(server.addresses.inbound!.split(':').pop());
    const leaf = await issueLeaf(world.ca, idOf('hdr-client'));
    const attempt = (first: Buffer | null): Promise<string> =>
      new Promise((resolve) => {
        const s = tls.connect({
          host: '127.0.0.1',
          port: inbound,
          key: leaf.keyPem,
          cert: leaf.certPem,
          ca: world.ca.certPem,
          ALPNProtocols: ['trellis-tcp/1'],
          checkServerIdentity: () => undefined,
        });
        let out = '';
        s.on('secureConnect', () => {
          if (first !== null)
            s.write(
              Buffer.concat([first, Buffer.from('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')]),
            );
        });
        s.on('data', (d: Buffer) => (out += d.toString()));
        s.on('error', () => {});
        s.on('close', () => resolve(out));
      });
    assert.equal(await attempt(Buffer.from('GARBAGE!')), '');
    assert.equal(await attempt(encodeTcpHeader(1)), '', 'a port that is not an app port');
    assert.equal(await attempt(null), '', 'silence: closed after the timeout');
    assert.equal(hits, 0);
    // And the header naming the inbound port reaches the app.
    assert.match(await attempt(encodeTcpHeader(inbound)), /^HTTP\/1.1 200/);
    assert.equal(hits, 1);
  },
);
