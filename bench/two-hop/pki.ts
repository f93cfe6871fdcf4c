// The certificates of the two-hop mTLS benchmark, made with openssl at the start of every run and
// shared by all three contenders: a root (the trust anchor), an issuer (intermediate) signed by
// it, and two leaves signed by the issuer, all ECDSA P-256, each leaf with a SPIFFE URI SAN (the
// identity Trellis checks) and a DNS SAN (the name haproxy and nginx can check). Plus a "rogue"
// leaf from a CA nobody trusts, for the check that the second hop refuses strangers.
//
// openssl rather than the project's X.509 code: the benchmark must not depend on the code under
// test to set up the peers it compares against, and openssl is what an operator would use.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const TRUST_DOMAIN = 'cluster.local';

/** One leaf: its files, in the shapes each contender wants. */
export interface Leaf {
  readonly spiffeId: string;
  readonly dnsName: string;
  /** A folder with key.pem, cert.pem (leaf then issuer) and trust-anchors.pem (trellis --identity-dir). */
  readonly dir: string;
  readonly keyPem: string;
  /** Leaf then issuer. */
  readonly chainPem: string;
  /** Leaf, issuer and key in one file (haproxy's `crt`). */
  readonly combinedFile: string;
  readonly keyFile: string;
  readonly chainFile: string;
}

export interface Pki {
  readonly dir: string;
  /** The root alone: what every verifier trusts. */
  readonly rootFile: string;
  readonly rootPem: string;
  readonly client: Leaf;
  readonly server: Leaf;
  /** A leaf signed by an unrelated self-signed CA (same names as the client): must be refused. */
  readonly rogue: Leaf;
}

function openssl(args: readonly string[], cwd: string): void {
  const r = spawnSync('openssl', args, { cwd, encoding: 'utf8', timeout: 20_000 });
  if (r.error) throw new Error(`openssl ${args[0]}: ${r.error.message} (apt-get install -y openssl)`);
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${(r.stderr ?? '').trim()}`);
}

const P256 = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

/** A self-signed CA certificate and its key: NAME.pem, NAME.key. */
function makeRoot(dir: string, name: string, cn: string): void {
  // prettier-ignore
  openssl(['req', '-x509', ...P256, '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '2',
    '-subj', `/CN=${cn}`, '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
}

/** A key and a certificate NAME.pem for it signed by CA.pem/CA.key, with the extensions given. */
function signed(dir: string, name: string, ca: string, cn: string, extensions: string): void {
  writeFileSync(join(dir, `${name}.ext`), extensions);
  openssl(
    ['req', '-new', ...P256, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`],
    dir,
  );
  // prettier-ignore
  openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.pem`, '-CAkey', `${ca}.key`,
    '-CAcreateserial', '-days', '1', '-sha256', '-extfile', `${name}.ext`, '-out', `${name}.pem`], dir);
}

function leafExtensions(spiffeId: string, dnsName: string): string {
  return [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature',
    'extendedKeyUsage=serverAuth,clientAuth',
    `subjectAltName=critical,URI:${spiffeId},DNS:${dnsName}`,
    '',
  ].join('\n');
}

function makeLeaf(dir: string, name: string, ca: string, issuerPem: string, rootPem: string): Leaf {
  const spiffeId = `spiffe://${TRUST_DOMAIN}/ns/default/sa/${name === 'rogue' ? 'client' : name}`;
  const dnsName = `${name === 'rogue' ? 'client' : name}.default.svc.${TRUST_DOMAIN}`;
  signed(dir, name, ca, name, leafExtensions(spiffeId, dnsName));
  const keyPem = readFileSync(join(dir, `${name}.key`), 'utf8');
  const chainPem = readFileSync(join(dir, `${name}.pem`), 'utf8') + issuerPem;
  const leafDir = join(dir, name);
  mkdirSync(leafDir, { recursive: true });
  writeFileSync(join(leafDir, 'key.pem'), keyPem, { mode: 0o600 });
  writeFileSync(join(leafDir, 'cert.pem'), chainPem);
  writeFileSync(join(leafDir, 'trust-anchors.pem'), rootPem);
  writeFileSync(join(leafDir, 'combined.pem'), chainPem + keyPem, { mode: 0o600 });
  return {
    spiffeId,
    dnsName,
    dir: leafDir,
    keyPem,
    chainPem,
    combinedFile: join(leafDir, 'combined.pem'),
    keyFile: join(leafDir, 'key.pem'),
    chainFile: join(leafDir, 'cert.pem'),
  };
}

/** Makes the whole PKI in `dir` (a fresh folder) and checks both leaves verify against the root. */
export function makePki(dir: string): Pki {
  mkdirSync(dir, { recursive: true });
  makeRoot(dir, 'root', 'trellis-bench-root');
  const intermediate = [
    'basicConstraints=critical,CA:TRUE,pathlen:0',
    'keyUsage=critical,keyCertSign,cRLSign',
    '',
  ].join('\n');
  signed(dir, 'issuer', 'root', 'trellis-bench-issuer', intermediate);
  const rootPem = readFileSync(join(dir, 'root.pem'), 'utf8');
  const issuerPem = readFileSync(join(dir, 'issuer.pem'), 'utf8');
  const client = makeLeaf(dir, 'client', 'issuer', issuerPem, rootPem);
  const server = makeLeaf(dir, 'server', 'issuer', issuerPem, rootPem);
  makeRoot(dir, 'rogue-root', 'someone-else');
  const rogueRootPem = readFileSync(join(dir, 'rogue-root.pem'), 'utf8');
  const rogue = makeLeaf(dir, 'rogue', 'rogue-root', rogueRootPem, rogueRootPem);
  for (const leaf of ['client', 'server']) {
    openssl(['verify', '-CAfile', 'root.pem', '-untrusted', 'issuer.pem', `${leaf}.pem`], dir);
  }
  return { dir, rootFile: join(dir, 'root.pem'), rootPem, client, server, rogue };
}
