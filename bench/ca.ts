// The certificate authority's issuance rate (issue 4's target: at least 1,000 certificates/s).
// CSRs are made up front (as proxies would, each with its own P-256 key), then one in-memory
// authority checks and signs N of them in a row on one thread: CSR parse + signature check +
// leaf build + ECDSA sign, exactly what Identity.Certify does after the token check. Prints one
// JSON line: certs/s and the per-issue p50/p99 in ms. `--library` also times the same work done
// with @peculiar/x509 (parse + WebCrypto verify + X509CertificateGenerator.create), which is what
// the authority avoided on its hot path (see src/control/identity/leaf.ts).
//
//   node bench/ca.ts [--count 5000] [--library]
import { webcrypto } from 'node:crypto';
import { parseArgs } from 'node:util';
import { CertificateAuthority } from '../src/control/identity/ca.ts';
import { EC_P256, x509 } from '../test/helpers/x509.ts';

const { values } = parseArgs({
  options: { count: { type: 'string', default: '5000' }, library: { type: 'boolean', default: false } },
});
const count = Number(values.count);
if (!Number.isInteger(count) || count < 1 || count > 1_000_000)
  throw new Error('--count: expected 1..1000000');

const ID = 'spiffe://cluster.local/ns/default/sa/web';
const distinct = Math.min(count, 500); // key generation is the slow part; reuse CSRs round-robin
const csrs: Buffer[] = [];
for (let i = 0; i < distinct; i++) {
  const keys = (await webcrypto.subtle.generateKey(EC_P256, false, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    keys,
    signingAlgorithm: EC_P256,
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: ID }])],
  });
  csrs.push(Buffer.from(csr.rawData));
}

function summarize(name: string, durations: Float64Array, totalMs: number) {
  const sorted = Float64Array.from(durations).sort();
  const at = (q: number) =>
    Number(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!.toFixed(4));
  return {
    name,
    count: durations.length,
    certsPerSecond: Math.round((durations.length / totalMs) * 1000),
    p50Ms: at(0.5),
    p99Ms: at(0.99),
  };
}

const ca = await CertificateAuthority.open({ dir: null, trustDomain: 'cluster.local' });
for (let i = 0; i < 200; i++) ca.issue(csrs[i % distinct]!, ID); // warm up the JIT
const durations = new Float64Array(count);
const start = performance.now();
for (let i = 0; i < count; i++) {
  const t0 = performance.now();
  ca.issue(csrs[i % distinct]!, ID);
  durations[i] = performance.now() - t0;
}
const results = [summarize('trellis-ca', durations, performance.now() - start)];

if (values.library) {
  // The same work through @peculiar/x509 alone, for comparison.
  const issuerKeys = (await webcrypto.subtle.generateKey(EC_P256, false, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
  const n = Math.min(count, 1000);
  const libDurations = new Float64Array(n);
  const libStart = performance.now();
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const csr = new x509.Pkcs10CertificateRequest(csrs[i % distinct]!);
    if (!(await csr.verify())) throw new Error('CSR did not verify');
    await x509.X509CertificateGenerator.create({
      subject: '',
      issuer: 'CN=issuer',
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + 86_400_000),
      publicKey: csr.publicKey,
      signingKey: issuerKeys.privateKey,
      signingAlgorithm: EC_P256,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension(['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']),
        await x509.SubjectKeyIdentifierExtension.create(csr.publicKey),
        new x509.SubjectAlternativeNameExtension([{ type: 'url', value: ID }], true),
      ],
    });
    libDurations[i] = performance.now() - t0;
  }
  results.push(summarize('peculiar-x509', libDurations, performance.now() - libStart));
}
for (const r of results) process.stdout.write(JSON.stringify(r) + '\n');
