// Tests for the admin listener's GET /identity (src/proxy/admin/server.ts) on 127.0.0.1:0: 404
// without an identity or before the first certificate, the PEM chain (leaf first) once there is
// one, the current chain after a change, HEAD, wrong methods, a failing source, and, as a
// property, any chain text served byte for byte.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { connect } from 'node:net';
import fc from 'fast-check';
import { createLogger } from '../../src/core/log.ts';
import { x509, EC_P256 } from '../helpers/x509.ts';
import { startAdmin, type AdminOptions } from '../../src/proxy/admin/server.ts';
import { ProxyMetrics } from '../../src/proxy/telemetry/metrics.ts';

const log = createLogger({ level: 'off' });
const ID = 'spiffe://cluster.local/ns/default/sa/web';

async function start(t: { after(fn: () => Promise<void>): void }, identity?: AdminOptions['identity']) {
  const admin = await startAdmin({
    listen: { host: '127.0.0.1', port: 0 },
    metrics: new ProxyMetrics(),
    config: () => ({}),
    isReady: () => true,
    onShutdown: () => {},
    log,
    ...(identity === undefined ? {} : { identity }),
  });
  t.after(() => admin.close());
  return `http://127.0.0.1:${admin.address.port}`;
}

/** A real chain: a leaf for ID issued by a self-signed CA, leaf first. */
async function makeChain(): Promise<string> {
  const caKeys = await crypto.subtle.generateKey(EC_P256, true, ['sign', 'verify']);
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    name: 'CN=test issuer',
    keys: caKeys,
    signingAlgorithm: EC_P256,
    extensions: [new x509.BasicConstraintsExtension(true, undefined, true)],
  });
  const leafKeys = await crypto.subtle.generateKey(EC_P256, true, ['sign', 'verify']);
  const leaf = await x509.X509CertificateGenerator.create({
    subject: '',
    issuer: ca.subject,
    publicKey: leafKeys.publicKey,
    signingKey: caKeys.privateKey,
    signingAlgorithm: EC_P256,
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: ID }], true)],
  });
  return `${leaf.toString('pem')}\n${ca.toString('pem')}\n`;
}

test('GET /identity: 404 without an identity option', async (t) => {
  const base = await start(t);
  const res = await fetch(`${base}/identity`);
  assert.equal(res.status, 404);
  assert.equal(await res.text(), 'this proxy has no certificate\n');
});

test('GET /identity: 404 before the first certificate, then the current chain, leaf first', async (t) => {
  let chain: string | null = null;
  const base = await start(t, () => chain);
  const before = await fetch(`${base}/identity`);
  assert.equal(before.status, 404);
  await before.text();

  chain = await makeChain();
  const res = await fetch(`${base}/identity?format=pem`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'text/plain; charset=utf-8');
  assert.equal(res.headers.get('cache-control'), 'no-store');
  const body = await res.text();
  assert.equal(body, chain);
  assert.equal(new X509Certificate(body).subjectAltName, `URI:${ID}`, 'the first certificate is the leaf');

  // A renewal: the next request serves the new chain.
  const renewed = await makeChain();
  chain = renewed;
  assert.equal(await (await fetch(`${base}/identity`)).text(), renewed);
  chain = '';
  assert.equal((await fetch(`${base}/identity`)).status, 404);
});

test('/identity: HEAD has the length and no body; other methods get 405; a failing source is a 500', async (t) => {
  const chain = await makeChain();
  let fail = false;
  const base = await start(t, () => {
    if (fail) throw new Error('boom');
    return chain;
  });
  const head = await fetch(`${base}/identity`, { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(head.headers.get('content-length'), String(Buffer.byteLength(chain)));
  assert.equal(await head.text(), '');
  const post = await fetch(`${base}/identity`, { method: 'POST', body: 'x' });
  assert.equal(post.status, 405);
  assert.equal(post.headers.get('allow'), 'GET, HEAD');
  await post.text();
  fail = true;
  const broken = await fetch(`${base}/identity`);
  assert.equal(broken.status, 500);
  await broken.text();
  // The listener is still fine afterwards.
  fail = false;
  assert.equal(await (await fetch(`${base}/identity`)).text(), chain);
});

/** One raw request on a fresh connection; the whole answer (the server closes: Connection: close). */
function rawGet(port: number, path: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => socket.destroy(new Error('no answer in 5 s')), 5000);
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks));
    });
    socket.write(`GET ${path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n`);
  });
}

test('property: whatever non-empty text the source returns is served byte for byte with its length', async (t) => {
  let current = '';
  const base = await start(t, () => current);
  const port = Number(new URL(base).port);
  await fc.assert(
    fc.asyncProperty(fc.string({ unit: 'binary', minLength: 1, maxLength: 3000 }), async (text) => {
      current = text;
      const answer = await rawGet(port, '/identity');
      const split = answer.indexOf('\r\n\r\n');
      const head = answer.subarray(0, split).toString('latin1');
      const body = answer.subarray(split + 4);
      assert.match(head, /^HTTP\/1\.1 200 OK\r\n/);
      assert.match(head, new RegExp(`\r\ncontent-length: ${Buffer.byteLength(text)}(\r\n|$)`));
      assert.deepEqual(body, Buffer.from(text, 'utf8'));
    }),
    { numRuns: 60 },
  );
});
