// Property tests of the authority's parsers, which read bytes from the network: the DER reader
// (src/control/identity/der.ts) and the CSR check (csr.ts). Garbage and mutated requests are
// refused with their own error type, never anything else, and never accepted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { webcrypto } from 'node:crypto';
import fc from 'fast-check';
import { checkCsr, CsrError } from '../../src/control/identity/csr.ts';
import { childrenOf, DerError, readTlv, seq, tlv, unsignedInteger } from '../../src/control/identity/der.ts';
import { EC_P256, x509 } from '../helpers/x509.ts';

const ID = 'spiffe://cluster.local/ns/default/sa/web';

async function makeCsr(): Promise<Buffer> {
  const keys = (await webcrypto.subtle.generateKey(EC_P256, false, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    keys,
    signingAlgorithm: EC_P256,
    name: 'CN=web',
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: ID }])],
  });
  return Buffer.from(csr.rawData);
}

test('DER: what the writer writes, the reader reads back (short and long lengths)', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 30 }),
      fc.uint8Array({ maxLength: 70_000 }),
      (tagNumber, content) => {
        const encoded = tlv(tagNumber, content);
        const read = readTlv(encoded, 0);
        assert.equal(read.tag, tagNumber);
        assert.equal(read.end, encoded.length);
        assert.deepEqual(Buffer.from(encoded.subarray(read.contentStart)), Buffer.from(content));
      },
    ),
    { numRuns: 200 },
  );
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 1, maxLength: 40 }), (magnitude) => {
      const int = unsignedInteger(magnitude);
      const content = int.subarray(readTlv(int, 0).contentStart);
      assert.equal(
        BigInt('0x' + Buffer.from(content).toString('hex')),
        BigInt('0x' + Buffer.from(magnitude).toString('hex')),
      );
      assert.ok((content[0]! & 0x80) === 0, 'non-negative');
      assert.ok(content.length === 1 || content[0] !== 0 || (content[1]! & 0x80) !== 0, 'minimal');
    }),
  );
});

test('DER: random bytes never throw anything but DerError and never read past the buffer', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
      try {
        const top = readTlv(bytes, 0);
        assert.ok(top.end <= bytes.length);
        if (top.tag & 0x20) for (const child of childrenOf(bytes, top)) assert.ok(child.end <= top.end);
      } catch (error) {
        assert.ok(error instanceof DerError, String(error));
      }
    }),
    { numRuns: 2000 },
  );
  // Non-DER encodings the reader refuses.
  for (const bad of [
    [0x30, 0x80, 0x00, 0x00], // indefinite length
    [0x30, 0x81, 0x05, 0, 0, 0, 0, 0], // long form for a short length
    [0x30, 0x82, 0x00, 0x90], // leading zero in the length
    [0x1f, 0x01, 0x00], // multi-byte tag
    [0x30, 0x05, 0x00], // runs past the end
  ]) {
    assert.throws(() => readTlv(Buffer.from(bad), 0), DerError, Buffer.from(bad).toString('hex'));
  }
  assert.deepEqual(childrenOf(seq(), readTlv(seq(), 0)), []);
});

test('CSR: garbage is refused with CsrError, never accepted, never another error', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
      assert.throws(() => checkCsr(bytes, ID), CsrError);
    }),
    { numRuns: 2000 },
  );
  // Garbage shaped like DER all the way down.
  const derish: fc.Arbitrary<Buffer> = fc.letrec<{ node: Buffer }>((tie) => ({
    node: fc.oneof(
      { depthSize: 'small' },
      fc
        .tuple(fc.constantFrom(0x02, 0x03, 0x04, 0x06, 0x86, 0x0c), fc.uint8Array({ maxLength: 80 }))
        .map(([t, c]) => tlv(t, c)),
      fc
        .tuple(fc.constantFrom(0x30, 0x31, 0xa0), fc.array(tie('node'), { maxLength: 4 }))
        .map(([t, kids]) => tlv(t, ...kids)),
    ),
  })).node;
  fc.assert(
    fc.property(derish, (bytes) => {
      assert.throws(() => checkCsr(bytes, ID), CsrError);
    }),
    { numRuns: 2000 },
  );
});

test('CSR: a real request is accepted, and any one changed byte gets it refused', async () => {
  const csr = await makeCsr();
  const accepted = checkCsr(csr, ID);
  // The key is the one @peculiar/x509 reads from the same request.
  const spki = Buffer.from(await new x509.Pkcs10CertificateRequest(csr).publicKey.rawData);
  assert.deepEqual(accepted.spki, spki);
  fc.assert(
    fc.property(fc.nat({ max: csr.length - 1 }), fc.integer({ min: 1, max: 255 }), (at, xor) => {
      const mutated = Buffer.from(csr);
      mutated[at]! ^= xor;
      assert.throws(() => checkCsr(mutated, ID), CsrError);
    }),
    { numRuns: 1500 },
  );
});
