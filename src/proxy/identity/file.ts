// A fixed identity from a folder of PEM files: key.pem (the private key), cert.pem (leaf first,
// then intermediates) and trust-anchors.pem. For tests, benchmarks and operators who issue
// certificates with their own PKI; nothing renews them (restart the proxy with new files).
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '../../core/errors.ts';
import { spiffeUriSan } from '../../core/spiffe.ts';
import type { CertifiedKey, WorkloadIdentity } from './provider.ts';

export function fileIdentity(dir: string, field = 'identity.dir'): WorkloadIdentity {
  const read = (name: string): string => {
    try {
      return readFileSync(join(dir, name), 'utf8');
    } catch (error) {
      throw new ConfigError(field, `cannot read ${join(dir, name)}: ${(error as Error).message}`);
    }
  };
  const keyPem = read('key.pem');
  const chainPem = read('cert.pem');
  const trustAnchorsPem = read('trust-anchors.pem');
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(chainPem);
  } catch (error) {
    throw new ConfigError(
      field,
      `${join(dir, 'cert.pem')}: not a PEM certificate: ${(error as Error).message}`,
    );
  }
  const id = spiffeUriSan(leaf.subjectAltName);
  if (id === null)
    throw new ConfigError(field, `${join(dir, 'cert.pem')}: the leaf has no spiffe:// URI SAN`);
  const key: CertifiedKey = {
    keyPem,
    chainPem,
    trustAnchorsPem,
    notBeforeMs: Date.parse(leaf.validFrom),
    expiresAtMs: Date.parse(leaf.validTo),
  };
  return {
    id,
    current: () => key,
    ready: () => Promise.resolve(),
    onChange: () => () => {},
    close: () => {},
  };
}
