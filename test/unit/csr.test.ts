// Tests for the DER writer (src/core/der.ts) and the proxy's PKCS#10 requests
// (src/proxy/identity/csr.ts). The writer is checked against a tiny strict DER reader written here
// (lengths of every size, TLVs, OIDs, INTEGERs, known byte vectors); whole requests are checked by
// three independent readers: @peculiar/x509 (parse, signature, SAN, key), `openssl req -verify`,
// and the control plane's own CSR check, including property runs over random valid URIs whose
// lengths cross the DER short/long-form boundaries.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { generateKeyPairSync, verify } from 'node:crypto';
import fc from 'fast-check';
import { TrellisError } from '../../src/core/errors.ts';
import { checkCsr } from '../../src/control/identity/csr.ts';
import { x509 } from '../helpers/x509.ts';
import { createCsr, CSR_ERROR } from '../../src/proxy/identity/csr.ts';
import { encodeLength, integer, oid, setOf, TAG, tlv } from '../../src/core/der.ts';

// ---- a tiny strict DER reader (test-only) ----

interface Read {
  tag: number;
  content: Buffer;
  /** The whole element, header included. */
  raw: Buffer;
  /** Offset just past the element. */
  end: number;
}

/** The length octets at `offset`: the length and where the content starts; strict DER only. */
function readLength(buf: Buffer, offset: number): { length: number; contentStart: number } {
  const first = buf[offset];
  if (first === undefined) throw new Error('truncated header');
  if (first < 0x80) return { length: first, contentStart: offset + 1 };
  const n = first & 0x7f;
  if (n === 0 || n > 6) throw new Error(`bad length-of-length ${n}`);
  if (buf[offset + 1] === 0) throw new Error('non-minimal long form (leading zero)');
  let length = 0;
  for (let i = 1; i <= n; i++) {
    const b = buf[offset + i];
    if (b === undefined) throw new Error('truncated length');
    length = length * 256 + b;
  }
  if (length < 0x80) throw new Error('long form for a short length');
  return { length, contentStart: offset + 1 + n };
}

/** Reads one element at `offset`; throws on anything that is not minimal, definite-length DER. */
function readDer(buf: Buffer, offset = 0): Read {
  const tag = buf[offset];
  if (tag === undefined) throw new Error('truncated header');
  const { length, contentStart } = readLength(buf, offset + 1);
  const end = contentStart + length;
  if (end > buf.length) throw new Error('content past the end');
  return { tag, content: buf.subarray(contentStart, end), raw: buf.subarray(offset, end), end };
}

/** The children of a constructed element's content. */
function children(content: Buffer): Read[] {
  const out: Read[] = [];
  for (let off = 0; off < content.length && out.length < 100;) {
    const r = readDer(content, off);
    out.push(r);
    off = r.end;
  }
  return out;
}

function decodeOid(content: Buffer): string {
  const arcs: number[] = [];
  let value = 0;
  for (const b of content) {
    value = value * 128 + (b & 0x7f);
    if ((b & 0x80) === 0) {
      arcs.push(value);
      value = 0;
    }
  }
  const first = arcs.shift() as number;
  const head = first < 80 ? [Math.floor(first / 40), first % 40] : [2, first - 80];
  return [...head, ...arcs].join('.');
}

// ---- the DER writer ----

test('DER lengths: short form below 128, minimal long form above, and every length reads back', () => {
  assert.deepEqual(encodeLength(0), Buffer.from([0]));
  assert.deepEqual(encodeLength(127), Buffer.from([0x7f]));
  assert.deepEqual(encodeLength(128), Buffer.from([0x81, 0x80]));
  assert.deepEqual(encodeLength(255), Buffer.from([0x81, 0xff]));
  assert.deepEqual(encodeLength(256), Buffer.from([0x82, 0x01, 0x00]));
  assert.deepEqual(encodeLength(65536), Buffer.from([0x83, 0x01, 0x00, 0x00]));
  assert.throws(() => encodeLength(-1), RangeError);
  assert.throws(() => encodeLength(1.5), RangeError);

  // Lengths up to 2^40 (the content itself is not built: only the length octets are read back).
  fc.assert(
    fc.property(fc.oneof(fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: 2 ** 40 })), (n) => {
      const octets = encodeLength(n);
      const read = readLength(octets, 0);
      return read.length === n && read.contentStart === octets.length && n < 128 === (octets.length === 1);
    }),
    { numRuns: 2000 },
  );
});

test('DER TLVs of random contents (0..70000 bytes) read back whole through the strict reader', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 70_000 }),
      fc.integer({ min: 0, max: 255 }),
      fc.constantFrom(TAG.OCTET_STRING, TAG.SEQUENCE, TAG.SET, 0x86, 0xa0),
      (length, fill, tag) => {
        const content = Buffer.alloc(length, fill);
        const encoded = tlv(tag, content);
        const read = readDer(encoded);
        return read.tag === tag && read.end === encoded.length && read.content.equals(content);
      },
    ),
    { numRuns: 300 },
  );
});

test('DER OIDs and INTEGERs: known vectors and random OIDs round-trip', () => {
  assert.equal(oid('1.2.840.10045.4.3.2').toString('hex'), '06082a8648ce3d040302');
  assert.equal(oid('2.5.29.17').toString('hex'), '0603551d11');
  assert.equal(oid('1.2.840.113549.1.9.14').toString('hex'), '06092a864886f70d01090e');
  assert.throws(() => oid('1'), TrellisError);
  assert.throws(() => oid('1.40'), TrellisError);
  assert.throws(() => oid('1.02.3'), TrellisError);
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 2 }),
      fc.integer({ min: 0, max: 39 }),
      fc.array(fc.integer({ min: 0, max: 2 ** 40 }), { maxLength: 8 }),
      (a, b, rest) => {
        const dotted = [a, b, ...rest].join('.');
        const read = readDer(oid(dotted));
        return read.tag === TAG.OID && decodeOid(read.content) === dotted;
      },
    ),
    { numRuns: 1000 },
  );
  assert.equal(integer(0).toString('hex'), '020100');
  assert.equal(integer(127).toString('hex'), '02017f');
  assert.equal(integer(128).toString('hex'), '02020080');
  assert.equal(integer(256).toString('hex'), '02020100');
  // SET OF is sorted by encoding.
  assert.equal(setOf(Buffer.from([2, 1, 9]), Buffer.from([2, 1, 1])).toString('hex'), '3106020101020109');
});

// ---- whole requests ----

const ID = 'spiffe://cluster.local/ns/default/sa/web';
const keyPair = generateKeyPairSync('ec', { namedCurve: 'P-256' });

/** What @peculiar/x509 reads from a request (and whether its signature verifies). */
async function viaLibrary(der: Buffer) {
  const csr = new x509.Pkcs10CertificateRequest(der);
  const sanExt = csr.extensions.find((e) => e.type === '2.5.29.17');
  assert.ok(sanExt, 'the request has a subjectAltName extension');
  const san = new x509.SubjectAlternativeNameExtension(sanExt.rawData);
  return {
    verified: await csr.verify(),
    subject: csr.subject,
    keyAlgorithm: csr.publicKey.algorithm as { name: string; namedCurve?: string },
    signatureAlgorithm: csr.signatureAlgorithm as { name: string; hash?: { name: string } },
    extensionCount: csr.extensions.length,
    sanCritical: san.critical,
    names: san.names.toJSON(),
  };
}

test('a request parses and verifies with @peculiar/x509: empty subject, P-256 key, one critical URI SAN', async () => {
  const der = createCsr(keyPair, ID);
  const read = await viaLibrary(der);
  assert.equal(read.verified, true);
  assert.equal(read.subject, '');
  assert.deepEqual(read.keyAlgorithm, { name: 'ECDSA', namedCurve: 'P-256' });
  assert.equal(read.signatureAlgorithm.name, 'ECDSA');
  assert.equal(read.signatureAlgorithm.hash?.name, 'SHA-256');
  assert.equal(read.extensionCount, 1);
  assert.equal(read.sanCritical, true);
  assert.deepEqual(read.names, [{ type: 'url', value: ID }]);
});

test('a request has exactly the documented structure, and its signature verifies with node:crypto', () => {
  const der = createCsr(keyPair, ID);
  const outer = readDer(der);
  assert.equal(outer.end, der.length, 'nothing after the request');
  const [info, algorithm, signature] = children(outer.content);
  assert.ok(info && algorithm && signature);
  const [version, subject, spki, attributes, ...extra] = children(info.content);
  assert.equal(extra.length, 0);
  assert.equal(version?.tag, TAG.INTEGER);
  assert.deepEqual(version?.content, Buffer.from([0]));
  assert.equal(subject?.tag, TAG.SEQUENCE);
  assert.equal(subject?.content.length, 0, 'empty subject');
  assert.deepEqual(spki?.raw, keyPair.publicKey.export({ type: 'spki', format: 'der' }));
  assert.equal(attributes?.tag, 0xa0);
  const [attribute] = children(attributes!.content);
  const [attrType, attrValues] = children(attribute!.content);
  assert.equal(decodeOid(attrType!.content), '1.2.840.113549.1.9.14');
  const [extensions] = children(attrValues!.content);
  const [extension] = children(extensions!.content);
  const [extnId, critical, extnValue] = children(extension!.content);
  assert.equal(decodeOid(extnId!.content), '2.5.29.17');
  assert.deepEqual(critical?.content, Buffer.from([0xff]));
  const generalNames = readDer(extnValue!.content);
  const [uri, ...more] = children(generalNames.content);
  assert.equal(more.length, 0);
  assert.equal(uri?.tag, 0x86);
  assert.equal(uri?.content.toString('ascii'), ID);
  const [sigAlg, ...params] = children(algorithm.content);
  assert.equal(decodeOid(sigAlg!.content), '1.2.840.10045.4.3.2');
  assert.equal(params.length, 0, 'no parameters');
  assert.equal(signature.tag, TAG.BIT_STRING);
  assert.equal(signature.content[0], 0, 'no unused bits');
  assert.equal(verify('sha256', info.raw, keyPair.publicKey, signature.content.subarray(1)), true);
});

const openssl = spawnSync('openssl', ['version'], { encoding: 'utf8' });

test('a request verifies with `openssl req -verify`', { skip: openssl.status !== 0 && 'no openssl' }, () => {
  const der = createCsr(keyPair, ID);
  const out = spawnSync('openssl', ['req', '-inform', 'DER', '-verify', '-noout', '-text'], {
    input: der,
    encoding: 'utf8',
    timeout: 30_000,
  });
  assert.equal(out.status, 0, out.stderr);
  const all = out.stdout + out.stderr;
  assert.match(all, /verify OK/);
  assert.match(all, /Version: 1 \(0x0\)/);
  assert.match(
    all,
    /Subject Alternative Name: critical\s+URI:spiffe:\/\/cluster\.local\/ns\/default\/sa\/web\s/,
  );
  assert.match(all, /Signature Algorithm: ecdsa-with-SHA256/);
  assert.match(all, /NIST CURVE: P-256/);
});

test("a request passes the control plane's own CSR check (src/control/identity/csr.ts)", () => {
  const der = createCsr(keyPair, ID);
  const checked = checkCsr(der, ID);
  assert.deepEqual(checked.spki, keyPair.publicKey.export({ type: 'spki', format: 'der' }));
  assert.throws(() => checkCsr(der, 'spiffe://cluster.local/ns/default/sa/other'));
});

/** Valid SPIFFE-like URIs of 30 to ~1500 characters (DER lengths on both sides of 128 and 256). */
const uriArb = fc
  .tuple(
    fc.stringMatching(/^[a-z0-9]([a-z0-9.-]{0,60}[a-z0-9])?$/),
    fc.array(fc.stringMatching(/^[A-Za-z0-9._~%!$&'()*+,;=:@-]{1,40}$/), { minLength: 1, maxLength: 30 }),
  )
  .map(([domain, segments]) => `spiffe://${domain}/${segments.join('/')}`);

test('property: requests for random valid URIs verify and carry exactly that URI (x509 and the CA check)', async () => {
  await fc.assert(
    fc.asyncProperty(uriArb, async (uri) => {
      const der = createCsr(keyPair, uri);
      const read = await viaLibrary(der);
      assert.equal(read.verified, true);
      assert.deepEqual(read.names, [{ type: 'url', value: uri }]);
      assert.equal(readDer(der).end, der.length);
      checkCsr(der, uri);
    }),
    { numRuns: 60 },
  );
});

test('createCsr refuses keys that are not P-256 and URIs that are not printable ASCII', () => {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 });
  const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' });
  const isCsrError = (message: RegExp) => (err: unknown) =>
    err instanceof TrellisError && err.code === CSR_ERROR && message.test(err.message);
  assert.throws(() => createCsr(rsa, ID), isCsrError(/ECDSA P-256 key, not rsa/));
  assert.throws(() => createCsr(p384, ID), isCsrError(/curve P-256 \(prime256v1\), not secp384r1/));
  assert.throws(() => createCsr(keyPair, ''), isCsrError(/URI SAN "" is not/));
  assert.throws(() => createCsr(keyPair, 'spiffe://x/ns/ä'), isCsrError(/not a printable ASCII URI/));
  assert.throws(() => createCsr(keyPair, 'spiffe://x/ns/a b'), isCsrError(/not a printable ASCII URI/));
});
