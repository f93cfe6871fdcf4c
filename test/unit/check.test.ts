// `trellis check`'s certificate rules: a chain must lead to a trust anchor, and a certificate with
// less than 20% of its lifetime left (an anchor: less than 60 days) is close to expiry.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, webcrypto } from 'node:crypto';
import { x509 } from '../helpers/x509.ts';
import { expiryCheck, humanDuration, verifiesTo } from '../../src/cli/check.ts';

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
const DAY = 24 * 3600 * 1000;

async function keys(): Promise<webcrypto.CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
}

async function cert(
  name: string,
  own: webcrypto.CryptoKeyPair,
  signer: { name: string; keys: webcrypto.CryptoKeyPair } | null,
  from: number,
  to: number,
  ca: boolean,
): Promise<X509Certificate> {
  const c = await x509.X509CertificateGenerator.create({
    serialNumber: '01' + Math.floor(Math.random() * 1e8).toString(16),
    subject: `CN=${name}`,
    issuer: `CN=${signer?.name ?? name}`,
    notBefore: new Date(from),
    notAfter: new Date(to),
    signingAlgorithm: ALG,
    publicKey: own.publicKey,
    signingKey: (signer?.keys ?? own).privateKey,
    extensions: [new x509.BasicConstraintsExtension(ca, undefined, true)],
  });
  return new X509Certificate(c.toString('pem'));
}

test('a chain verifies only to the anchor that signed its top', async () => {
  const now = Date.now();
  const [rootKeys, issuerKeys, leafKeys, otherKeys] = await Promise.all([keys(), keys(), keys(), keys()]);
  const root = await cert('root', rootKeys, null, now - DAY, now + 3650 * DAY, true);
  const other = await cert('other', otherKeys, null, now - DAY, now + 3650 * DAY, true);
  const issuer = await cert(
    'issuer',
    issuerKeys,
    { name: 'root', keys: rootKeys },
    now - DAY,
    now + 30 * DAY,
    true,
  );
  const leaf = await cert(
    'leaf',
    leafKeys,
    { name: 'issuer', keys: issuerKeys },
    now - 1000,
    now + DAY,
    false,
  );
  assert.equal(verifiesTo([leaf, issuer], [root]), true);
  assert.equal(verifiesTo([leaf, issuer], [other, root]), true, 'a bundle of several anchors');
  assert.equal(verifiesTo([leaf, issuer], [other]), false);
  assert.equal(verifiesTo([leaf], [root]), false, 'the issuer is missing');
  // Same names, other keys: a forged issuer does not pass.
  const forged = await cert(
    'issuer',
    otherKeys,
    { name: 'root', keys: otherKeys },
    now - DAY,
    now + DAY,
    true,
  );
  assert.equal(verifiesTo([leaf, forged], [root]), false);
});

test('expiry: ok, close (under 20% of the lifetime left, anchors under 60 days), expired, not yet valid', async () => {
  const now = Date.now();
  const k = await keys();
  const at = (from: number, to: number) => cert('c', k, null, from, to, false);
  assert.equal(
    expiryCheck('leaf', await at(now - 10 * 3600_000, now + 14 * 3600_000), now, false).level,
    'ok',
  );
  const close = expiryCheck('leaf', await at(now - 20 * 3600_000, now + 4 * 3600_000), now, false);
  assert.equal(close.level, 'warn');
  assert.match(close.detail, /close to expiry/);
  assert.equal(expiryCheck('leaf', await at(now - 2 * DAY, now - 1000), now, false).level, 'error');
  assert.equal(expiryCheck('leaf', await at(now + DAY, now + 2 * DAY), now, false).level, 'error');
  // An anchor with a third of its life left warns by the 60-day rule alone.
  const anchor = await at(now - 100 * DAY, now + 50 * DAY);
  assert.equal(expiryCheck('anchor', anchor, now, true).level, 'warn');
  assert.equal(expiryCheck('anchor', await at(now - DAY, now + 3000 * DAY), now, true).level, 'ok');
});

test('durations read as a person would say them', () => {
  assert.equal(humanDuration(5_000), '5s');
  assert.equal(humanDuration(10 * 60_000), '10m');
  assert.equal(humanDuration(5 * 3600_000), '5h');
  assert.equal(humanDuration(40 * DAY), '40d');
});
