// The certificate authority (src/control/identity/ca.ts) over a temp folder: files and their
// permissions, the issued chain as openssl sees it, the leaf's fields, every kind of bad CSR,
// reloading, an operator-supplied issuer, issuer self-renewal and a whole anchor rotation in
// virtual time (openssl verifies at that time with -attime).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, generateKeyPairSync, webcrypto, X509Certificate } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CertificateAuthority, RotationError } from '../../src/control/identity/ca.ts';
import { loadCaCert } from '../../src/control/identity/ca-certs.ts';
import { IdentityError } from '../../src/control/identity/errors.ts';
import { EC_P256, toPem, x509 } from '../helpers/x509.ts';
import { removeTempDir } from '../helpers/temp-dir.ts';

const ID = 'spiffe://cluster.local/ns/default/sa/web';
const HOUR = 3600_000;
const DAY = 24 * HOUR;

type SanEntry = { type: 'url' | 'dns'; value: string };

/** A DER CSR made with @peculiar/x509 (what a proxy sends). */
async function makeCsr(
  sans: SanEntry[] = [{ type: 'url', value: ID }],
  algorithm: webcrypto.RsaHashedKeyGenParams | webcrypto.EcKeyGenParams = EC_P256,
): Promise<Buffer> {
  const keys = (await webcrypto.subtle.generateKey(algorithm, false, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
  const signingAlgorithm = algorithm.name === 'ECDSA' ? EC_P256 : algorithm;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    keys,
    signingAlgorithm,
    extensions: sans.length === 0 ? [] : [new x509.SubjectAlternativeNameExtension(sans)],
  });
  return Buffer.from(csr.rawData);
}

async function tempDir(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'trellis-ca-'));
  t.after(() => removeTempDir(dir));
  return dir;
}

/** `openssl verify` of `leafDer` with `anchorsPem` trusted and `issuerDer` untrusted, at `atMs`. */
function opensslVerify(
  dir: string,
  anchorsPem: string,
  issuerDer: Buffer,
  leafDer: Buffer,
  atMs?: number,
): boolean {
  const files = {
    anchors: join(dir, 'v-anchors.pem'),
    issuer: join(dir, 'v-issuer.pem'),
    leaf: join(dir, 'v-leaf.pem'),
  };
  execFileSync('sh', ['-c', 'cat > "$0"', files.anchors], { input: anchorsPem });
  execFileSync('sh', ['-c', 'cat > "$0"', files.issuer], { input: toPem(issuerDer) });
  execFileSync('sh', ['-c', 'cat > "$0"', files.leaf], { input: toPem(leafDer) });
  const at = atMs === undefined ? [] : ['-attime', String(Math.floor(atMs / 1000))];
  try {
    const out = execFileSync(
      'openssl',
      ['verify', ...at, '-CAfile', files.anchors, '-untrusted', files.issuer, files.leaf],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    return out.toString().includes(': OK');
  } catch {
    return false;
  }
}

async function refusal(fn: () => unknown): Promise<IdentityError> {
  try {
    await fn();
  } catch (error) {
    assert.ok(error instanceof IdentityError, `expected an IdentityError, got ${String(error)}`);
    return error;
  }
  assert.fail('expected a refusal');
}

test('a new authority writes its files (keys 0600) and issues a chain that openssl verifies', async (t) => {
  const root = await tempDir(t);
  const dir = join(root, 'identity');
  const bundlePath = join(root, 'trust-anchor.pem');
  const ca = await CertificateAuthority.open({ dir, trustDomain: 'cluster.local', bundlePath });
  for (const key of ['anchor.key.pem', 'issuer.key.pem']) {
    assert.equal((await stat(join(dir, key))).mode & 0o777, 0o600, key);
  }
  assert.equal((await stat(dir)).mode & 0o777, 0o700);
  assert.equal(await readFile(bundlePath, 'utf8'), ca.trustAnchorsPem);
  assert.equal(await readFile(join(dir, 'trust-anchors.pem'), 'utf8'), ca.trustAnchorsPem);

  const before = Date.now();
  const issued = ca.issue(await makeCsr(), ID);
  assert.equal(issued.intermediatesDer.length, 1);
  assert.ok(opensslVerify(root, ca.trustAnchorsPem, issued.intermediatesDer[0]!, issued.leafDer));
  // Node's own parser agrees on the fields that matter.
  const leaf = new X509Certificate(issued.leafDer);
  assert.equal(leaf.subjectAltName, `URI:${ID}`);
  assert.equal(leaf.ca, false);
  assert.equal(leaf.validToDate.getTime(), issued.validUntilMs);
  assert.ok(Math.abs(issued.validUntilMs - (before + DAY)) < 5000, 'valid 24 h');
  assert.ok(Math.abs(leaf.validFromDate.getTime() - (before - 60_000)) < 5000, 'starts a minute back');
  assert.ok(leaf.checkIssued(new X509Certificate(issued.intermediatesDer[0]!)));
  // And so does @peculiar/x509, extension by extension.
  const parsed = new x509.X509Certificate(issued.leafDer);
  const bc = parsed.getExtension(x509.BasicConstraintsExtension)!;
  assert.equal(bc.ca, false);
  assert.equal(bc.critical, true);
  const ku = parsed.getExtension(x509.KeyUsagesExtension)!;
  assert.equal(ku.usages, x509.KeyUsageFlags.digitalSignature);
  assert.equal(ku.critical, true);
  assert.deepEqual(
    [...parsed.getExtension(x509.ExtendedKeyUsageExtension)!.usages],
    ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2'],
  );
  const san = parsed.getExtension(x509.SubjectAlternativeNameExtension)!;
  assert.equal(san.critical, true);
  assert.deepEqual(san.names.toJSON(), [{ type: 'url', value: ID }]);
  assert.equal(parsed.subject, '');
  const ski = parsed.getExtension(x509.SubjectKeyIdentifierExtension)!.keyId;
  const issuerSki = new x509.X509Certificate(issued.intermediatesDer[0]!).getExtension(
    x509.SubjectKeyIdentifierExtension,
  )!.keyId;
  assert.equal(parsed.getExtension(x509.AuthorityKeyIdentifierExtension)!.keyId, issuerSki);
  assert.match(ski, /^[0-9a-f]{40}$/);
  assert.notEqual(
    new x509.X509Certificate(ca.issue(await makeCsr(), ID).leafDer).serialNumber,
    parsed.serialNumber,
  );
  const issuer = new x509.X509Certificate(issued.intermediatesDer[0]!).getExtension(
    x509.BasicConstraintsExtension,
  )!;
  assert.equal(issuer.ca, true);
  assert.equal(issuer.pathLength, 0);
  assert.equal(ca.issued, 2);

  // Opening the folder again loads the same anchor and issuer.
  const again = await CertificateAuthority.open({ dir, trustDomain: 'cluster.local' });
  assert.equal(again.trustAnchorsPem, ca.trustAnchorsPem);
  assert.equal(again.issuerCert.fingerprint, ca.issuerCert.fingerprint);
});

test("the authority's own anchor and issuer, as @peculiar/x509 and node read them", async () => {
  const ca = await CertificateAuthority.open({ dir: null, trustDomain: 'example.org' });
  const [anchorPem] = ca.trustAnchorsPem.match(
    /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----\n/g,
  )!;
  const anchor = new x509.X509Certificate(anchorPem!);
  const issuer = new x509.X509Certificate(ca.issuerCert.der);
  assert.match(anchor.subject, /^CN=root\.example\.org [0-9a-f]{8}, O=Trellis$/);
  assert.equal(anchor.issuer, anchor.subject);
  assert.match(issuer.subject, /^CN=identity\.example\.org [0-9a-f]{8}, O=Trellis$/);
  assert.equal(issuer.issuer, anchor.subject);
  assert.equal(await anchor.verify({ publicKey: anchor.publicKey, signatureOnly: true }), true);
  assert.equal(await issuer.verify({ publicKey: anchor.publicKey, signatureOnly: true }), true);
  for (const [cert, pathLength] of [
    [anchor, undefined],
    [issuer, 0],
  ] as const) {
    const bc = cert.getExtension(x509.BasicConstraintsExtension)!;
    assert.deepEqual([bc.ca, bc.pathLength, bc.critical], [true, pathLength, true]);
    const ku = cert.getExtension(x509.KeyUsagesExtension)!;
    assert.equal(ku.usages, x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign);
    assert.equal(ku.critical, true);
    // The subject key identifier is the SHA-1 of the key (RFC 5280 4.2.1.2 method 1).
    const ski = cert.getExtension(x509.SubjectKeyIdentifierExtension)!;
    const keyBits = Buffer.from(cert.publicKey.rawData).subarray(-65);
    assert.equal(ski.keyId, createHash('sha1').update(keyBits).digest('hex'));
    assert.equal(ski.critical, false);
    assert.equal(Number.parseInt(cert.serialNumber.slice(0, 2), 16) & 0x80, 0, 'a positive serial');
  }
  assert.equal(anchor.getExtension(x509.AuthorityKeyIdentifierExtension), null);
  assert.equal(
    issuer.getExtension(x509.AuthorityKeyIdentifierExtension)!.keyId,
    anchor.getExtension(x509.SubjectKeyIdentifierExtension)!.keyId,
  );
  // Node agrees, and the authority reads back what it wrote.
  const node = new X509Certificate(ca.issuerCert.der);
  assert.equal(node.ca, true);
  assert.ok(node.checkIssued(new X509Certificate(anchorPem!)));
  assert.equal(ca.issuerCert.subject, issuer.subject);
  assert.equal(
    ca.issuerCert.keyId.toString('hex'),
    issuer.getExtension(x509.SubjectKeyIdentifierExtension)!.keyId,
  );
  assert.equal(ca.issuerCert.notAfterMs - ca.issuerCert.notBeforeMs, 30 * DAY + 60_000);
});

test("a CA certificate's subject key identifier is read as written; without one, the SHA-1 of its key", async () => {
  const keys = (await webcrypto.subtle.generateKey(EC_P256, true, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
  const make = async (extensions: x509.Extension[]) =>
    x509.X509CertificateGenerator.createSelfSigned({
      name: 'CN=operator CA',
      keys,
      signingAlgorithm: EC_P256,
      notBefore: new Date(Date.now() - HOUR),
      notAfter: new Date(Date.now() + DAY),
      extensions: [new x509.BasicConstraintsExtension(true, undefined, true), ...extensions],
    });
  const own = 'ab'.repeat(8);
  const withSki = await make([new x509.SubjectKeyIdentifierExtension(own)]);
  assert.equal(loadCaCert(withSki.toString('pem'), 'with').keyId.toString('hex'), own);
  const without = await make([]);
  const keyBits = Buffer.from(without.publicKey.rawData).subarray(-65);
  assert.equal(
    loadCaCert(without.toString('pem'), 'without').keyId.toString('hex'),
    createHash('sha1').update(keyBits).digest('hex'),
  );
  assert.equal(loadCaCert(without.toString('pem'), 'without').subject, 'CN=operator CA');
});

test('bad CSRs are refused with INVALID_ARGUMENT and a message that says why', async (t) => {
  const ca = await CertificateAuthority.open({ dir: null, trustDomain: 'cluster.local' });
  const good = await makeCsr();
  const badSignature = Buffer.from(good);
  badSignature[badSignature.length - 5]! ^= 0x01;
  const cases: [string, Buffer | Promise<Buffer>, RegExp][] = [
    ['empty', Buffer.alloc(0), /empty/],
    ['garbage', Buffer.from('not a csr at all'), /malformed/],
    ['truncated', good.subarray(0, good.length - 10), /malformed/],
    ['trailing bytes', Buffer.concat([good, Buffer.from([0])]), /malformed/],
    ['bad signature', badSignature, /signature does not verify/],
    [
      'another identity',
      makeCsr([{ type: 'url', value: 'spiffe://cluster.local/ns/default/sa/db' }]),
      /names "spiffe:\/\/cluster.local\/ns\/default\/sa\/db"/,
    ],
    [
      'extra SAN',
      makeCsr([
        { type: 'url', value: ID },
        { type: 'dns', value: 'web.default' },
      ]),
      /2 subject alternative names/,
    ],
    [
      'two URIs',
      makeCsr([
        { type: 'url', value: ID },
        { type: 'url', value: ID },
      ]),
      /2 subject alternative names/,
    ],
    ['DNS only', makeCsr([{ type: 'dns', value: 'web.default' }]), /not a URI/],
    ['no SAN', makeCsr([]), /no subject alternative name/],
    [
      'RSA key',
      makeCsr(undefined, {
        name: 'RSASSA-PKCS1-v1_5',
        modulusLength: 2048,
        publicExponent: new Uint8Array([1, 0, 1]),
        hash: 'SHA-256',
      }),
      /ECDSA P-256/,
    ],
    ['P-384 key', makeCsr(undefined, { name: 'ECDSA', namedCurve: 'P-384' }), /ECDSA P-256/],
  ];
  for (const [what, csr, message] of cases) {
    const error = await refusal(async () => ca.issue(await csr, ID));
    assert.equal(error.status, 'INVALID_ARGUMENT', what);
    assert.match(error.message, message, what);
  }
  assert.equal(ca.issued, 0);
  t.diagnostic(`${cases.length} kinds of bad CSR refused`);
});

test('an operator-supplied issuer is used as is: no renewal, no rotation; a key that does not match is named', async (t) => {
  const root = await tempDir(t);
  const source = join(root, 'source');
  const operator = join(root, 'operator');
  const original = await CertificateAuthority.open({ dir: source, trustDomain: 'example.org' });
  await mkdir(operator);
  for (const f of ['issuer.pem', 'issuer.key.pem', 'trust-anchors.pem'])
    await copyFile(join(source, f), join(operator, f));
  let now = Date.now();
  const ca = await CertificateAuthority.open({ dir: operator, trustDomain: 'example.org', now: () => now });
  assert.equal(ca.issuerCert.fingerprint, original.issuerCert.fingerprint);
  assert.equal(ca.status().managed, false);
  const id = 'spiffe://example.org/ns/a/sa/b';
  const issued = ca.issue(await makeCsr([{ type: 'url', value: id }]), id);
  assert.ok(opensslVerify(root, ca.trustAnchorsPem, issued.intermediatesDer[0]!, issued.leafDer));
  await assert.rejects(
    ca.startRotation(),
    (e: unknown) => e instanceof RotationError && !e.busy && /anchor key/.test(e.message),
  );
  now += 25 * DAY; // past 2/3 of the issuer's 30 days: only a warning
  await ca.tick();
  assert.equal(ca.issuerCert.fingerprint, original.issuerCert.fingerprint);
  now += 6 * DAY; // expired: UNAVAILABLE
  assert.equal(
    (await refusal(async () => ca.issue(await makeCsr([{ type: 'url', value: id }]), id))).status,
    'UNAVAILABLE',
  );

  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  await writeFile(join(operator, 'issuer.key.pem'), privateKey.export({ format: 'pem', type: 'pkcs8' }));
  await assert.rejects(
    CertificateAuthority.open({ dir: operator, trustDomain: 'example.org' }),
    /issuer\.pem: the private key does not match/,
  );
  await rm(join(operator, 'issuer.key.pem'));
  await assert.rejects(
    CertificateAuthority.open({ dir: operator, trustDomain: 'example.org' }),
    /issuer\.pem exists but issuer\.key\.pem does not/,
  );
});

test('the issuer renews itself with a new key after 2/3 of its lifetime', async (t) => {
  const root = await tempDir(t);
  const start = Date.now();
  let now = start;
  const ca = await CertificateAuthority.open({
    dir: join(root, 'id'),
    trustDomain: 'cluster.local',
    now: () => now,
  });
  const first = ca.issuerCert;
  const next = await ca.tick();
  assert.equal(ca.issuerCert.fingerprint, first.fingerprint, 'nothing due yet');
  assert.ok(next <= now + HOUR);
  now = start + 19 * DAY;
  await ca.tick();
  assert.equal(ca.issuerCert.fingerprint, first.fingerprint, 'not yet at 2/3 of 30 days');
  now = start + 21 * DAY;
  await ca.tick();
  const renewed = ca.issuerCert;
  assert.notEqual(renewed.fingerprint, first.fingerprint);
  assert.notEqual(renewed.keyId.toString('hex'), first.keyId.toString('hex'), 'a new key');
  assert.ok(Math.abs(renewed.notAfterMs - (now + 30 * DAY)) < 5000);
  const issued = ca.issue(await makeCsr(), ID);
  assert.ok(opensslVerify(root, ca.trustAnchorsPem, issued.intermediatesDer[0]!, issued.leafDer, now));
  // The renewal is on disk.
  const reopened = await CertificateAuthority.open({
    dir: join(root, 'id'),
    trustDomain: 'cluster.local',
    now: () => now,
  });
  assert.equal(reopened.issuerCert.fingerprint, renewed.fingerprint);
});

test('an anchor rotation: new anchor joins, issuer replaced after one leaf lifetime, old anchor leaves after another', async (t) => {
  const root = await tempDir(t);
  const dir = join(root, 'identity');
  const bundlePath = join(root, 'trust-anchor.pem');
  const start = Date.now();
  let now = start;
  const options = { dir, trustDomain: 'cluster.local', bundlePath, leafLifetimeMs: 1000, now: () => now };
  const ca = await CertificateAuthority.open(options);
  const oldAnchor = ca.anchorCerts[0]!;
  const oldLeaf = ca.issue(await makeCsr(), ID);
  assert.equal(oldLeaf.validUntilMs, Math.ceil((now + 1000) / 1000) * 1000);

  assert.equal(await ca.startRotation(), 'anchor-added');
  await assert.rejects(ca.startRotation(), (e: unknown) => e instanceof RotationError && e.busy);
  assert.equal(ca.anchorCerts.length, 2);
  assert.equal(await readFile(bundlePath, 'utf8'), ca.trustAnchorsPem);
  assert.equal(
    ca.issue(await makeCsr(), ID).trustAnchorsPem,
    ca.trustAnchorsPem,
    'proxies learn the bundle at renewal',
  );
  assert.equal(
    ca.issuerCert.fingerprint,
    new X509Certificate(oldLeaf.intermediatesDer[0]!).fingerprint256.replace(/:/g, '').toLowerCase(),
  );

  now = start + 500;
  await ca.tick();
  assert.equal(ca.rotationPhase, 'anchor-added', 'not before one leaf lifetime');
  // A restart in the middle of a rotation picks it up from the folder.
  const restarted = await CertificateAuthority.open(options);
  assert.equal(restarted.rotationPhase, 'anchor-added');

  now = start + 1100;
  const oldLeaf2 = ca.issue(await makeCsr(), ID); // from the old issuer, just before the switch
  await ca.tick();
  assert.equal(ca.rotationPhase, 'issuer-replaced');
  const newLeaf = ca.issue(await makeCsr(), ID);
  assert.notEqual(
    newLeaf.intermediatesDer[0]!.toString('hex'),
    oldLeaf2.intermediatesDer[0]!.toString('hex'),
  );
  // During the overlap both leaves verify against the bundle.
  assert.ok(opensslVerify(root, ca.trustAnchorsPem, oldLeaf2.intermediatesDer[0]!, oldLeaf2.leafDer, now));
  assert.ok(opensslVerify(root, ca.trustAnchorsPem, newLeaf.intermediatesDer[0]!, newLeaf.leafDer, now));
  // ... and the new issuer is signed by the new anchor only.
  assert.ok(!opensslVerify(root, oldAnchor.pem, newLeaf.intermediatesDer[0]!, newLeaf.leafDer, now));

  now = start + 2200;
  await ca.tick();
  assert.equal(ca.rotationPhase, 'idle');
  assert.equal(ca.anchorCerts.length, 1);
  assert.notEqual(ca.anchorCerts[0]!.fingerprint, oldAnchor.fingerprint);
  assert.equal(await readFile(bundlePath, 'utf8'), ca.trustAnchorsPem);
  assert.ok(
    opensslVerify(root, ca.trustAnchorsPem, newLeaf.intermediatesDer[0]!, newLeaf.leafDer, now - 1500),
  );
  assert.ok(
    !opensslVerify(root, ca.trustAnchorsPem, oldLeaf2.intermediatesDer[0]!, oldLeaf2.leafDer, now - 1500),
  );
  const status = ca.status();
  assert.equal(status.rotation.phase, 'idle');
  assert.equal(status.anchors.length, 1);
  assert.equal(status.anchors[0]!.signsIssuer, true);
  // Its files say the same after a restart.
  const reopened = await CertificateAuthority.open(options);
  assert.equal(reopened.rotationPhase, 'idle');
  assert.equal(reopened.trustAnchorsPem, ca.trustAnchorsPem);
  assert.equal(reopened.issuerCert.fingerprint, ca.issuerCert.fingerprint);
});
