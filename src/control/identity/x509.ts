// @peculiar/x509, ready to use: the Reflect polyfill it needs (reflect-metadata) is loaded first and its crypto
// provider is Node's WebCrypto. Import X.509 from here, never from '@peculiar/x509' directly, so
// that the set-up always happens (ES modules run their imports in order).
//
// The library builds the authority's own certificates (anchors, issuers) and reads PEM; issuing
// leaves goes through leaf.ts/csr.ts instead, which sign with node:crypto directly (the library
// spends ~3 ms per certificate in ASN.1 schema work and WebCrypto round trips; see bench/ca.ts).
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export { x509 };

/** ECDSA P-256 with SHA-256, as WebCrypto names it: every key and signature of the mesh. */
export const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

/** PEM blocks of one kind ("CERTIFICATE") in `text`, as DER. */
export function pemBlocks(text: string, label = 'CERTIFICATE'): Buffer[] {
  const re = new RegExp(`-----BEGIN ${label}-----([A-Za-z0-9+/=\\s]+?)-----END ${label}-----`, 'g');
  return Array.from(text.matchAll(re), (m) => Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64'));
}

/** DER as PEM, 64 characters a line. */
export function toPem(der: Uint8Array, label = 'CERTIFICATE'): string {
  const b64 = Buffer.from(der).toString('base64');
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}
